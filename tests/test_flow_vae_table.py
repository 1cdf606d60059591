"""benchmarks/flow_vae_table.py: which runs a rerun of the table skips."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from flow_vae_table import finished  # noqa: E402


def write_metrics(folder, epochs, importance_samples):
  folder.mkdir(parents=True)
  (folder / "metrics.json").write_text(json.dumps({
      "importance_samples": importance_samples, "config": {"epochs": epochs}}))


def test_a_rerun_skips_only_runs_finished_as_asked(tmp_path):
  write_metrics(tmp_path / "done", epochs=100, importance_samples=5000)
  write_metrics(tmp_path / "fewer_samples", epochs=100, importance_samples=1000)
  write_metrics(tmp_path / "shorter", epochs=50, importance_samples=5000)
  (tmp_path / "killed").mkdir()  # a killed run: checkpoints, no metrics.json
  assert finished(tmp_path / "done", 100, 5000)
  # Trained but scored with another S: the rerun rescores it.
  assert not finished(tmp_path / "fewer_samples", 100, 5000)
  # Fewer epochs than asked: the rerun resumes its training.
  assert not finished(tmp_path / "shorter", 100, 5000)
  assert not finished(tmp_path / "killed", 100, 5000)
