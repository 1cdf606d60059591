"""Keras callbacks for flow training: sample grids written each epoch."""

import pathlib

import keras
import numpy as np

from tfp_flows import plotting

__all__ = ["SampleGridCallback", "ReconstructionGridCallback", "save_vae_grids"]


class SampleGridCallback(keras.callbacks.Callback):
  """Writes a PNG of samples at several temperatures after every epoch.

  Uses fixed sampling seeds, so successive epochs show the same latents
  decoded by an improving model.

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
    grids = [plotting.image_grid(self.model.sample(
        self.num_samples, temperature=t, seed=self.seed).numpy())
             for t in self.temperatures]
    plotting.save_image_grids(
        self.output_dir / f"samples_epoch_{epoch + 1:03d}.png", grids,
        [f"T = {t:g}" for t in self.temperatures],
        suptitle=f"{type(self.model).__name__} samples after epoch {epoch + 1}")


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
    self.images = images[:32]
    self.output_dir = pathlib.Path(output_dir)
    self.num_samples = num_samples
    self.seed = seed

  def on_epoch_end(self, epoch, logs=None):
    save_vae_grids(self.model, self.images,
                   self.output_dir / f"epoch_{epoch + 1:03d}.png",
                   self.num_samples, self.seed,
                   suptitle=f"after epoch {epoch + 1}")


def save_vae_grids(model, images, path, num_samples=64, seed=1234,
                   suptitle=None):
  """Digits, reconstructions (mean latents) and prior samples, side by side;
  probabilities shown as grey levels."""
  mean, _ = model.encode(images)
  as_uint8 = lambda p: np.round(255 * np.asarray(p)).astype(np.uint8)  # noqa: E731
  grids = [plotting.image_grid(as_uint8(images), num_columns=4),
           plotting.image_grid(as_uint8(model.decode(mean)), num_columns=4),
           plotting.image_grid(as_uint8(model.sample(num_samples, seed=seed)))]
  return plotting.save_image_grids(
      path, grids, ["test digits", "reconstructions", "samples p(x|z), z ~ N(0, I)"],
      suptitle=suptitle)
