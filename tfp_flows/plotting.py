"""Figures: matplotlib only, written to files (no display needed)."""

import matplotlib

matplotlib.use("Agg")  # headless: the examples write PNGs, never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

__all__ = ["image_grid", "plot_displacement", "save_figure",
           "save_image_grids"]


def plot_displacement(ax, points, images, title=None, limit=4.):
  """Draws each point, its image under a flow, and the segment joining them.

  Args:
    ax: matplotlib `Axes`.
    points: `[N, 2]` array, the flow's inputs.
    images: `[N, 2]` array, the flow's outputs.
    title: optional panel title.
    limit: axes span `[-limit, limit]` in both directions.
  """
  points, images = np.asarray(points), np.asarray(images)
  segments = np.stack([points, images], axis=1)
  ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.4,
                                   zorder=1))
  ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:blue", zorder=2,
             label="z")
  ax.scatter(images[:, 0], images[:, 1], s=2, c="tab:red", zorder=3,
             label="f(z)")
  ax.set_xlim(-limit, limit)
  ax.set_ylim(-limit, limit)
  ax.set_aspect("equal")
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=8)


def save_figure(fig, path):
  """Saves and closes `fig`, creating the parent folder."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def image_grid(images, num_columns=None, padding=1, pad_value=128):
  """Tiles `[N, H, W, C]` images into one array, `padding` pixels of
  `pad_value` between them (so black-background digits stay apart)."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  num_columns = num_columns or int(np.ceil(np.sqrt(n)))
  num_rows = int(np.ceil(n / num_columns))
  cell_h, cell_w = h + padding, w + padding
  grid = np.full((num_rows * cell_h + padding, num_columns * cell_w + padding,
                  c), pad_value, images.dtype)
  for i, image in enumerate(images):
    row, col = divmod(i, num_columns)
    top, left = padding + row * cell_h, padding + col * cell_w
    grid[top:top + h, left:left + w] = image
  return grid


def save_image_grids(path, grids, titles, suptitle=None):
  """Saves image grids side by side (grayscale when single-channel)."""
  fig, axes = plt.subplots(1, len(grids), figsize=(4 * len(grids), 4.3),
                           squeeze=False)
  for ax, grid, title in zip(axes[0], grids, titles):
    grid = np.asarray(grid)
    if grid.shape[-1] == 1:
      ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
      ax.imshow(grid)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
  if suptitle:
    fig.suptitle(suptitle)
  return save_figure(fig, path)


def save_learning_curves(path, history, metric, ylabel=None):
  """Plots `history[metric]` and `history["val_" + metric]` per epoch."""
  fig, ax = plt.subplots(figsize=(5, 3.2))
  for key, label in ((metric, "train (mean over epoch)"),
                     (f"val_{metric}", "validation")):
    if key in history:
      ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel(ylabel or metric)
  ax.grid(alpha=0.3)
  ax.legend()
  return save_figure(fig, path)
