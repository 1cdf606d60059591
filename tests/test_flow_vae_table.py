"""benchmarks/flow_vae_table.py and flow_vae_runs.py: which rows a rerun
of the table reuses, and records that stand in for run folders."""

import csv
import json
import pathlib
import subprocess
import sys

import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import flow_vae_runs  # noqa: E402
from flow_vae_runs import flags_of  # noqa: E402
from flow_vae_table import finished, row_source  # noqa: E402

TRAIN_ARGS = ["--data-dir", "data", "--flow", "planar", "--num-flows", "10",
              "--optimizer", "adamax", "--learning-rate", "5e-4"]


def write_run(folder, flags, validation=None, finished_run=True):
  """The parts of a train_flow_vae.py output folder a record reads: the
  flags, the ELBO per epoch in history.csv as `callbacks.epoch_log` writes
  it (default: every epoch of `flags["epochs"]`, from 100 nats down by 0.5
  an epoch), and metrics.json if the run finished."""
  if validation is None:
    validation = [100. - 0.5 * epoch for epoch in range(flags["epochs"])]
  folder.mkdir(parents=True)
  (folder / "flags.json").write_text(json.dumps(flags))
  with open(folder / "history.csv", "w", newline="") as file:
    writer = csv.writer(file)
    writer.writerow(["epoch", "elbo", "val_elbo"])
    for epoch, value in enumerate(validation):
      writer.writerow([epoch, -(value - 2.), -value])
  if finished_run:
    (folder / "metrics.json").write_text(json.dumps({
        "test_negative_log_likelihood": 90., "history": {"elbo": [-1.]},
        "importance_samples": flags["eval_samples"], "config": flags}))


def test_a_rerun_reuses_only_runs_finished_with_the_same_flags(tmp_path):
  asked = flags_of(TRAIN_ARGS + ["--epochs", "100", "--eval-samples", "5000",
                                 "--output-dir", "runs/a"])
  write_run(tmp_path / "done", asked)
  # Written elsewhere: the folders are not part of the experiment.
  moved = dict(asked, output_dir="elsewhere", export_dir="elsewhere/model",
               data_dir="../shared/data")
  write_run(tmp_path / "moved", moved)
  write_run(tmp_path / "fewer_samples", dict(asked, eval_samples=1000))
  write_run(tmp_path / "shorter", dict(asked, epochs=50))
  write_run(tmp_path / "adam", dict(asked, optimizer="adam"))
  write_run(tmp_path / "killed", asked, finished_run=False)
  # Stopped by its time budget after 60 of the 100 epochs, yet scored.
  write_run(tmp_path / "out_of_time", dict(asked, max_minutes=5.),
            validation=[100.] * 60)
  # Finished every epoch within another budget than this rerun's.
  write_run(tmp_path / "other_budget", dict(asked, max_minutes=500.))
  # Recorded before a flag existed: the record takes its default.
  older = dict(asked)
  del older["lr_decay"]
  write_run(tmp_path / "before_lr_decay", older)
  load = flow_vae_runs.load
  assert finished(load(tmp_path / "done"), asked)
  assert finished(load(tmp_path / "moved"), asked)
  assert not finished(load(tmp_path / "out_of_time"), asked)
  assert finished(load(tmp_path / "other_budget"), asked)
  assert finished(load(tmp_path / "before_lr_decay"), asked)
  assert not finished(load(tmp_path / "before_lr_decay"),
                      dict(asked, lr_decay="cosine"))
  # Trained but scored with another S: the rerun rescores it.
  assert not finished(load(tmp_path / "fewer_samples"), asked)
  # Fewer epochs than asked: the rerun resumes its training.
  assert not finished(load(tmp_path / "shorter"), asked)
  # Another recipe under the same row name is not this row.
  assert not finished(load(tmp_path / "adam"), asked)
  assert not finished(load(tmp_path / "killed"), asked)


def test_a_row_comes_from_its_record_else_a_finished_folder_else_training(
    tmp_path):
  asked = flags_of(TRAIN_ARGS + ["--epochs", "3"])
  write_run(tmp_path / "this", asked)
  write_run(tmp_path / "other", dict(asked, learning_rate=1e-3))
  write_run(tmp_path / "killed", asked, finished_run=False)
  this, other, killed = (flow_vae_runs.load(tmp_path / name)
                         for name in ("this", "other", "killed"))
  assert row_source(this, other, asked) == "record"
  assert row_source(other, this, asked) == "folder"
  assert row_source(None, this, asked, report_only=True) == "folder"
  assert row_source(other, killed, asked) == "train"
  assert row_source(None, None, asked) == "train"
  # --report-only trains nothing: the row is left out.
  assert row_source(other, killed, asked, report_only=True) is None


def test_a_curve_keeps_every_epoch_of_a_resumed_run(tmp_path):
  flags = flags_of(TRAIN_ARGS + ["--epochs", "3"])
  # Killed after logging epoch 1 but before its checkpoint: the resumed
  # process logs epoch 1 again, and the later row counts.
  write_run(tmp_path / "run", flags, validation=[100., 99., 95., 94.])
  history = (tmp_path / "run" / "history.csv").read_text().splitlines()
  history[2:] = ["1,-97.0,-99.0", "1,-95.0,-97.0", "2,-94.0,-96.0"]
  (tmp_path / "run" / "history.csv").write_text("\n".join(history) + "\n")
  record = flow_vae_runs.load(tmp_path / "run")
  assert record["validation_negative_elbo"] == [100., 97., 96.]
  assert record["train_negative_elbo"] == [98., 95., 94.]
  assert finished(record, flags)


def test_a_record_stands_in_for_its_folder(tmp_path):
  flags = flags_of(TRAIN_ARGS + ["--epochs", "2"])
  write_run(tmp_path / "run", flags, validation=[101., 97.5])
  path = flow_vae_runs.write(flow_vae_runs.load(tmp_path / "run"),
                             tmp_path / "records" / "run.json")
  record = flow_vae_runs.load(path)
  assert record == flow_vae_runs.load(tmp_path / "run")
  assert record["validation_negative_elbo"] == [101., 97.5]
  assert record["train_negative_elbo"] == [99., 95.5]
  assert record["flags"] == flags and finished(record, flags)
  # The per-epoch history is in the curves; the record stays small.
  assert "history" not in record["metrics"]


def test_an_unfinished_run_is_recorded_with_its_starting_flags(tmp_path):
  flags = flags_of(TRAIN_ARGS + ["--epochs", "1000", "--lr-decay", "cosine"])
  write_run(tmp_path / "run", flags, validation=[100., 98.],
            finished_run=False)
  record = flow_vae_runs.load(tmp_path / "run")
  assert record["metrics"] is None and record["flags"]["lr_decay"] == "cosine"
  assert record["validation_negative_elbo"] == [100., 98.]


def test_a_record_counts_the_saved_models_parameters(tmp_path):
  from tfp_flows.models import FlowVAE  # noqa: PLC0415

  model = FlowVAE(latent_dim=2, flow="planar", num_flows=2,
                  hidden_units=(8,), image_shape=(4, 4, 1))
  model(tf.zeros([1, 4, 4, 1]))
  (tmp_path / "model").mkdir()
  model.save(tmp_path / "model" / "flow_vae.keras")
  flags = flags_of(TRAIN_ARGS + ["--export-dir", str(tmp_path / "model")])
  write_run(tmp_path / "run", flags)
  # A fresh process, as `python benchmarks/flow_vae_runs.py` runs: nothing
  # has registered FlowVAE with Keras there but the module itself.
  subprocess.run([sys.executable, str(ROOT / "benchmarks" / "flow_vae_runs.py"),
                  str(tmp_path / "run"), str(tmp_path / "run.json")],
                 check=True, capture_output=True)
  record = flow_vae_runs.load(tmp_path / "run.json")
  assert record["parameters"] == model.count_params()
