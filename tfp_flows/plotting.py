"""Figures: matplotlib only, written to files (no display needed)."""

import matplotlib

matplotlib.use("Agg")  # headless: the examples write PNGs, never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

__all__ = ["plot_displacement", "save_figure"]


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
