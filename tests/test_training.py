"""The training harness (`tfp_flows.training`) used in-process, as from a
notebook: a tiny Glow, the files a run writes, resuming, and the exit codes.
Killed runs and multi-worker runs of it: test_killed_runs.py,
test_multi_worker.py."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import data, distribute, training
from tfp_flows.callbacks import (BestWeights, NonFiniteLossError, TimeLimit,
                                 SampleGridCallback)
from tfp_flows.models import GlowModel

BATCH = 16


def _tiny_glow(run):
  with run.scope():
    model = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                      hidden_channels=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
  return model


def test_a_run_writes_every_file_and_a_rerun_resumes(tmp_path, capsys):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(96, 8, 8, 1), dtype=np.uint8)
  train = data.image_dataset(images[:64], BATCH, shuffle=True)  # 4 steps
  validation = data.image_dataset(images[64:80], BATCH)
  test = data.image_dataset(images[80:], BATCH)
  output_dir, export_dir = tmp_path / "run", tmp_path / "export"

  run = training.TrainingRun(output_dir, seed=0)
  assert (run.is_chief, run.num_replicas, run.strategy_name) == (
      True, 1, "default")
  model = _tiny_glow(run)
  grids = [SampleGridCallback(output_dir / "samples", num_samples=4)]
  # The CSV history before the checkpoint; the chief's own callbacks last.
  assert [type(c).__name__ for c in run.callbacks(grids)] == [
      "CSVLogger", "_StepsTrained", "BackupAndRestore", "TensorBoard",
      "SampleGridCallback"]
  history = run.fit(model, train, validation, epochs=1, verbose=0,
                    chief_callbacks=grids)
  assert len(history.history["loss"]) == 1
  bits = model.evaluate(test, return_dict=True, verbose=0)["bits_per_dim"]
  metrics = run.finish(model, export_dir, "tiny.keras",
                       {"test_bits_per_dim": np.float32(bits)},
                       curve_metric="bits_per_dim", curve_label="bits/dim")

  written = json.loads((output_dir / "metrics.json").read_text())
  assert written == metrics
  assert written["test_bits_per_dim"] == pytest.approx(bits)
  assert (written["epochs"], written["steps"]) == (1, 4)
  assert (written["strategy"], written["replicas"]) == ("default", 1)
  assert written["train_seconds_this_run"] > 0
  assert len(written["history"]["loss"]) == 1
  assert "val_bits_per_dim" in written["history"]
  assert (output_dir / "learning_curve.png").exists()
  assert (output_dir / "samples" / "samples_epoch_001.png").exists()
  assert (output_dir / "backup" / "training_metadata.json").exists()
  assert list((output_dir / "logs").rglob("events.out.tfevents.*"))
  assert (export_dir / "1" / "saved_model.pb").exists()
  restored = keras.saving.load_model(export_dir / "tiny.keras")
  np.testing.assert_allclose(restored.log_prob(images[:4]),
                             model.log_prob(images[:4]), rtol=1e-6)
  assert "SavedModel for TF Serving: " + str(export_dir / "1") in (
      capsys.readouterr().out)

  # The same code again, asked for two epochs: it trains the second only.
  run = training.TrainingRun(output_dir, seed=0)
  model = _tiny_glow(run)
  history = run.fit(model, train, validation, epochs=2, verbose=0)
  assert len(history.history["loss"]) == 1
  metrics = run.finish(model, export_dir, "tiny.keras", curve_metric="loss",
                       saved_model=False)
  assert (metrics["epochs"], metrics["steps"]) == (2, 8)
  assert len(metrics["history"]["loss"]) == 2  # both processes' epochs
  assert metrics["history"]["loss"][0] == written["history"]["loss"][0]
  assert not (export_dir / "2").exists()
  assert "SavedModel" not in capsys.readouterr().out


def _raises(error):
  raise error


def test_a_run_that_keeps_an_earlier_epoch_reports_every_step(tmp_path):
  """The kept epoch's weights carry the optimizer's step count of that
  epoch (Keras' save_weights holds the optimizer); metrics.json still says
  how many steps were trained."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(80, 8, 8, 1), dtype=np.uint8)
  train = data.image_dataset(images[:64], BATCH, shuffle=True)  # 4 steps
  validation = data.image_dataset(images[64:], BATCH)
  run = training.TrainingRun(tmp_path / "run", seed=0)
  model = _tiny_glow(run)
  # The worst training loss is the first epoch's: keep that one.
  run.fit(model, train, validation, epochs=3, verbose=0,
          keep_best=("loss", "max"))
  metrics = run.finish(model, tmp_path / "export", "tiny.keras",
                       saved_model=False)
  assert metrics["best_epoch"]["epoch"] == 1
  assert int(model.optimizer.iterations.numpy()) == 4  # the kept epoch's
  assert (metrics["epochs"], metrics["steps"]) == (3, 12)


def test_exit_code_names_what_a_user_can_fix(tmp_path, monkeypatch, capsys):
  assert training.exit_code(lambda: None) == training.EXIT_OK == 0
  assert training.exit_code(lambda code: code, 5) == 5

  code = training.exit_code(
      _raises, data.DataError("no MNIST IDX files in /nowhere"), prog="p.py")
  assert code == training.EXIT_BAD_INPUT == 2
  assert capsys.readouterr().err == "p.py: no MNIST IDX files in /nowhere\n"

  monkeypatch.delenv("TF_CONFIG", raising=False)
  code = training.exit_code(training.TrainingRun, tmp_path,
                            strategy="multi_worker", prog="p.py")
  assert code == training.EXIT_BAD_INPUT
  err = capsys.readouterr().err
  assert err.startswith("p.py: --strategy multi_worker needs the TF_CONFIG")
  assert training.exit_code(training.TrainingRun, tmp_path, strategy="tpu",
                            prog="p.py") == training.EXIT_BAD_INPUT
  assert "strategy must be one of" in capsys.readouterr().err

  code = training.exit_code(
      _raises, NonFiniteLossError("non-finite loss at epoch 2."), prog="p.py")
  assert code == training.EXIT_NON_FINITE == 3
  assert capsys.readouterr().err == (
      "p.py: non-finite loss at epoch 2. Rerunning the same command resumes "
      "from the last checkpoint; --non-finite skip goes past such steps.\n")

  # Anything else is a bug: it keeps its traceback.
  with pytest.raises(ZeroDivisionError):
    training.exit_code(lambda: 1 / 0)
  with pytest.raises(ValueError):
    training.exit_code(_raises, ValueError("not a user's error"))


def test_strategy_errors_say_what_to_do(tmp_path):
  # A strategy of your own is used as it is; cpu_replicas cannot split it.
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  run = training.TrainingRun(tmp_path, strategy, seed=None)
  assert run.strategy is strategy and run.strategy_name == "MirroredStrategy"
  assert run.is_chief and run.backup_dir == tmp_path / "backup"
  with pytest.raises(distribute.StrategyError, match="cpu_replicas"):
    training.TrainingRun(tmp_path, strategy, cpu_replicas=2)
  # In a process where TensorFlow has started, the CPU split is fixed.
  cpus = len(tf.config.list_logical_devices("CPU"))
  with pytest.raises(distribute.StrategyError,
                     match="before any other TensorFlow work"):
    training.TrainingRun(tmp_path, "mirrored", cpu_replicas=cpus + 1)


def test_a_rerun_resumes_only_a_checkpoint_its_own_flags_made(tmp_path,
                                                               capsys):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(32, 8, 8, 1), dtype=np.uint8)
  train = data.image_dataset(images[:16], BATCH, shuffle=True)
  validation = data.image_dataset(images[16:], BATCH)
  flags = {"learning_rate": 1e-3, "epochs": 1, "output_dir": tmp_path,
           "eval_samples": 100}
  run = training.TrainingRun(tmp_path, seed=0)
  # Before any checkpoint (a run killed before its first epoch ended), a
  # rerun may change anything.
  run.keep_flags(dict(flags, learning_rate=3e-4))
  run.keep_flags(flags)
  assert json.loads((tmp_path / "flags.json").read_text()) == dict(
      flags, output_dir=str(tmp_path))
  run.fit(_tiny_glow(run), train, validation, epochs=1, verbose=0)

  # Another recipe would continue this run's checkpoint under its flags.
  rerun = training.TrainingRun(tmp_path, seed=0)
  with pytest.raises(training.ResumeError,
                     match=r"learning_rate: 0.001 -> 0.0003.*delete .*backup"):
    rerun.keep_flags(dict(flags, learning_rate=3e-4))
  assert training.exit_code(rerun.keep_flags, dict(flags, learning_rate=1e-2),
                            prog="p.py") == training.EXIT_BAD_INPUT
  assert capsys.readouterr().err.startswith(
      f"p.py: {tmp_path} holds a checkpoint of a run with other flags "
      "(learning_rate: 0.001 -> 0.01). ")
  # Training longer, scoring otherwise (may_change) and moving is resuming.
  rerun.keep_flags(dict(flags, epochs=5, eval_samples=5000,
                        output_dir="elsewhere"), may_change=["eval_samples"])
  assert json.loads((tmp_path / "flags.json").read_text())["epochs"] == 5
  with pytest.raises(training.ResumeError, match="eval_samples: 5000 -> 10"):
    rerun.keep_flags(dict(flags, eval_samples=10))
  # A flag the old flags.json lacks (added to the script since) is not a
  # change, and is written for the next rerun to compare.
  rerun.keep_flags(dict(flags, seed=1), may_change=["eval_samples"])
  with pytest.raises(training.ResumeError, match="seed: 1 -> 2"):
    rerun.keep_flags(dict(flags, seed=2), may_change=["eval_samples"])


def test_best_weights_are_kept_across_a_resume_and_restored(tmp_path):
  """BestWeights keeps the epoch with the best monitored value on disk,
  goes on from it in a new process's callback (a resumed run), and ends
  training with its weights."""
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  weights_at = {}

  def epoch(callback, index, value):
    model.layers[0].kernel.assign(np.full((2, 1), float(index), np.float32))
    weights_at[index] = model.get_weights()
    callback.on_epoch_end(index, {callback.monitor: value})

  first = BestWeights(tmp_path, "val_elbo", "max")
  first.set_model(model)
  first.on_train_begin()
  for index, value in enumerate([-3., -1., float("nan"), -2.]):
    epoch(first, index, value)
  assert first.record() == {"epoch": 2, "monitor": "val_elbo", "value": -1.}
  # A resumed run: a fresh callback reads the record, so a worse epoch
  # after the resume does not replace the best.
  resumed = BestWeights(tmp_path, "val_elbo", "max")
  resumed.set_model(model)
  resumed.on_train_begin()
  epoch(resumed, 4, -1.5)
  resumed.on_train_end()
  for got, want in zip(model.get_weights(), weights_at[1], strict=True):
    np.testing.assert_array_equal(got, want)
  assert resumed.record()["epoch"] == 2
  # "min" keeps the smallest; no finite value ever: nothing to restore.
  smallest = BestWeights(tmp_path / "min", "val_loss", "min")
  smallest.set_model(model)
  smallest.on_train_begin()
  epoch(smallest, 0, 2.)
  epoch(smallest, 1, 1.)
  assert smallest.record()["epoch"] == 2
  nothing = BestWeights(tmp_path / "none", "val_elbo", "max")
  nothing.set_model(model)
  nothing.on_train_begin()
  epoch(nothing, 0, float("nan"))
  nothing.on_train_end()
  assert nothing.record() is None
  with pytest.raises(ValueError, match="mode must be"):
    BestWeights(tmp_path, "val_elbo", "largest")


class _Clock:
  """A clock that advances `tick` seconds each time it is read after the
  first: TimeLimit reads it once at the start and once per step."""

  def __init__(self, tick):
    self.tick, self.now = tick, -tick

  def __call__(self):
    self.now += self.tick
    return self.now


def test_time_limit_stops_fit_at_the_first_step_past_the_budget():
  """Steps of 0.2 s under a 0.5 s budget: the third step ends past it, so
  fit stops there, inside its first epoch, and still validates it. (The
  real clock runs in test_train_flow_vae_example.py's budget test.)"""
  model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse")
  x = np.zeros((40, 2), np.float32)
  y = np.zeros((40, 1), np.float32)
  limit = TimeLimit(0.5, clock=_Clock(0.2))
  history = model.fit(x, y, batch_size=4, epochs=3, validation_data=(x, y),
                      callbacks=[limit], verbose=0)
  assert int(model.optimizer.iterations.numpy()) == 3
  assert len(history.history["val_loss"]) == 1
  assert limit.stopped_after == pytest.approx(0.6)
  # A fresh fit restarts the clock; a budget never reached stops nothing.
  roomy = TimeLimit(600.)
  model.fit(x, y, batch_size=4, epochs=1, callbacks=[roomy], verbose=0)
  assert roomy.stopped_after is None
  assert int(model.optimizer.iterations.numpy()) == 13
  for bad in (0., -1., float("inf"), float("nan")):
    with pytest.raises(ValueError, match="seconds must be"):
      TimeLimit(bad)
