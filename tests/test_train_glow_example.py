"""examples/train_glow.py as a user runs it: a subprocess."""

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
SCRIPT = ROOT / "examples" / "train_glow.py"


def _run(args, cwd, timeout=600, env=None):
  return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})


def test_data_dir_without_mnist_stops_with_a_message(tmp_path):
  result = _run(["--data-dir", str(tmp_path)], cwd=tmp_path, timeout=120)
  assert result.returncode == 2
  assert "no MNIST IDX files" in result.stderr
  assert "Traceback" not in result.stderr


def test_corrupt_data_file_is_named_without_a_traceback(tmp_path):
  import gzip
  # A header promising 100 digits, followed by 10 bytes of them.
  with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + (100).to_bytes(4, "big")
            + (28).to_bytes(4, "big") * 2 + bytes(10))
  (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
  result = _run(["--data-dir", str(tmp_path)], cwd=tmp_path, timeout=120)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "idx3-ubyte" in result.stderr and "Traceback" not in result.stderr


def test_offline_without_data_names_data_dir(tmp_path):
  # An empty TFDS folder and no network: TFDS would retry for minutes.
  result = _run([], cwd=tmp_path, timeout=120,
                env={"TFDS_DATA_DIR": str(tmp_path / "tfds"),
                     "HTTPS_PROXY": "http://127.0.0.1:9",
                     "HTTP_PROXY": "http://127.0.0.1:9"})
  assert result.returncode == 2, result.stderr[-2000:]
  assert "--data-dir" in result.stderr
  assert "Traceback" not in result.stderr


def test_bad_flags_are_rejected_by_name(tmp_path):
  result = _run(["--epochs", "0"], cwd=tmp_path, timeout=60)
  assert result.returncode == 2 and "--epochs" in result.stderr
  result = _run(["--strategy", "tpu"], cwd=tmp_path, timeout=60)
  assert result.returncode == 2 and "--strategy" in result.stderr
  result = _run(["--adam-beta-2", "1"], cwd=tmp_path, timeout=60)
  assert result.returncode == 2 and "--adam-beta-2" in result.stderr
  assert "must be in (0, 1), got 1" in result.stderr
  for flag in (["--classification-weight", "1"], ["--conditional-flow"]):
    result = _run(flag, cwd=tmp_path, timeout=60)
    assert result.returncode != 0, flag
    assert f"{flag[0]} needs --conditional" in result.stderr
    assert "Traceback" not in result.stderr
  # Two depths for the default's three levels.
  result = _run(["--num-steps", "8", "8"], cwd=tmp_path, timeout=60)
  assert result.returncode != 0
  assert ("--num-steps takes one K or one per level (--num-levels 3); got 2"
          in result.stderr)
  assert "Traceback" not in result.stderr


def test_multi_worker_without_tf_config_says_what_is_missing(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  result = subprocess.run(
      [sys.executable, str(SCRIPT), "--strategy", "multi_worker",
       "--data-dir", str(tmp_path)], cwd=tmp_path, capture_output=True,
      text=True, timeout=120, env=env)
  assert result.returncode == 2
  assert "TF_CONFIG" in result.stderr and "Traceback" not in result.stderr


# (flags, training steps of the one epoch): --steps-per-epoch 0 is one
# pass over the 1,000 training digits, 1000 // 64 = 15 full batches.
VARIANTS = {"default": (["--steps-per-epoch", "12"], 12),
            "conditional": (["--conditional", "--steps-per-epoch", "12"], 12),
            "plain_one_pass": (["--plain", "--steps-per-epoch", "0"], 15)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_epoch_on_shared_digits_writes_every_artifact(tmp_path,
                                                          shared_data_dir,
                                                          variant):
  if shared_data_dir is None:
    pytest.skip("needs ../shared/data/mnist")
  variant, steps = VARIANTS[variant]
  args = variant + ["--data-dir", str(shared_data_dir / "mnist"), "--epochs", "1",
          "--num-steps", "2", "--hidden-channels", "16",
          # 12 or 15 steps: a warm-up for thousands would not end; the average
          # (off by default) is switched on to run its code path.
          "--warmup-steps", "5", "--ema-momentum", "0.5",
          "--validation-size", "6000", "--test-size", "1000",
          "--output-dir", str(tmp_path / "run"),
          "--export-dir", str(tmp_path / "export")]
  result = _run(args, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert 0 < metrics["test_bits_per_dim"] < 8
  assert metrics["steps"] == steps
  assert metrics["model"]["num_classes"] == (
      10 if "--conditional" in variant else None)
  assert metrics["model"]["learned_prior"] == ("--plain" not in variant)
  # --conditional trains with openai/glow's classification loss by default
  # (0.01 times the D the flow sees: the default's 32 x 32 frame); the test
  # figure in nats is the likelihood's alone, bits/dim's twin.
  assert metrics["model"]["classification_weight"] == pytest.approx(
      0.01 * 32 * 32 if "--conditional" in variant else 0.)
  assert metrics["test_nats_per_image"] == pytest.approx(
      metrics["test_bits_per_dim"] * 784 * np.log(2.), rel=1e-6)
  assert (tmp_path / "run" / "samples" / "samples_epoch_001.png").exists()
  assert (tmp_path / "run" / "interpolation.png").exists()
  assert (tmp_path / "run" / "learning_curve.png").exists()
  assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
  assert (tmp_path / "export" / "glow.keras").exists()
  assert (tmp_path / "export" / "1" / "saved_model.pb").exists()
  # Rerunning the same command resumes: the finished epoch is not redone.
  again = _run(args, cwd=tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Epoch 1/1" not in again.stdout
