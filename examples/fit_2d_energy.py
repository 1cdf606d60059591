"""Fits planar and radial flows to the four 2-D energies of Rezende & Mohamed
(2015), Fig. 3, and draws them: rows U1..U4; columns the true density, planar
K = 2, 8, 32 and radial K = 32, each fit shown as its exact density q_K
(through the flow's inverse) with its final free energy.

    python examples/fit_2d_energy.py                      # docs/images/energy_fits.png
    python examples/fit_2d_energy.py --steps 2000 --output /tmp/quick.png

Also writes the free energies as JSON beside the figure. The free energy
F = E_q[log q_K + U] >= -log Z; F + log Z = KL(q_K || exp(-U)/Z) is how far
each fit is from its target (log Z by quadrature).

U2-U4 as written have infinite mass along z1 (see tfp_flows.energies), so
every target is restricted to |z1| <= --box (default 4, the paper's window)
by a soft wall; --box 0 fits the formulas as written (then only U1 has a
log Z, and the other rows' F have no lower bound).
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tqdm.auto as tqdm  # noqa: E402

from tfp_flows import plotting  # noqa: E402
from tfp_flows.cli import (non_negative_float, positive_float,  # noqa: E402
                           positive_int)
from tfp_flows.energies import (ENERGIES, NORMALIZABLE, energy,  # noqa: E402
                                log_density_grid, log_normalizer)
from tfp_flows.models import EnergyFlowModel  # noqa: E402

COLUMNS = [("planar", 2), ("planar", 8), ("planar", 32), ("radial", 32)]
LIMIT = 4.


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description="Fit flows to the paper's 2-D energies; draw one figure.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--steps", type=positive_int, default=20_000)
  parser.add_argument("--batch-size", type=positive_int, default=100)
  parser.add_argument("--learning-rate", type=positive_float, default=3e-3)
  parser.add_argument("--annealing-steps", type=int, default=10_000)
  parser.add_argument("--energies", nargs="+", choices=sorted(ENERGIES),
                      default=sorted(ENERGIES))
  parser.add_argument("--box", type=non_negative_float, default=LIMIT,
                      help="restrict the targets to |z1| <= this; 0: the "
                           "formulas as written")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", type=pathlib.Path,
                      default=pathlib.Path("docs/images/energy_fits.png"))
  return parser.parse_args(argv)


def fit(energy_name, flow, num_flows, args):
  model = EnergyFlowModel(energy_name, flow, num_flows,
                          batch_size=args.batch_size,
                          annealing_steps=args.annealing_steps, seed=args.seed,
                          box=args.box or None)
  model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
  dummy = tf.data.Dataset.from_tensors(0.).repeat()
  model.fit(dummy, steps_per_epoch=args.steps, epochs=1, verbose=0)
  free_energy, stderr = model.free_energy(seed=args.seed + 1)
  return model, float(free_energy), float(stderr)


def main(argv=None):
  args = parse_args(argv)
  keras.utils.set_random_seed(args.seed)
  results = {}
  fig, axes = plt.subplots(len(args.energies), 1 + len(COLUMNS),
                           figsize=(2.6 * (1 + len(COLUMNS)),
                                    2.6 * len(args.energies)), squeeze=False)
  extent = [-LIMIT, LIMIT, -LIMIT, LIMIT]
  start = time.perf_counter()
  with tqdm.tqdm(total=len(args.energies) * len(COLUMNS), unit="fit") as bar:
    for row, energy_name in enumerate(args.energies):
      box = args.box or None
      log_z = (log_normalizer(energy_name, box)
               if box or energy_name in NORMALIZABLE else None)
      log_unnormalized, _ = log_density_grid(
          lambda z, name=energy_name: -energy(name, box)(z), LIMIT)
      axes[row, 0].imshow(np.exp(log_unnormalized), origin="lower",
                          extent=extent, cmap="viridis")
      axes[row, 0].set_ylabel(energy_name, fontsize=12)
      axes[row, 0].set_title("exp(-U)" if row == 0 else "")
      for col, (flow, num_flows) in enumerate(COLUMNS, start=1):
        bar.set_description(f"{energy_name} {flow} K={num_flows}")
        model, free_energy, stderr = fit(energy_name, flow, num_flows, args)
        log_q, cell_area = log_density_grid(model.log_prob, LIMIT)
        q = np.exp(log_q)
        axes[row, col].imshow(q, origin="lower", extent=extent, cmap="viridis")
        axes[row, col].set_title(
            (f"{flow} K={num_flows}\n" if row == 0 else "") +
            f"F = {free_energy:.2f}" +
            ("" if log_z is None else f", KL = {free_energy + log_z:.2f}"),
            fontsize=9)
        results[f"{energy_name}/{flow}_{num_flows}"] = {
            "free_energy": free_energy, "stderr": stderr, "log_z": log_z,
            "kl": None if log_z is None else free_energy + log_z,
            # Mass of q_K inside the plotted window (1 if all of it is).
            "mass_in_window": float(q.sum() * cell_area)}
        bar.update()
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"Free energy F = E_q[log q_K + U] (10,000 samples) and KL = "
               f"F + log Z, after {args.steps} steps"
               + (f"; targets restricted to |z1| <= {args.box:g}" if args.box
                  else ""), fontsize=10)
  plotting.save_figure(fig, args.output)
  summary = {"steps": args.steps, "batch_size": args.batch_size,
             "box": args.box or None,
             "learning_rate": args.learning_rate,
             "annealing_steps": args.annealing_steps,
             "seconds": time.perf_counter() - start, "fits": results}
  args.output.with_suffix(".json").write_text(json.dumps(summary, indent=2))
  for key, value in results.items():
    kl = "" if value["kl"] is None else f"   KL = {value['kl']:.3f}"
    print(f"{key:18s} F = {value['free_energy']:8.3f} ± {value['stderr']:.3f}"
          f"{kl}   mass in window {value['mass_in_window']:.3f}")
  print(f"wrote {args.output} and {args.output.with_suffix('.json')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
