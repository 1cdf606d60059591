"""FlowVAE learning curves and where they lead: how far a run is from a
target test -log p(x), and what more epochs of the same recipe would give.

    python benchmarks/flow_vae_extrapolate.py runs/recipe/planar10_adam_keepbest \\
        runs/recipe/planar10_adamax5e-4 --target 85.1 --to-epochs 1000

For each run folder (examples/train_flow_vae.py's --output-dir), or its
record (flow_vae_runs.py, the .json files under docs/records/), it reads the
training and validation -ELBO per epoch (a folder's history.csv, over
every process of a resumed run), fits the validation curve from --fit-from on with
a saturating power law

    -ELBO_val(t) = a + b t^(-c),     b, c > 0,

and prints its asymptote `a` and its value at --to-epochs (the paper's
500,000 updates of 100 digits are 1,000 epochs of the 50,000 training
digits). The run's measured test -log p(x) (metrics.json) is carried along
the fit by assuming that validation -ELBO gained past the kept epoch turns
into test -log p(x) one for one: predicted(t) = measured + fit(t) -
fit(kept epoch). That assumption is optimistic where the bound tightens
faster than the model improves (a learning-rate decay did exactly that in
docs/RESULTS.md), so the prediction is a best case for the recipe.

A power law cannot see overfitting that has not started: where the
validation curve has already turned up, the fit's asymptote sits below it
and the prediction is again a best case. Runs with a learning-rate decay
(which ends at their last epoch) are drawn but not fitted. A run still
training (no metrics.json yet) is fitted as it stands, without the test
columns (its flags come from the flags.json it wrote when it started).
Draws every run's curves, the fits and the target (as the validation -ELBO
it needs) to --figure.
"""

import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import optimize  # noqa: E402

# Run as `python benchmarks/flow_vae_extrapolate.py`: its folder is on the path.
import flow_vae_runs  # noqa: E402


def power_law(epoch, asymptote, scale, exponent):
  return asymptote + scale * epoch ** -exponent


def fit_power_law(epochs, values):
  """Least-squares `(asymptote, scale, exponent)` and their covariance."""
  start = (values.min() - 1., (values[0] - values.min() + 1.) * epochs[0] ** .5,
           .5)
  return optimize.curve_fit(power_law, epochs, values, p0=start,
                            bounds=([-np.inf, 0., 1e-3], [np.inf, np.inf, 5.]),
                            maxfev=20_000)


def _cell(value):
  """A table cell: nats to 2 decimals, or a dash for a run still training."""
  return "–" if np.isnan(value) else f"{value:.2f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+", type=pathlib.Path,
                      help="train_flow_vae.py output folders or their "
                           "records (.json, flow_vae_runs.py)")
  parser.add_argument("--target", type=float, default=85.1,
                      help="test -log p(x) to reach (nats; the paper's 85.1)")
  parser.add_argument("--to-epochs", type=int, default=1000,
                      help="extrapolate to this many epochs")
  parser.add_argument("--fit-from", type=int, default=10,
                      help="first epoch (1-based) the fit uses")
  parser.add_argument("--figure", type=pathlib.Path, default=pathlib.Path(
      "docs/images/flow_vae_extrapolation.png"))
  args = parser.parse_args()

  fig, ax = plt.subplots(figsize=(7, 4.2))
  print(f"| run | epochs | kept epoch | test −log p(x) | fit a (asymptote) | "
        f"fit at {args.to_epochs} epochs | predicted test −log p(x) at "
        f"{args.to_epochs} | validation −ELBO the target needs |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for run, color in zip(args.runs, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 9):
    record = flow_vae_runs.load(run)
    name = record["name"]
    validation = np.array(record["validation_negative_elbo"])
    train = np.array(record["train_negative_elbo"])
    if len(validation) <= args.fit_from + 3:
      raise SystemExit(f"{run}: {len(validation)} epochs logged, too few to "
                       f"fit from epoch {args.fit_from}")
    # A run still training has no metrics yet: no test figure.
    metrics = record["metrics"] or {"test_negative_log_likelihood": np.nan}
    flags = record["flags"] or {}
    measured = metrics["test_negative_log_likelihood"]
    # best_epoch counts from 1; without it the last epoch's weights were kept.
    kept = (metrics.get("best_epoch") or {}).get(
        "epoch", int(np.argmin(validation)) + 1 if np.isnan(measured)
        else len(validation))
    epochs = np.arange(1, len(validation) + 1, dtype=float)
    ax.plot(epochs, validation, color=color, label=f"{name}: validation")
    ax.plot(np.arange(1, len(train) + 1), train, color=color, ls=":", lw=1,
            label="training (mean over the epoch)")
    if flags.get("lr_decay", "none") != "none":
      # The schedule ends at the run's last epoch: its curve says nothing
      # about more epochs of the same recipe.
      print(f"| {name} | {len(validation)} | {kept} | {measured:.2f} | "
            "no fit: the learning rate decays to 0 at the last epoch | | | |")
      continue
    tail = epochs >= args.fit_from
    params, covariance = fit_power_law(epochs[tail], validation[tail])
    at_target = power_law(args.to_epochs, *params)
    predicted = measured + at_target - power_law(kept, *params)
    # The validation -ELBO whose gain over the kept epoch's fit value would
    # bring test -log p(x) to the target, under the same one-for-one rule.
    needed = power_law(kept, *params) - (measured - args.target)
    # One standard deviation of the fit at --to-epochs from the parameters'
    # covariance (a linearization; epoch-to-epoch noise is correlated, so
    # this understates the uncertainty).
    gradient = np.array([1., args.to_epochs ** -params[2],
                         -params[1] * np.log(args.to_epochs)
                         * args.to_epochs ** -params[2]])
    spread = float(np.sqrt(gradient @ covariance @ gradient))
    print(f"| {name} | {len(validation)} | {kept} | "
          f"{_cell(measured)} | {params[0]:.2f} | "
          f"{at_target:.2f} ± {spread:.2f} | {_cell(predicted)} | "
          f"{_cell(needed)} |")
    future = np.geomspace(args.fit_from, args.to_epochs, 200)
    ax.plot(future, power_law(future, *params), color=color, ls="--", lw=1,
            label=f"fit a + b t^-c, a = {params[0]:.1f}")
    if not np.isnan(needed):
      ax.axhline(needed, color=color, ls="-.", lw=.8,
                 label=f"validation −ELBO for {args.target} nats")
  ax.set_xscale("log")
  ax.set_xlabel("epoch (500 updates of 100 digits)")
  ax.set_ylabel("−ELBO (nats)")
  ax.set_ylim(min(ax.get_ylim()[0], 80.), 110.)
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.))
  args.figure.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.figure, dpi=120, bbox_inches="tight")
  print(f"\nwrote {args.figure}")


if __name__ == "__main__":
  main()
