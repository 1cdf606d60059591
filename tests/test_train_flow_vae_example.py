"""examples/train_flow_vae.py as a user runs it: a subprocess."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

# Long (the example script, end to end, in subprocesses): CI runs it after the default suite.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_flow_vae.py"


def _run(args, cwd, timeout=600, env=None):
  return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})


def test_data_dir_without_the_amat_files_stops_with_a_message(tmp_path):
  result = _run(["--data-dir", str(tmp_path)], cwd=tmp_path, timeout=120,
                env={"TFDS_DATA_DIR": str(tmp_path / "tfds")})
  assert result.returncode == 2
  assert "binarized_mnist_train.amat" in result.stderr
  assert "Traceback" not in result.stderr


def test_bad_flags_are_rejected_by_name(tmp_path):
  for flags, name in ((["--num-flows", "0"], "--num-flows"),
                      (["--flow", "maf"], "--flow"),
                      (["--learning-rate", "-1"], "--learning-rate")):
    result = _run(flags, cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and name in result.stderr


def test_short_run_writes_every_artifact_and_resumes(tmp_path, shared_data_dir):
  if shared_data_dir is None:
    pytest.skip("needs ../shared/data/binarized_mnist")
  args = ["--data-dir", str(shared_data_dir / "binarized_mnist"),
          "--train-size", "1000", "--epochs", "2", "--num-flows", "2",
          "--latent-dim", "8", "--hidden-units", "64", "--eval-samples", "20",
          "--eval-size", "100", "--output-dir", str(tmp_path / "run"),
          "--export-dir", str(tmp_path / "export"),
          # One replica here (no GPU); the code path of a multi-GPU machine.
          "--strategy", "mirrored"]
  env = {"TFDS_DATA_DIR": str(tmp_path / "tfds")}
  result = _run(args, cwd=tmp_path, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["steps"] == 2 * 10  # 1000 digits / batch 100, 2 epochs
  assert metrics["test_negative_log_likelihood"] <= (
      metrics["test_negative_elbo"] + 1.)
  assert metrics["importance_samples"] == 20
  assert (tmp_path / "run" / "images" / "epoch_002.png").exists()
  assert (tmp_path / "run" / "final_images.png").exists()
  assert (tmp_path / "run" / "learning_curve.png").exists()
  assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
  assert (tmp_path / "export" / "flow_vae.keras").exists()
  assert (tmp_path / "export" / "1" / "saved_model.pb").exists()
  assert metrics["strategy"] == "mirrored" and metrics["replicas"] == 1
  # The run ended with the best validation epoch's weights (--restore-best).
  val_elbo = metrics["history"]["val_elbo"]
  assert metrics["best_epoch"] == {
      "epoch": int(np.argmax(val_elbo)) + 1, "monitor": "val_elbo",
      "value": pytest.approx(max(val_elbo))}
  # The same command again resumes from the last checkpoint: no more steps.
  result = _run(args, cwd=tmp_path, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  again = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert again["steps"] == 20
  assert again["best_epoch"] == metrics["best_epoch"]
  # The history still has both epochs, trained by the first process.
  assert again["history"]["val_elbo"] == metrics["history"]["val_elbo"]
  assert len(again["history"]["elbo"]) == 2
  # Each run exports the next version: TF Serving picks up the newest.
  assert (tmp_path / "export" / "2" / "saved_model.pb").exists()


def test_a_minute_budget_stops_training_with_the_schedule_and_optimizer(
    tmp_path, shared_data_dir):
  """--max-minutes ends a 50-epoch run after its first group of steps (its
  compilation alone outlasts 0.6 s); --lr-decay cosine and --optimizer
  adamax train and report as usual."""
  if shared_data_dir is None:
    pytest.skip("needs ../shared/data/binarized_mnist")
  args = ["--data-dir", str(shared_data_dir / "binarized_mnist"),
          "--train-size", "1000", "--epochs", "50", "--num-flows", "2",
          "--latent-dim", "8", "--hidden-units", "64", "--eval-samples", "20",
          "--eval-size", "100", "--steps-per-execution", "5",
          "--max-minutes", "0.01", "--lr-decay", "cosine",
          "--optimizer", "adamax", "--learning-rate", "5e-4",
          "--output-dir", str(tmp_path / "run"),
          "--export-dir", str(tmp_path / "export")]
  result = _run(args, cwd=tmp_path, env={"TFDS_DATA_DIR": str(tmp_path)})
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["steps"] == 5  # the first group of 5 steps, of epoch 1
  assert len(metrics["history"]["val_elbo"]) == 1
  assert np.isfinite(metrics["test_negative_log_likelihood"])
  # The saved model was trained by Adamax on the cosine schedule over the
  # 50 epochs of 10 steps that were asked for.
  import keras  # here: the module's other tests need no TensorFlow
  import tfp_flows  # noqa: F401  (registers FlowVAE and LinearWarmup)
  optimizer = keras.models.load_model(
      tmp_path / "export" / "flow_vae.keras").optimizer
  assert type(optimizer).__name__ == "Adamax"
  schedule = optimizer.get_config()["learning_rate"]
  assert schedule["class_name"] == "LinearWarmup"
  assert schedule["config"]["decay_steps"] == 500
  assert schedule["config"]["learning_rate"] == pytest.approx(5e-4)
