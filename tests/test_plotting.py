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
