"""`kill -9` a training run mid-epoch, rerun the same command: it resumes
from the last checkpoint and finishes with the step count of a run that was
never killed. Real subprocesses running a user's script on the harness
(`tfp_flows.training`, through tests/harness_glow.py), on one device and on
two replicas."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from idx_digits import make_digits_dir

# Long (kill -9 and rerun whole training processes): CI runs it after the default suite.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
EPOCHS, STEPS_PER_EPOCH = 3, 20  # 640 digits in global batches of 32
# (tests/harness_glow.py)


def _checkpointed_epoch(metadata):
  try:
    return json.loads(metadata.read_text())["epoch"]
  except (OSError, ValueError, KeyError):
    return 0  # not there yet, or being written


@pytest.mark.parametrize("strategy", [[], ["--strategy", "mirrored",
                                           "--cpu-replicas", "2"]],
                         ids=["one_device", "mirrored_2_replicas"])
def test_kill_9_mid_epoch_then_rerun_resumes_and_finishes(
    tmp_path, shared_data_dir, strategy):
  digits_dir = make_digits_dir(tmp_path / "digits", shared_data_dir, 704, 64)
  command = [sys.executable, str(ROOT / "tests" / "harness_glow.py"),
             str(digits_dir), str(tmp_path / "run"), str(tmp_path / "export"),
             "--epochs", str(EPOCHS), *strategy]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
  metadata = tmp_path / "run" / "backup" / "training_metadata.json"

  with open(tmp_path / "killed.log", "w") as log:
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
      if _checkpointed_epoch(metadata) >= 1:
        process.send_signal(signal.SIGKILL)  # inside the next epoch
        break
      time.sleep(0.02)
    process.wait(timeout=60)
  killed_log = (tmp_path / "killed.log").read_text()
  assert process.returncode == -signal.SIGKILL, killed_log[-3000:]
  checkpointed = _checkpointed_epoch(metadata)
  assert 1 <= checkpointed < EPOCHS
  assert not (tmp_path / "run" / "metrics.json").exists()

  again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
  assert again.returncode == 0, again.stderr[-3000:]
  # It started from the epoch after the checkpoint (at most the killed epoch
  # is lost) and ran to the requested count.
  assert f"Epoch {checkpointed + 1}/{EPOCHS}" in again.stdout
  assert f"Epoch {checkpointed}/{EPOCHS}" not in again.stdout
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["steps"] == EPOCHS * STEPS_PER_EPOCH
  # The history has every epoch, the killed process's among them, once each.
  assert len(metrics["history"]["loss"]) == EPOCHS
  assert _checkpointed_epoch(metadata) == EPOCHS
  assert metrics["replicas"] == (2 if strategy else 1)
