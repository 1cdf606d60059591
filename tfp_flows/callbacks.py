"""Keras callbacks for flow training: sample grids written each epoch."""

import pathlib

import keras

from tfp_flows import plotting

__all__ = ["SampleGridCallback"]


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
