"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1, as on two
machines, each running the same script on the harness (`tfp_flows.training`)
with its own TF_CONFIG."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import h5py
import numpy as np
import pytest

from idx_digits import make_digits_dir
from tfp_flows.callbacks import read_epoch_log

# Long (worker processes training over gRPC): CI runs it after the default suite.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _weights(path):
  """Every array in a Keras .weights.h5 file, by its path in the file."""
  arrays = {}
  with h5py.File(path, "r") as f:
    f.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                 if isinstance(item, h5py.Dataset) else None)
  return arrays


def test_two_workers_train_glow_to_identical_weights(tmp_path, shared_data_dir):
  digits_dir = make_digits_dir(tmp_path / "digits", shared_data_dir, 320, 64)
  # 256 training digits, global batch 32 (tests/harness_glow.py): 8 steps an
  # epoch, 2 epochs.
  args = [sys.executable, str(ROOT / "tests" / "harness_glow.py"),
          str(digits_dir), str(tmp_path / "run"), str(tmp_path / "export"),
          "--epochs", "2", "--strategy", "multi_worker"]
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  workers = []
  for index in range(2):
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    env = {**os.environ, "TF_CONFIG": json.dumps(tf_config),
           "CUDA_VISIBLE_DEVICES": ""}
    log = open(tmp_path / f"worker_{index}.log", "w")
    workers.append((subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log,
                                     stderr=subprocess.STDOUT), log))
  try:
    codes = [process.wait(timeout=600) for process, _ in workers]
  finally:
    for process, log in workers:
      process.kill()
      log.close()
  logs = [(tmp_path / f"worker_{i}.log").read_text() for i in range(2)]
  assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)

  # Each worker checkpointed its own copy; the copies are the same weights
  # and optimizer state, to the bit.
  chief = _weights(tmp_path / "run" / "backup" / "latest.weights.h5")
  other = _weights(tmp_path / "run" / "backup" / "worker_1" /
                   "latest.weights.h5")
  assert chief.keys() == other.keys() and len(chief) > 20
  for name in chief:
    np.testing.assert_array_equal(chief[name], other[name], err_msg=name)

  # The chief alone wrote the run's files and the export.
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["replicas"] == 2
  assert metrics["steps"] == 2 * 8
  assert np.isfinite(metrics["test_bits_per_dim"])
  assert (tmp_path / "export" / "1" / "saved_model.pb").exists()
  assert not (tmp_path / "run" / "backup" / "worker_1" / "metrics.json").exists()
  assert "SavedModel for TF Serving" in logs[0]
  assert "SavedModel for TF Serving" not in logs[1]


FLOW_VAE_WORKER = """
import json, sys
import numpy as np
import keras
from tfp_flows import data, training
from tfp_flows.callbacks import ReconstructionGridCallback
from tfp_flows.models import FlowVAE

run = training.TrainingRun(sys.argv[2], "multi_worker")
rng = np.random.default_rng(0)   # the same digits on every worker
images = (rng.uniform(size=(192, 12, 12, 1)) < 0.3).astype(np.uint8)
with run.scope():
    model = FlowVAE(latent_dim=4, flow="radial", num_flows=2,
                    hidden_units=(32,), image_shape=(12, 12, 1),
                    annealing_steps=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
grids = [ReconstructionGridCallback(images, run.output_dir / "images")]
history = run.fit(model, data.image_dataset(images, 32, shuffle=True),
                  epochs=2, verbose=0, chief_callbacks=grids)
np.savez(sys.argv[1], *[w.numpy() for w in model.weights])
print(json.dumps({"steps": int(model.optimizer.iterations.numpy()),
                  "replicas": run.num_replicas,
                  "callbacks": [type(c).__name__ for c in run.callbacks(grids)],
                  "elbo": [float(v) for v in history.history["elbo"]]}))
"""


def test_two_workers_train_flow_vae_to_identical_weights(tmp_path):
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  workers = []
  for index in range(2):
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    env = {**os.environ, "TF_CONFIG": json.dumps(tf_config),
           "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    workers.append(subprocess.Popen(
        [sys.executable, "-c", FLOW_VAE_WORKER, str(tmp_path / f"{index}.npz"),
         str(tmp_path / "run")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  try:
    outputs = [process.communicate(timeout=600) for process in workers]
  finally:
    for process in workers:
      process.kill()
  for process, (_, stderr) in zip(workers, outputs):
    assert process.returncode == 0, stderr[-3000:]
  reports = [json.loads(stdout.strip().splitlines()[-1])
             for stdout, _ in outputs]
  # 192 digits in global batches of 32: 6 steps an epoch on both workers.
  assert [r["steps"] for r in reports] == [12, 12]
  assert [r["replicas"] for r in reports] == [2, 2]
  # The chief logs, checkpoints, writes TensorBoard logs and figures; the
  # other worker only checkpoints, into its own folder.
  assert reports[0]["callbacks"] == [
      "CSVLogger", "_StepsTrained", "BackupAndRestore", "TensorBoard",
      "ReconstructionGridCallback"]
  assert reports[1]["callbacks"] == ["_StepsTrained", "BackupAndRestore"]
  assert reports[0]["elbo"] == reports[1]["elbo"]
  assert all(np.isfinite(reports[0]["elbo"]))
  first, second = np.load(tmp_path / "0.npz"), np.load(tmp_path / "1.npz")
  assert len(first.files) > 5
  for name in first.files:
    np.testing.assert_array_equal(first[name], second[name], err_msg=name)
  run = tmp_path / "run"
  assert (run / "backup" / "latest.weights.h5").exists()
  assert (run / "backup" / "worker_1" / "latest.weights.h5").exists()
  assert len(read_epoch_log(run / "history.csv")["elbo"]) == 2
  assert (run / "images" / "epoch_002.png").exists()
