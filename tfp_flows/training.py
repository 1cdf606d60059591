"""The training harness of the examples, for your own scripts and notebooks.

A `TrainingRun` owns what a training script does around `model.fit`:

1. It creates the `tf.distribute` strategy (`distribute.make_strategy`: one
   device, every local device, or a `MultiWorkerMirroredStrategy` cluster
   described by `TF_CONFIG`), so create it before any other TensorFlow work,
   and knows whether this process is the chief. It seeds Python, NumPy and
   TensorFlow (`keras.utils.set_random_seed`). `keep_flags(flags)` writes
   a script's flags to `flags.json` and refuses to resume a checkpoint that
   other flags made (`ResumeError`).
2. `scope()`: build and compile the model in it.
3. `fit(model, train, validation, epochs)` adds the standard callbacks, in
   this order: the per-epoch CSV history (`callbacks.epoch_log`, chief only;
   before the checkpoint, see there), a checkpoint after every epoch
   (`keras.callbacks.BackupAndRestore` in `distribute.worker_dir(backup)`,
   two generations, kept at the end), TensorBoard logs and your
   `chief_callbacks` (chief only), then your `callbacks` (every worker). The
   models' own `fit` puts its `NonFiniteGuard` before all of them. Running
   the same code again resumes after the last finished epoch.
4. `finish(model, export_dir, filename, metrics, curve_metric)`, on the chief
   only: `<export_dir>/<filename>` (`model.save`), a SavedModel for TF
   Serving in the next version folder (`export.export_saved_model`),
   `metrics.json` (your metrics, then the run's: epochs, steps, training time,
   strategy, replicas, and the history of every epoch across resumed runs)
   and `learning_curve.png`.

What to measure, and any figure of a particular model, stays with the caller.
From Python (a notebook, a script):

```python
import keras
from tfp_flows import data, training
from tfp_flows.callbacks import SampleGridCallback
from tfp_flows.models import GlowModel

run = training.TrainingRun("runs/my_glow", seed=0)  # first: makes the strategy
splits = data.load_mnist(data_dir=None)   # TFDS mnist, or a folder of IDX files
with run.scope():
  model = GlowModel(num_levels=2, num_steps=4, hidden_channels=32)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
run.fit(model, data.image_dataset(splits["train"], 64, shuffle=True),
        data.image_dataset(splits["validation"], 256), epochs=2,
        chief_callbacks=[SampleGridCallback(run.output_dir / "samples")])
test = model.evaluate(data.image_dataset(splits["test"], 256),
                      return_dict=True)
run.finish(model, "saved_models/my_glow", "glow.keras",
           {"test_bits_per_dim": test["bits_per_dim"]},
           curve_metric="bits_per_dim", curve_label="bits/dim")
```

A command-line script lets `exit_code` turn the errors a user can fix into a
message on stderr and an exit code, without a traceback:

```python
def main(argv=None):
  return training.exit_code(train, parse_args(argv), prog="my_script.py")
```

```none
EXIT_OK          0  finished (also when a rerun found every epoch done)
EXIT_BAD_INPUT   2  data.DataError (missing, unreadable or wrong data),
                    distribute.StrategyError (e.g. no TF_CONFIG),
                    ResumeError (a checkpoint of other flags); argparse
                    uses 2 for bad flags too
EXIT_NON_FINITE  3  callbacks.NonFiniteLossError: a non-finite step with
                    non_finite="stop"; the last checkpoint is intact
```
"""

import json
import os
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from tfp_flows import data, distribute, plotting
from tfp_flows.callbacks import (BestWeights, NonFiniteLossError, epoch_log,
                                 read_epoch_log)
from tfp_flows.export import export_saved_model

__all__ = ["TrainingRun", "ResumeError", "exit_code", "EXIT_OK",
           "EXIT_BAD_INPUT", "EXIT_NON_FINITE"]

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3


class ResumeError(ValueError):
  """A run's folder holds a checkpoint that other flags made: rerunning
  resumes a run, so it must be the same run."""


class _StepsTrained(keras.callbacks.Callback):
  """The optimizer's step count when training ends, before any callback
  after it loads other weights (`BestWeights` loads the kept epoch's, and
  the optimizer's state with them: Keras 3.15's `save_weights` holds it)."""

  steps = None

  def on_train_end(self, logs=None):
    self.steps = int(self.model.optimizer.iterations.numpy())


class TrainingRun:
  """One training run: its strategy, its folder, its callbacks and results.

  Args:
    output_dir: the run's folder: `history.csv`, `backup/` (checkpoints),
      `logs/` (TensorBoard), `metrics.json`, `learning_curve.png`, and
      whatever the caller's callbacks write there.
    strategy: a name from `distribute.STRATEGIES` (`"default"`, `"mirrored"`,
      `"multi_worker"`), created here, or a `tf.distribute.Strategy` you
      made (e.g. with a `SlurmClusterResolver`).
    cpu_replicas: with `"mirrored"` and no GPU, split the CPU into this many
      replicas (`distribute.make_strategy`).
    seed: passed to `keras.utils.set_random_seed`; None leaves the seeds.

  Raises:
    distribute.StrategyError: the strategy cannot be made as asked.
  """

  def __init__(self, output_dir, strategy="default", cpu_replicas=None,
               seed=0):
    # Before anything else touches TensorFlow's runtime (see make_strategy).
    if isinstance(strategy, tf.distribute.Strategy):
      if cpu_replicas is not None:
        raise distribute.StrategyError(
            "cpu_replicas splits the CPU for a strategy made here (by name); "
            f"got a {type(strategy).__name__} and cpu_replicas="
            f"{cpu_replicas}.")
      self.strategy, self.strategy_name = strategy, type(strategy).__name__
    else:
      self.strategy = distribute.make_strategy(strategy, cpu_replicas)
      self.strategy_name = strategy
    self.is_chief = distribute.is_chief(self.strategy)
    self.output_dir = pathlib.Path(output_dir)
    self._steps_trained = None
    if seed is not None:
      keras.utils.set_random_seed(seed)
    self.epochs = None
    self.train_seconds = None
    self.best_weights = None

  #: Flags a rerun may change and still continue the run in its folder: how
  #: long it trains, where it reads and writes, how it is distributed.
  RESUMABLE_FLAGS = frozenset({
      "epochs", "max_minutes", "data_dir", "output_dir", "export_dir",
      "strategy", "cpu_replicas", "non_finite", "steps_per_execution"})

  def keep_flags(self, flags, may_change=()):
    """Writes a script's `flags` to `<output_dir>/flags.json` (chief only),
    first checking that they may resume the checkpoint there.

    `BackupAndRestore` resumes whatever checkpoint it finds. A rerun with
    another recipe in the same folder (another optimizer or learning rate,
    whose weights and slots load just as well) would otherwise continue the
    old run under the new flags, and its figures would be credited to them.

    Args:
      flags: `{name: value}` (e.g. `vars(args)`); values JSON cannot hold
        are written as strings.
      may_change: flags besides `RESUMABLE_FLAGS` a rerun may change (e.g.
        how the test set is scored).

    Raises:
      ResumeError: this worker's `backup/` holds a checkpoint and the flags
        it was made with differ from `flags` in another flag. Flags missing
        from the old `flags.json` (added to the script since) do not count.
    """
    flags = json.loads(json.dumps(flags, default=str))
    path = self.output_dir / "flags.json"
    has_checkpoint = self.backup_dir.is_dir() and any(
        self.backup_dir.iterdir())
    if has_checkpoint and path.is_file():
      previous = json.loads(path.read_text())
      may_change = self.RESUMABLE_FLAGS | set(may_change)
      changed = [f"{name}: {previous[name]!r} -> {flags.get(name)!r}"
                 for name in sorted(previous)
                 if name not in may_change and previous[name] != flags.get(name)]
      if changed:
        raise ResumeError(
            f"{self.output_dir} holds a checkpoint of a run with other flags "
            f"({'; '.join(changed)}). Rerunning resumes the same run: pass "
            f"another output folder, or delete {self.backup_dir} to start "
            "over.")
    if self.is_chief:
      self.output_dir.mkdir(parents=True, exist_ok=True)
      # Whole or not at all: the other workers of a resumed multi-worker
      # run read it meanwhile.
      partial = path.with_suffix(".json.partial")
      partial.write_text(json.dumps(flags, indent=1) + "\n")
      os.replace(partial, path)

  @property
  def num_replicas(self):
    return self.strategy.num_replicas_in_sync

  @property
  def history_path(self):
    """Every epoch's logs, appended across resumed runs (chief only)."""
    return self.output_dir / "history.csv"

  @property
  def backup_dir(self):
    """This worker's checkpoints: `backup/` on the chief, `backup/<task>_<i>/`
    on the other workers (each resumes from its own copy)."""
    return distribute.worker_dir(self.output_dir / "backup", self.strategy)

  def scope(self):
    """The strategy's scope: create and compile the model in it."""
    return self.strategy.scope()

  def history(self):
    """`{metric: [value per epoch]}` of every epoch, across resumed runs."""
    return read_epoch_log(self.history_path)

  def callbacks(self, chief_callbacks=(), callbacks=(), keep_best=None):
    """The standard callbacks with yours, in the order `fit` uses;
    `keep_best` as in `fit`."""
    chief = self.is_chief
    # Before the checkpoint: a run killed between the two logs its last
    # epoch twice (read_epoch_log keeps the later row), never not at all.
    standard = [epoch_log(self.history_path)] if chief else []
    self.best_weights = None
    # Before BestWeights, whose on_train_end loads the kept epoch's weights
    # and with them the optimizer's step count: `finish` reports the steps
    # trained, not the kept epoch's.
    self._steps_trained = _StepsTrained()
    standard.append(self._steps_trained)
    if keep_best is not None:
      # Before the checkpoint too: a run killed between the two would
      # resume past an epoch whose weights were never considered.
      self.best_weights = BestWeights(self.backup_dir / "best", *keep_best)
      standard.append(self.best_weights)
    # Weights, optimizer state and epoch after every epoch, restored when the
    # same code runs again; kept after the last epoch, so a rerun of a
    # finished run trains no further. Two generations, so a run killed while
    # writing one restarts from the other.
    # Made here, not by the callback: Keras checks then creates (os.makedirs
    # without exist_ok), and a worker creating `backup/worker_1` between the
    # chief's check and its create fails the chief with FileExistsError.
    self.backup_dir.mkdir(parents=True, exist_ok=True)
    standard.append(keras.callbacks.BackupAndRestore(
        str(self.backup_dir), delete_checkpoint=False, double_checkpoint=True))
    if chief:
      standard.append(keras.callbacks.TensorBoard(str(self.output_dir /
                                                      "logs")))
      standard += list(chief_callbacks)
    return standard + list(callbacks)

  def fit(self, model, train, validation=None, epochs=1, *,
          chief_callbacks=(), callbacks=(), non_finite="stop", keep_best=None,
          **fit_kwargs):
    """`model.fit` with the standard callbacks; resumes a killed run.

    Args:
      model: a compiled model built in `scope()` whose `fit` takes
        `non_finite` (`GlowModel`, `FlowVAE`).
      train, validation: datasets of global batches.
      epochs: the run's total epoch count (a resumed run trains the rest).
      chief_callbacks: run on the chief only, after the standard ones
        (figures, anything that writes shared files).
      callbacks: run on every worker, last.
      non_finite: `"stop"` raises `NonFiniteLossError` at a non-finite step,
        `"skip"` skips such steps (the models' `fit`).
      keep_best: `(monitor, mode)`, e.g. `("val_elbo", "max")`: keep the
        best epoch's weights on disk (`callbacks.BestWeights`, in
        `backup/best/`, surviving kills) and end with them in `model`;
        `finish` then reports that epoch. None: end with the last epoch's.
      **fit_kwargs: passed on to `model.fit` (e.g. `verbose`).

    Returns:
      `fit`'s `History` (this process's epochs only; `history()` has all).
    """
    self.epochs = epochs
    start = time.perf_counter()
    result = model.fit(train, validation_data=validation, epochs=epochs,
                       callbacks=self.callbacks(chief_callbacks, callbacks,
                                                keep_best),
                       non_finite=non_finite, **fit_kwargs)
    self.train_seconds = time.perf_counter() - start
    return result

  def finish(self, model, export_dir, filename, metrics=None,
             curve_metric="loss", curve_label=None, saved_model=True):
    """Saves the model and the run's results; on the chief only.

    Writes `<export_dir>/<filename>` (`model.save`), with `saved_model` a
    SavedModel in the next version folder of `export_dir`
    (`export.export_saved_model`), then `metrics.json` and
    `learning_curve.png` (`curve_metric` and `val_<curve_metric>` per
    epoch) in `output_dir`, and prints where they went.

    Args:
      metrics: the caller's results, first in `metrics.json`; the run adds
        `epochs`, `steps`, `train_seconds_this_run`, `strategy`, `replicas`,
        `best_epoch` (`fit(keep_best=...)`'s record, else None) and
        `history` unless given. NumPy scalars and paths are written as
        numbers and strings.

    Returns:
      The metrics written, or None on a worker that is not the chief.
    """
    if not self.is_chief:
      return None
    export_dir = pathlib.Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    model_path = export_dir / filename
    model.save(model_path)
    saved_model_path = (export_saved_model(model, export_dir) if saved_model
                        else None)
    results = dict(metrics or {})
    for key, value in (
        ("epochs", self.epochs),
        ("steps", self._steps_trained.steps
         if self._steps_trained and self._steps_trained.steps is not None
         else int(model.optimizer.iterations.numpy())),
        ("train_seconds_this_run", self.train_seconds),
        ("strategy", self.strategy_name),
        ("replicas", self.num_replicas),
        ("best_epoch", self.best_weights and self.best_weights.record()),
        ("history", self.history())):
      results.setdefault(key, value)
    self.output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = self.output_dir / "metrics.json"
    metrics_path.write_text(json.dumps(results, indent=2, default=_to_json))
    plotting.save_learning_curves(self.output_dir / "learning_curve.png",
                                  results["history"], curve_metric,
                                  curve_label)
    print(f"wrote {metrics_path}, {model_path}" + (
        f"; SavedModel for TF Serving: {saved_model_path}"
        if saved_model else ""))
    return results


def _to_json(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, pathlib.PurePath):
    return str(value)
  raise TypeError(f"metrics.json: cannot write {type(value).__name__} "
                  f"{value!r}.")


def exit_code(main, *args, prog=None, **kwargs):
  """Calls `main(*args, **kwargs)` and returns a script's exit code.

  `main`'s return value (`EXIT_OK` if None), or, after one line on stderr
  (`<prog>: <message>`, no traceback), `EXIT_BAD_INPUT` for a `DataError`,
  `StrategyError` or `ResumeError`, and `EXIT_NON_FINITE` for a
  `NonFiniteLossError`.
  Other exceptions propagate: they are bugs, and their traceback helps.

  Args:
    prog: the name starting the message; default the script's file name.
  """
  prog = prog or pathlib.Path(sys.argv[0]).name
  try:
    code = main(*args, **kwargs)
  except (data.DataError, distribute.StrategyError, ResumeError) as error:
    print(f"{prog}: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except NonFiniteLossError as error:
    print(f"{prog}: {error} Rerunning the same command resumes from the last "
          f"checkpoint; --non-finite skip goes past such steps.",
          file=sys.stderr)
    return EXIT_NON_FINITE
  return EXIT_OK if code is None else code
