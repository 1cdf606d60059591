"""Keras callbacks for flow training: sample grids written each epoch, the
guard against non-finite losses, a per-epoch log that survives resumes, and
the best epoch's weights, kept on disk and restored at the end."""

import contextlib
import csv
import json
import math
import os
import pathlib
import time
import warnings

import keras
import numpy as np

from tfp_flows import plotting

__all__ = ["BestWeights", "NonFiniteGuard", "TimeLimit", "NonFiniteLossError",
           "SampleGridCallback",
           "ReconstructionGridCallback", "save_vae_grids", "epoch_log",
           "read_epoch_log", "ema_weights", "sample_grid", "uses_ema"]

NON_FINITE_POLICIES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError):
  """Training met a non-finite loss or gradient, with `non_finite="stop"`."""


class NonFiniteGuard(keras.callbacks.Callback):
  """Stops training at a non-finite step, or lets it skip such steps.

  The models' `train_step` never applies a step whose loss or gradients are
  not finite; it counts it in `model.skipped_steps` (logged as
  `skipped_steps`). This callback reads that count after every batch:

  - `policy="stop"`: raises `NonFiniteLossError` at once. The weights are
    those before the bad step, and, because the error leaves `fit` before
    the epoch ends, no checkpoint of the unfinished epoch is written: the
    last checkpoint is the last good epoch. With `compile(
    steps_per_execution=N)`, Keras calls back once per group of N steps, so
    the error comes at the end of the group holding the bad step: the
    group's other (finite) steps are applied, the bad one still is not.
  - `policy="skip"`: warns and goes on; the count stays in the logs.

  At the end of each epoch it also checks every weight is finite, so that a
  checkpoint written after it (the models' `fit` puts it first) never holds a
  NaN or inf.
  """

  def __init__(self, policy="stop"):
    super().__init__()
    if policy not in NON_FINITE_POLICIES:
      raise ValueError(f"non_finite must be one of {NON_FINITE_POLICIES}; got "
                       f"{policy!r}.")
    self.policy = policy
    self._seen = None

  def on_epoch_begin(self, epoch, logs=None):
    # Read here, not in on_train_begin: a restoring callback may load the
    # count from a checkpoint after this callback's on_train_begin.
    self._seen = int(self.model.skipped_steps.numpy())
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    if not logs or "skipped_steps" not in logs:
      return
    skipped = int(np.asarray(logs["skipped_steps"]).ravel()[0])
    if skipped <= self._seen:
      return
    group = int(getattr(self.model, "steps_per_execution", 1) or 1)
    if group == 1:
      where = (f"epoch {self._epoch + 1}, batch {batch + 1} (optimizer step "
               f"{int(self.model.optimizer.iterations.numpy()) + 1})")
    else:
      # Keras reports the group's last batch; the steps after the bad one
      # in the group ran (and, finite, were applied).
      where = (f"epoch {self._epoch + 1}, in batches {max(batch + 2 - group, 1)}"
               f"-{batch + 1} (steps_per_execution={group}; the group's "
               f"finite steps were applied)")
    if self.policy == "stop":
      raise NonFiniteLossError(
          f"{type(self.model).__name__}: non-finite loss or gradient at "
          f"{where}. That update was not applied: no weight holds a "
          f"non-finite value, and the last checkpoint is intact. Lower the "
          f"learning rate, check the data, or pass non_finite='skip' to skip "
          f"such steps and go on.")
    warnings.warn(f"{type(self.model).__name__}: skipped "
                  f"{skipped - self._seen} step(s) with a non-finite loss or "
                  f"gradient at {where}; {skipped} skipped in all.",
                  RuntimeWarning, stacklevel=2)
    self._seen = skipped

  def on_epoch_end(self, epoch, logs=None):
    bad = [w.path for w in self.model.weights
           if w.dtype.startswith("float") and
           not np.all(np.isfinite(np.asarray(w.numpy())))]
    if bad:
      raise NonFiniteLossError(
          f"{type(self.model).__name__}: non-finite values in {bad[:5]} after "
          f"epoch {epoch + 1}; stopped before any checkpoint of this epoch.")


def uses_ema(model):
  """Whether `model`'s optimizer keeps a moving average of the weights
  (`use_ema`; under a `LossScaleOptimizer`, its inner optimizer's)."""
  optimizer = getattr(model, "optimizer", None)
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)
  return bool(getattr(optimizer, "use_ema", False))


@contextlib.contextmanager
def ema_weights(model):
  """Within the block, `model` holds its optimizer's moving average of
  the weights, and its training weights again after (a no-op without
  `use_ema`). Keras' `SwapEMAWeights` does the swap, as it does around
  validation, in place and on every replica."""
  if not uses_ema(model):
    yield model
    return
  swap = keras.callbacks.SwapEMAWeights()
  swap.set_model(model)
  swap.on_test_begin()
  try:
    yield model
  finally:
    swap.on_test_end()


class SampleGridCallback(keras.callbacks.Callback):
  """Writes a PNG of samples at several temperatures after every epoch.

  Uses fixed sampling seeds, so successive epochs show the same latents
  decoded by an improving model, and the moving average of the weights if
  the optimizer keeps one (what the model will be after `fit`). A
  class-conditional model's grids have one row per class.

  Args:
    output_dir: folder for `samples_epoch_{epoch:03d}.png`.
    temperatures: one grid per temperature.
    num_samples: images per grid.
  """

  def __init__(self, output_dir, temperatures=(0.7, 1.0), num_samples=64,
               seed=1234):
    super().__init__()
    self.output_dir = pathlib.Path(output_dir)
    self.temperatures = tuple(temperatures)
    self.num_samples = num_samples
    self.seed = seed

  def on_epoch_end(self, epoch, logs=None):
    with ema_weights(self.model):
      grids = [sample_grid(self.model, self.num_samples, t, self.seed)
               for t in self.temperatures]
    plotting.save_image_grids(
        self.output_dir / f"samples_epoch_{epoch + 1:03d}.png", grids,
        [f"T = {t:g}" for t in self.temperatures],
        suptitle=f"{type(self.model).__name__} samples after epoch {epoch + 1}")


def sample_grid(model, num_samples, temperature, seed):
  """An image grid of `model.sample`s; a class-conditional model's (one
  with `num_classes`) has a row per class, `num_samples // num_classes`
  columns."""
  num_classes = getattr(model, "num_classes", None)
  if not num_classes:
    return plotting.image_grid(model.sample(
        num_samples, temperature=temperature, seed=seed).numpy())
  columns = max(1, num_samples // num_classes)
  labels = np.repeat(np.arange(num_classes, dtype=np.int32), columns)
  images = model.sample(len(labels), temperature=temperature, seed=seed,
                        labels=labels).numpy()
  return plotting.image_grid(images, num_columns=columns)


class ReconstructionGridCallback(keras.callbacks.Callback):
  """After every epoch, writes a PNG of test digits, their reconstructions
  and samples from the prior, for models with `encode`, `decode` and
  `sample` returning pixel probabilities (`FlowVAE`).

  Args:
    images: binary digits `[N, H, W, C]` to reconstruct (the first 32 used).
    output_dir: folder for `epoch_{epoch:03d}.png`.
  """

  def __init__(self, images, output_dir, num_samples=64, seed=1234):
    super().__init__()
    self.images = images  # save_vae_grids draws the first 32
    self.output_dir = pathlib.Path(output_dir)
    self.num_samples = num_samples
    self.seed = seed

  def on_epoch_end(self, epoch, logs=None):
    save_vae_grids(self.model, self.images,
                   self.output_dir / f"epoch_{epoch + 1:03d}.png",
                   self.num_samples, self.seed,
                   suptitle=f"after epoch {epoch + 1}")


def save_vae_grids(model, images, path, num_samples=64, seed=1234,
                   suptitle=None, num_digits=32):
  """The first `num_digits` of `images`, their reconstructions (mean
  latents) and prior samples, side by side; probabilities shown as grey
  levels. (A whole test set in a 4-column grid would be a sliver that
  draws as a blank panel.)"""
  images = images[:num_digits]
  mean, _ = model.encode(images)
  as_uint8 = lambda p: np.round(255 * np.asarray(p)).astype(np.uint8)  # noqa: E731
  grids = [plotting.image_grid(as_uint8(images), num_columns=4),
           plotting.image_grid(as_uint8(model.decode(mean)), num_columns=4),
           plotting.image_grid(as_uint8(model.sample(num_samples, seed=seed)))]
  return plotting.save_image_grids(
      path, grids, ["test digits", "reconstructions", "samples p(x|z), z ~ N(0, I)"],
      suptitle=suptitle)


def epoch_log(path):
  """A `keras.callbacks.CSVLogger` appending each epoch's logs to `path`
  across runs: a resumed run's history (`read_epoch_log`) has every epoch,
  where `fit`'s `History` has only those of its own process.

  Put it before the checkpointing callback: a run killed between the two
  then logs its last epoch twice (`read_epoch_log` keeps the later row)
  rather than not at all.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  return keras.callbacks.CSVLogger(str(path), append=True)


def read_epoch_log(path):
  """`{metric: [value per epoch]}` from an `epoch_log` file, in epoch order;
  of an epoch logged twice, the later row. `{}` if there is no file."""
  path = pathlib.Path(path)
  if not path.exists():
    return {}
  rows = {}
  with path.open(newline="") as file:
    for row in csv.DictReader(file):
      rows[int(row.pop("epoch"))] = row

  def number(text):
    try:
      return float(text)
    except (TypeError, ValueError):  # CSVLogger writes "NA" for a gap
      return math.nan

  keys = sorted({key for row in rows.values() for key in row})
  return {key: [number(rows[epoch].get(key)) for epoch in sorted(rows)]
          for key in keys}


class BestWeights(keras.callbacks.Callback):
  """Keeps the weights of the epoch with the best `monitor` on disk and
  loads them into the model when training ends.

  Keras' `EarlyStopping(restore_best_weights=True)` holds them in memory,
  so a killed and resumed run forgets them; `ModelCheckpoint(
  save_best_only=True)` forgets the best value on resume and overwrites
  the file with the first epoch after it. This writes `best.weights.h5`
  and `best.json` (`{"epoch", "monitor", "value"}`, the epoch counted from
  1) into `directory` after each improvement, each by an atomic rename,
  and reads `best.json` back at the start of training, so a resumed run
  goes on from the same best. With no improvement ever logged (`monitor`
  missing, or every value NaN) nothing is written or restored.

  Args:
    directory: where the two files go (one per worker under a
      multi-worker strategy: `training.TrainingRun` passes its backup
      folder).
    monitor: an epoch log key, e.g. `"val_elbo"`.
    mode: `"max"` or `"min"`: which direction is better.
  """

  def __init__(self, directory, monitor, mode):
    super().__init__()
    if mode not in ("max", "min"):
      raise ValueError(f"BestWeights: mode must be 'max' or 'min'; got "
                       f"{mode!r}.")
    self.directory = pathlib.Path(directory)
    self.monitor, self.mode = monitor, mode
    self.best = None

  @property
  def weights_path(self):
    return self.directory / "best.weights.h5"

  @property
  def record_path(self):
    return self.directory / "best.json"

  def record(self):
    """`best.json`'s contents, or None before any improvement."""
    if not self.record_path.exists():
      return None
    return json.loads(self.record_path.read_text())

  def on_train_begin(self, logs=None):
    record = self.record()
    self.best = record if record and record["monitor"] == self.monitor \
        else None

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self.monitor)
    if value is None or not math.isfinite(float(value)):
      return
    value = float(value)
    if self.best is not None and not (
        value > self.best["value"] if self.mode == "max"
        else value < self.best["value"]):
      return
    self.directory.mkdir(parents=True, exist_ok=True)
    partial = self.directory / "best.partial.weights.h5"
    self.model.save_weights(partial)
    os.replace(partial, self.weights_path)
    self.best = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
    partial_record = self.directory / "best.partial.json"
    partial_record.write_text(json.dumps(self.best))
    os.replace(partial_record, self.record_path)

  def on_train_end(self, logs=None):
    if self.best is not None and self.weights_path.exists():
      self.model.load_weights(self.weights_path)


class TimeLimit(keras.callbacks.Callback):
  """Stops `fit` after the first training step that ends `seconds` or more
  after training began: a wall-clock budget (e.g. two models compared at
  the same minutes of training).

  Keras then ends the epoch as usual (validation, epoch-end callbacks), so
  the last epoch may be partial. Keras 3 has no time-limit callback (TF
  Addons' `TimeStopping` went with that package). The clock starts at
  `on_train_begin`, so a resumed run gets a fresh budget; `stopped_after`
  holds the seconds elapsed when it stopped (None if it did not).
  `clock` (default `time.perf_counter`) lets tests control time.
  """

  def __init__(self, seconds, clock=time.perf_counter):
    super().__init__()
    if not 0. < seconds < math.inf:
      raise ValueError(f"TimeLimit: seconds must be finite and > 0; got "
                       f"{seconds}.")
    self.seconds = float(seconds)
    self.clock = clock
    self.stopped_after = None

  def on_train_begin(self, logs=None):
    self._start = self.clock()
    self.stopped_after = None

  def on_train_batch_end(self, batch, logs=None):
    elapsed = self.clock() - self._start
    if elapsed >= self.seconds:
      self.model.stop_training = True
      self.stopped_after = elapsed
