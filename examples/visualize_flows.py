"""Shows what one planar and one radial layer do to a 2-D Gaussian cloud.

Writes two PNGs:
  planar_flows.png: a planar layer with hyperplane w^T z + b = 0 the line
    z1 + z2 = 0, for ten values of ||u||, u along w (top row: expansion away
    from the line) and against w (bottom row: contraction toward it, limited
    by the invertibility constraint w^T u_hat > -1).
  radial_flows.png: a radial layer around the origin for ten values of beta
    (beta < 0 contracts toward z0, beta > 0 expands away from it).
Each point z (blue) is joined to its image f(z) (red).

    python examples/visualize_flows.py --out-dir outputs/visualize_flows
"""

import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import plotting  # noqa: E402
from tfp_flows.bijectors import Planar, Radial  # noqa: E402

U_NORMS = (0.1, 0.25, 0.5, 0.75, 1., 1.5, 2., 2.5, 3., 4.)
BETAS = (-0.99, -0.75, -0.5, -0.25, 0.25, 0.5, 1., 2., 4., 8.)


def planar_figure(points):
  w = np.array([1., 1.], np.float32) * 1.5  # normal of the line z1 + z2 = 0
  w_dir = w / np.linalg.norm(w)
  fig, axes = plt.subplots(2, len(U_NORMS), figsize=(2 * len(U_NORMS), 4.6))
  line = np.linspace(-4, 4, 2)
  for row, sign in enumerate((1., -1.)):
    for ax, u_norm in zip(axes[row], U_NORMS):
      planar = Planar(u=sign * u_norm * w_dir, w=w, b=np.float32(0.))
      images = planar.forward(points).numpy()
      w_dot_u_hat = float(np.dot(w, planar.u_hat().numpy()))
      plotting.plot_displacement(
          ax, points, images,
          title=f"||u||={u_norm:g} {'along' if sign > 0 else 'against'} w\n"
                f"w·û={w_dot_u_hat:.2f}")
      ax.plot(line, -line, "k--", linewidth=0.8)
  fig.suptitle("Planar flow f(z) = z + û tanh(wᵀz + b); dashed: wᵀz + b = 0 "
               "(z₁ + z₂ = 0); blue z, red f(z)")
  return fig


def radial_figure(points):
  fig, axes = plt.subplots(2, len(BETAS) // 2, figsize=(2 * len(BETAS) // 2 + 1, 4.6))
  alpha = np.float32(1.)
  for ax, beta in zip(axes.ravel(), BETAS):
    radial = Radial(z0=np.zeros(2, np.float32), alpha=alpha, beta=np.float32(beta))
    plotting.plot_displacement(ax, points, radial.forward(points).numpy(),
                               title=f"α=1, β={beta:g}", limit=5.)
    ax.plot([0.], [0.], "k+", markersize=8)
  fig.suptitle("Radial flow f(z) = z + β(z − z₀)/(α + ‖z − z₀‖), z₀ = 0 (+); "
               "blue z, red f(z)")
  return fig


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out-dir", type=pathlib.Path,
                      default=pathlib.Path("outputs/visualize_flows"),
                      help="folder for the PNGs (default: %(default)s)")
  parser.add_argument("--num-points", type=int, default=400)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.num_points < 1:
    parser.error(f"--num-points must be >= 1, got {args.num_points}")
  points = np.random.default_rng(args.seed).normal(
      size=(args.num_points, 2)).astype(np.float32)
  for name, make in (("planar_flows.png", planar_figure),
                     ("radial_flows.png", radial_figure)):
    path = plotting.save_figure(make(points), args.out_dir / name)
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
