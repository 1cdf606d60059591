"""Figures: grid layout, and the visualization example writes its PNGs."""

import pathlib
import subprocess
import sys

import numpy as np

from tfp_flows import plotting

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_image_grid_places_every_image_with_padding():
  images = np.arange(5 * 2 * 3 * 1, dtype=np.uint8).reshape(5, 2, 3, 1)
  grid = plotting.image_grid(images, num_columns=3, padding=1, pad_value=200)
  assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
  np.testing.assert_array_equal(grid[1:3, 1:4], images[0])
  np.testing.assert_array_equal(grid[4:6, 5:8], images[4])
  assert np.all(grid[0] == 200) and np.all(grid[4:6, 9:12] == 200)


def test_visualize_flows_writes_both_figures(tmp_path):
  result = subprocess.run(
      [sys.executable, str(ROOT / "examples" / "visualize_flows.py"),
       "--out-dir", str(tmp_path), "--num-points", "50"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  for name in ("planar_flows.png", "radial_flows.png"):
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vae_grids_show_the_first_digits_however_many_are_given(
    tmp_path, monkeypatch):
  """`save_vae_grids` given a whole test set (the example passes one)
  draws the first 32 digits and their reconstructions in 8 x 4 grids: the
  whole set in 4 columns was a sliver that drew as a blank panel."""
  from tfp_flows import callbacks

  class Model:  # encode / decode / sample, as FlowVAE's, in probabilities
    def encode(self, images):
      return images.reshape(len(images), -1)[:, :2], None

    def decode(self, mean):
      return np.full((len(mean), 28, 28, 1), 0.5)

    def sample(self, n, seed=None):
      return np.full((n, 28, 28, 1), 0.25)

  drawn = {}
  monkeypatch.setattr(plotting, "save_image_grids",
                      lambda path, grids, titles, suptitle=None:
                      drawn.update(zip(titles, grids)))
  digits = (np.random.default_rng(0).random((1000, 28, 28, 1)) < 0.5)
  callbacks.save_vae_grids(Model(), digits.astype(np.uint8),
                           tmp_path / "grids.png")
  want = plotting.image_grid(np.round(255 * digits[:32]).astype(np.uint8),
                             num_columns=4)
  np.testing.assert_array_equal(drawn["test digits"], want)
  assert drawn["reconstructions"].shape == want.shape
