"""benchmarks/flow_vae_extrapolate.py on a run folder with a known curve."""

import csv
import json
import pathlib
import re
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_run(folder, validation, train, best_epoch, measured, lr_decay="none"):
  """The parts of a train_flow_vae.py output folder the script reads, with
  the curves in history.csv as `callbacks.epoch_log` writes them (ELBO, not
  -ELBO; 0-based epochs)."""
  folder.mkdir(parents=True, exist_ok=True)
  with open(folder / "history.csv", "w", newline="") as file:
    writer = csv.writer(file)
    writer.writerow(["epoch", "elbo", "val_elbo"])
    for epoch, (train_value, value) in enumerate(zip(train, validation)):
      writer.writerow([epoch, -train_value, -value])
  (folder / "metrics.json").write_text(json.dumps({
      "test_negative_log_likelihood": measured,
      "best_epoch": {"epoch": best_epoch, "monitor": "val_elbo"},
      "config": {"lr_decay": lr_decay}}))


def run_script(tmp_path, *runs):
  result = subprocess.run(
      [sys.executable, str(ROOT / "benchmarks" / "flow_vae_extrapolate.py"),
       *map(str, runs), "--target", "85", "--to-epochs", "1000",
       "--figure", str(tmp_path / "curves.png")],
      capture_output=True, text=True, check=True)
  return [line for line in result.stdout.splitlines()
          if line.startswith("| ")][1:]


def test_recovers_a_known_power_law_and_carries_the_measured_figure(tmp_path):
  rng = np.random.default_rng(0)
  epochs = np.arange(1, 121)
  validation = 96. + 40. * epochs ** -0.7 + rng.normal(0., 0.02, epochs.size)
  run = tmp_path / "known"
  write_run(run, validation, validation - 4., best_epoch=120, measured=90.)
  (row,) = run_script(tmp_path, run)
  cells = [cell.strip() for cell in row.strip("|").split("|")]
  name, logged, kept, measured, asymptote, at_1000, predicted, needed = cells
  assert (name, logged, kept) == ("known", "120", "120")
  assert abs(float(asymptote) - 96.) < 0.3
  truth_at_1000 = 96. + 40. * 1000. ** -0.7
  assert abs(float(at_1000.split("±")[0]) - truth_at_1000) < 0.1
  # measured + fit(1000) - fit(120), and the validation -ELBO that would
  # bring 90 nats down to the target of 85 by the same rule.
  fit_at_kept = 96. + 40. * 120. ** -0.7
  assert abs(float(predicted) - (90. + truth_at_1000 - fit_at_kept)) < 0.1
  assert abs(float(needed) - (fit_at_kept - 5.)) < 0.1
  assert (tmp_path / "curves.png").stat().st_size > 0


def test_a_decayed_learning_rate_run_is_drawn_but_not_fitted(tmp_path):
  epochs = np.arange(1, 41)
  run = tmp_path / "cosine"
  write_run(run, 96. + 40. * epochs ** -0.7, 95. + 40. * epochs ** -0.7,
            best_epoch=40, measured=90., lr_decay="cosine")
  (row,) = run_script(tmp_path, run)
  assert re.search(r"no fit: the learning rate decays", row)


def test_a_run_still_training_is_fitted_without_test_columns(tmp_path):
  epochs = np.arange(1, 61)
  run = tmp_path / "training"
  write_run(run, 96. + 40. * epochs ** -0.7, 95. + 40. * epochs ** -0.7,
            best_epoch=60, measured=90.)
  (run / "metrics.json").unlink()  # written only when a run ends
  (row,) = run_script(tmp_path, run)
  cells = [cell.strip() for cell in row.strip("|").split("|")]
  name, logged, kept, measured, asymptote, at_1000, predicted, needed = cells
  assert (name, logged, kept, measured, predicted, needed) == (
      "training", "60", "60", "–", "–", "–")
  assert abs(float(asymptote) - 96.) < 0.3


def test_a_record_gives_the_row_its_folder_gives(tmp_path):
  sys.path.insert(0, str(ROOT / "benchmarks"))
  import flow_vae_runs  # noqa: PLC0415

  epochs = np.arange(1, 61)
  run = tmp_path / "folder"
  write_run(run, 96. + 40. * epochs ** -0.7, 95. + 40. * epochs ** -0.7,
            best_epoch=55, measured=90.)
  record = flow_vae_runs.write(flow_vae_runs.load(run),
                               tmp_path / "record" / "folder.json")
  run.rename(tmp_path / "gone")  # the session ended: only the record is left
  (from_record,) = run_script(tmp_path, record)
  (from_folder,) = run_script(tmp_path, tmp_path / "gone")
  assert from_record.replace("| folder |", "| gone |") == from_folder
