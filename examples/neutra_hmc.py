r"""NeuTra HMC (Hoffman et al. 2019) with a planar flow: a flow fitted by
`tfp.vi.fit_surrogate_posterior` preconditions NUTS through
`tfp.mcmc.TransformedTransitionKernel`, compared with plain NUTS on the same
target, over several seeds.

The target is the twisted Gaussian ("banana") of Haario et al. (1999):

```none
x_1 ~ N(0, s^2),    x_2 | x_1 ~ N(b (x_1^2 - s^2), 1)        (s = 3, b = 0.2)
E[x] = 0,   Var[x_1] = s^2,   Var[x_2] = 1 + b^2 Var[x_1^2] = 1 + 2 b^2 s^4
```

It is the shear `(z_1, z_2) -> (z_1, z_2 + b (z_1^2 - s^2))` of
`N(0, diag(s^2, 1))`, so its density is normalized and its moments are exact.
Its curvature grows along the arms (the ridge's slope is `2 b x_1`), so one
global step size must be small enough for the arms; a flow that undoes the
shear makes the latent target close to `N(0, I)`.

NeuTra runs the sampler on `z` with the target
`log p(f(z)) + log|det J_f(z)|`, where `f` is the trained flow
(`TransformedTransitionKernel` builds exactly this from `bijector=f`). Only
`f` and its log-det are evaluated during sampling; the planar inverse
(numerical root finding) is never called: chains start at `z_0 ~ N(0, I)`
through `bootstrap_results(transformed_init_state=z_0)`.

Both samplers are NUTS (so each picks its own trajectory lengths) inside
`DualAveragingStepSizeAdaptation`, with the same target acceptance, burn-in,
number of draws and initial points (`f(z_0)`, so plain NUTS starts from the
same points NeuTra does). Gradient evaluations are the leapfrog steps NUTS
took in the kept iterations, summed over chains (one gradient of the target
per leapfrog step). For NeuTra each also differentiates through the flow; VI
training is counted separately as steps x Monte Carlo samples. Each seed
repeats the whole pipeline (VI fit, initial points, both samplers); the
summary is the median over seeds.

    python examples/neutra_hmc.py
    python examples/neutra_hmc.py --num-planar 0     # affine flow only
"""

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_flows import plotting  # noqa: E402
from tfp_flows.bijectors import Planar  # noqa: E402
from tfp_flows.cli import non_negative_int, positive_float, positive_int  # noqa: E402

tfb = tfp.bijectors
tfd = tfp.distributions


class Banana:
  """The twisted Gaussian `x_2 | x_1 ~ N(b (x_1^2 - s^2), 1)`, `x_1 ~ N(0, s^2)`."""

  def __init__(self, scale=10., curvature=0.1):
    if not scale > 0:
      raise ValueError(f"Banana: scale must be > 0; got {scale}.")
    self.scale, self.curvature = float(scale), float(curvature)

  def log_prob(self, x):
    """Normalized log density of `x [..., 2]`."""
    x = tf.convert_to_tensor(x)
    x1, x2 = x[..., 0], x[..., 1]
    ridge = self.curvature * (tf.square(x1) - self.scale**2)
    return (tfd.Normal(tf.zeros([], x.dtype), self.scale).log_prob(x1)
            + tfd.Normal(ridge, tf.ones([], x.dtype)).log_prob(x2))

  def mean(self):
    return np.zeros(2)

  def variance(self):
    # Var[x_1^2] = 2 s^4 for x_1 ~ N(0, s^2).
    return np.array([self.scale**2,
                     1. + 2. * self.curvature**2 * self.scale**4])

  def fourth_central_moment(self):
    # x_2 = a + e with a = b s^2 (g^2 - 1), g and e standard normal:
    # E a^4 = b^4 s^8 E(g^2 - 1)^4 = 60 b^4 s^8, E a^2 = 2 b^2 s^4.
    b2s4 = self.curvature**2 * self.scale**4
    return np.array([3. * self.scale**4, 60. * b2s4**2 + 12. * b2s4 + 3.])


def make_flow(num_planar, dim=2, seed=0, dtype=tf.float32):
  """`Shift ∘ ScaleMatvecTriL ∘ (Planar ∘ ScaleMatvecTriL)^K`, all variables.

  The affine maps between planar steps let each step bend a different
  direction at its own scale; the outer affine map carries the target's
  location and scale, so the planar steps work at unit scale. Planar steps
  start near the identity (`u, w ~ N(0, 0.1^2)`, `b = 0`).
  """
  rng = np.random.default_rng(seed)

  def variable(value, name):
    return tf.Variable(np.asarray(value), dtype=dtype, name=name)

  def tril(name):
    return tfb.ScaleMatvecTriL(tfp.util.TransformedVariable(
        np.eye(dim),
        # TFP's default diag_shift, a Python float, would make it float32.
        tfb.FillScaleTriL(diag_shift=tf.constant(1e-5, dtype)), dtype=dtype,
        name=name))

  # Listed in the order applied to z; tfb.Chain applies its list right to left.
  steps = []
  for k in range(num_planar):
    steps.append(tril(f"scale_tril_{k}"))
    steps.append(Planar(u=variable(0.1 * rng.normal(size=dim), f"u_{k}"),
                        w=variable(0.1 * rng.normal(size=dim), f"w_{k}"),
                        b=variable(0., f"b_{k}"), name=f"planar_{k}"))
  steps.append(tril("scale_tril_out"))
  steps.append(tfb.Shift(variable(np.zeros(dim), "loc")))
  return tfb.Chain(steps[::-1], name="neutra_flow")


def fit_flow(target_log_prob_fn, num_planar=16, num_steps=6000, sample_size=64,
             learning_rate=0.02, seed=0):
  """Fits `make_flow(num_planar)_# N(0, I)` to the target by reverse KL.

  Returns the surrogate `TransformedDistribution` and the loss trace (numpy,
  the Monte Carlo estimate of `KL(q || p) - log Z` at each step).
  """
  flow = make_flow(num_planar, seed=seed)
  surrogate = tfd.TransformedDistribution(
      tfd.MultivariateNormalDiag(loc=tf.zeros(2)), flow)
  optimizer = keras.optimizers.Adam(
      keras.optimizers.schedules.CosineDecay(learning_rate, num_steps))
  # Slot variables made now, not inside the traced optimization loop.
  optimizer.build(surrogate.trainable_variables)
  losses = tfp.vi.fit_surrogate_posterior(
      target_log_prob_fn, surrogate, optimizer=optimizer, num_steps=num_steps,
      sample_size=sample_size, seed=tfp.random.sanitize_seed(seed),
      jit_compile=True)
  return surrogate, losses.numpy()


def make_kernel(target_log_prob_fn, num_adaptation_steps, bijector=None,
                target_accept_prob=0.95, initial_step_size=0.1,
                max_tree_depth=10):
  """Dual-averaging-adapted NUTS, run on `z` with `x = bijector(z)` if given.

  NUTS picks each trajectory's length itself, so neither sampler depends on a
  hand-chosen number of leapfrog steps; both adapt their own step size to the
  same target acceptance. `TransformedTransitionKernel` is the outer kernel
  so that `bootstrap_results(transformed_init_state=...)` can start it in the
  latent space; it rewrites the target of the NUTS kernel nested inside the
  step-size adaptation, which then adapts the latent step size.
  """
  kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
      tfp.mcmc.NoUTurnSampler(target_log_prob_fn, step_size=initial_step_size,
                              max_tree_depth=max_tree_depth),
      num_adaptation_steps=num_adaptation_steps,
      target_accept_prob=target_accept_prob)
  if bijector is not None:
    kernel = tfp.mcmc.TransformedTransitionKernel(kernel, bijector)
  return kernel


def run_chains(target_log_prob_fn, initial_latent, num_results,
               num_burnin_steps, bijector=None, seed=0,
               target_accept_prob=0.95):
  """Runs NUTS chains from `bijector(initial_latent)` (NeuTra if `bijector`
  is given, plain NUTS started from the same points otherwise).

  Returns a dict of numpy arrays: `samples [num_results, chains, 2]` of the
  target, and per kept iteration and chain `leapfrogs` (leapfrog steps, i.e.
  gradient evaluations of the (latent) target), `accepted` and `divergent`;
  plus the adapted `step_size`.
  """
  kernel = make_kernel(target_log_prob_fn,
                       num_adaptation_steps=int(0.8 * num_burnin_steps),
                       bijector=bijector, target_accept_prob=target_accept_prob)

  def trace_fn(_, results):
    if bijector is not None:
      results = results.inner_results
    nuts = results.inner_results
    return (nuts.leapfrogs_taken, nuts.is_accepted, nuts.has_divergence,
            results.new_step_size)

  @tf.function(jit_compile=True)
  def sample(initial_latent, seed):
    if bijector is None:
      initial_state = initial_latent
      previous_results = kernel.bootstrap_results(initial_state)
    else:
      initial_state = bijector.forward(initial_latent)
      previous_results = kernel.bootstrap_results(
          transformed_init_state=initial_latent)
    return tfp.mcmc.sample_chain(
        num_results, initial_state, previous_kernel_results=previous_results,
        kernel=kernel, num_burnin_steps=num_burnin_steps, trace_fn=trace_fn,
        seed=seed)

  samples, (leapfrogs, accepted, divergent, step_size) = sample(
      tf.convert_to_tensor(initial_latent, tf.float32),
      tfp.random.sanitize_seed(seed))
  return {"samples": samples.numpy(), "leapfrogs": leapfrogs.numpy(),
          "accepted": accepted.numpy(), "divergent": divergent.numpy(),
          "step_size": float(step_size[-1])}


def chain_summary(chains, target):
  """ESS (cross-chain), R-hat, moments and cost of a `run_chains` result."""
  samples = chains["samples"]
  ess = tfp.mcmc.effective_sample_size(
      tf.constant(samples, tf.float64), cross_chain_dims=1).numpy()
  r_hat = tfp.mcmc.potential_scale_reduction(
      tf.constant(samples, tf.float64), independent_chain_ndims=1).numpy()
  flat = samples.reshape(-1, 2).astype(np.float64)
  mean, variance = flat.mean(0), flat.var(0)
  # Standard error of the mean from the true variance and the measured ESS.
  mean_z = (mean - target.mean()) / np.sqrt(target.variance() / ess)
  # The variance is the mean of (x - mean)^2: its standard error comes from
  # that statistic's ESS and its true variance E(x - mean)^4 - Var^2, which
  # heavy tails make much larger than the mean's. (The chain's own spread
  # of (x - mean)^2 is no substitute: a chain that undersamples the tails
  # underestimates it, and the variance's error along with it.)
  squared = np.square(samples.astype(np.float64) - target.mean())
  squared_ess = tfp.mcmc.effective_sample_size(
      tf.constant(squared), cross_chain_dims=1).numpy()
  squared_variance = target.fourth_central_moment() - target.variance()**2
  variance_z = ((squared.reshape(-1, 2).mean(0) - target.variance())
                / np.sqrt(squared_variance / squared_ess))
  # One gradient of the (latent) target per leapfrog step, summed over the
  # kept iterations of every chain: each chain's own cost. Batched chains
  # run in lockstep, so the batched target evaluates every chain at each
  # step any chain takes (tests/test_tfp_pipelines.py counts both).
  gradients = int(chains["leapfrogs"].astype(np.int64).sum())
  return {
      "ess": ess.tolist(),
      "min_ess": float(ess.min()),
      "gradient_evaluations": gradients,
      "gradients_per_iteration": gradients / chains["leapfrogs"].size,
      "ess_per_gradient": (ess / gradients).tolist(),
      "min_ess_per_gradient": float(ess.min() / gradients),
      "r_hat": r_hat.tolist(),
      "max_r_hat": float(r_hat.max()),
      "acceptance_rate": float(chains["accepted"].mean()),
      "divergences": int(chains["divergent"].sum()),
      "step_size": chains["step_size"],
      "mean": mean.tolist(),
      "mean_z_score": mean_z.tolist(),
      "variance": variance.tolist(),
      "variance_ratio": (variance / target.variance()).tolist(),
      "variance_z_score": variance_z.tolist(),
  }


def plot(path, target, panels, limits):
  """Target contours with the samples of each `(title, samples)` panel."""
  (x_low, x_high), (y_low, y_high) = limits
  grid_x, grid_y = np.meshgrid(np.linspace(x_low, x_high, 300),
                               np.linspace(y_low, y_high, 300))
  grid = np.stack([grid_x, grid_y], -1).astype(np.float32)
  log_density = target.log_prob(grid).numpy()
  # Contours at 0.5 to 12 nats below the mode.
  levels = log_density.max() - np.array([12., 8., 4.5, 2., 0.5])
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.),
                           sharex=True, sharey=True, squeeze=False)
  for ax, (title, samples) in zip(axes[0], panels):
    ax.contour(grid_x, grid_y, log_density, levels=levels,
               colors="0.4", linewidths=0.7)
    ax.scatter(samples[:, 0], samples[:, 1], s=1.5, alpha=0.35,
               color="tab:blue", rasterized=True)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_low, y_high)
    ax.set_xlabel("$x_1$")
  axes[0, 0].set_ylabel("$x_2$")
  return plotting.save_figure(fig, path)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description="NeuTra NUTS with a planar flow against plain NUTS on the "
                  "banana target, over several seeds; prints a table, writes "
                  "JSON and a figure.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--scale", type=positive_float, default=3.)
  parser.add_argument("--curvature", type=float, default=0.2)
  parser.add_argument("--num-planar", type=non_negative_int, default=16,
                      help="planar steps in the flow; 0 leaves the affine "
                           "part only (linear preconditioning)")
  parser.add_argument("--vi-steps", type=positive_int, default=5000)
  parser.add_argument("--vi-sample-size", type=positive_int, default=64)
  parser.add_argument("--learning-rate", type=positive_float, default=0.02)
  parser.add_argument("--num-chains", type=positive_int, default=16)
  parser.add_argument("--num-results", type=positive_int, default=2000)
  parser.add_argument("--num-burnin-steps", type=positive_int, default=500)
  parser.add_argument("--target-accept-prob", type=positive_float,
                      default=0.95)
  parser.add_argument("--seed", type=int, default=0,
                      help="first seed; seeds seed .. seed + num_seeds - 1")
  parser.add_argument("--num-seeds", type=positive_int, default=3,
                      help="independent repeats of the whole pipeline (VI "
                           "fit, initial states, both samplers)")
  parser.add_argument("--output", type=pathlib.Path,
                      default=pathlib.Path("runs/neutra/neutra.json"))
  parser.add_argument("--figure", type=pathlib.Path, default=None,
                      help="PNG path (first seed); default: beside --output")
  parser.add_argument("--no-figure", action="store_true")
  args = parser.parse_args(argv)
  if args.num_chains < 2:
    parser.error("--num-chains: cross-chain ESS and R-hat need >= 2 chains")
  if not 0 < args.target_accept_prob < 1:
    parser.error("--target-accept-prob must be in (0, 1)")
  return args


def run_seed(args, target, seed):
  """VI fit, then plain and NeuTra NUTS from the same initial points."""
  keras.utils.set_random_seed(seed)
  result = {"seed": seed}
  start = time.perf_counter()
  surrogate, losses = fit_flow(target.log_prob, args.num_planar, args.vi_steps,
                               args.vi_sample_size, args.learning_rate,
                               seed=seed)
  window = max(1, args.vi_steps // 10)
  vi_samples = surrogate.sample(
      20_000, seed=tfp.random.sanitize_seed(seed + 1)).numpy()
  # log Z = 0 (the target is normalized), so the final loss estimates
  # KL(q || p) directly.
  result["vi"] = {
      "seconds": time.perf_counter() - start,
      "gradient_evaluations": args.vi_steps * args.vi_sample_size,
      "kl_q_p_last_window": float(losses[-window:].mean()),
      "loss_first_window": float(losses[:window].mean()),
      "mean": vi_samples.mean(0).tolist(),
      "variance": vi_samples.var(0).tolist(),
      "variance_ratio": (vi_samples.var(0) / target.variance()).tolist(),
  }
  print(f"  seed {seed}: VI {result['vi']['seconds']:.1f} s, KL(q||p) ~ "
        f"{result['vi']['kl_q_p_last_window']:.3f}", flush=True)

  initial_latent = tf.random.stateless_normal(
      [args.num_chains, 2], seed=[seed, 7])
  initial_state = surrogate.bijector.forward(initial_latent).numpy()
  samples = {"vi": vi_samples}
  for offset, (name, bijector) in enumerate(
      [("hmc", None), ("neutra", surrogate.bijector)], start=2):
    start = time.perf_counter()
    chains = run_chains(
        target.log_prob,
        initial_state if bijector is None else initial_latent,
        args.num_results, args.num_burnin_steps, bijector=bijector,
        seed=seed * 100 + offset, target_accept_prob=args.target_accept_prob)
    summary = chain_summary(chains, target)
    summary["seconds"] = time.perf_counter() - start
    result[name] = summary
    samples[name] = chains["samples"]
    print(f"  seed {seed}: {name} NUTS {summary['seconds']:.1f} s "
          "(including XLA compilation)", flush=True)
  return result, samples


def main(argv=None):
  args = parse_args(argv)
  target = Banana(args.scale, args.curvature)
  results = {"command_args": {k: str(v) for k, v in vars(args).items()},
             "target": {"name": "banana", "scale": target.scale,
                        "curvature": target.curvature,
                        "mean": target.mean().tolist(),
                        "variance": target.variance().tolist()}}
  seeds = list(range(args.seed, args.seed + args.num_seeds))
  print(f"{len(seeds)} seeds x [VI: {args.vi_steps} steps x "
        f"{args.vi_sample_size} samples, {args.num_planar} planar steps; "
        f"plain and NeuTra NUTS: {args.num_chains} chains x "
        f"({args.num_burnin_steps} burn-in + {args.num_results}) iterations, "
        f"target acceptance {args.target_accept_prob}] ...", flush=True)
  start = time.perf_counter()
  runs, first_samples = [], None
  for seed in seeds:
    run, samples = run_seed(args, target, seed)
    runs.append(run)
    first_samples = first_samples or samples
  results["runs"] = runs
  results["median_over_seeds"] = {
      name: {key: float(np.median([run[name][key] for run in runs]))
             for key in ("min_ess_per_gradient", "gradients_per_iteration",
                         "max_r_hat", "step_size", "seconds")}
      for name in ("hmc", "neutra")}
  ratios = [run["neutra"]["min_ess_per_gradient"]
            / run["hmc"]["min_ess_per_gradient"] for run in runs]
  results["neutra_over_hmc_min_ess_per_gradient"] = {
      "per_seed": ratios, "median": float(np.median(ratios))}
  results["total_seconds"] = time.perf_counter() - start

  _print_table(results, target)
  args.output.parent.mkdir(parents=True, exist_ok=True)
  args.output.write_text(json.dumps(results, indent=2) + "\n")
  print(f"wrote {args.output}")
  if not args.no_figure:
    figure = args.figure or args.output.with_suffix(".png")
    s, b = target.scale, target.curvature
    limits = ((-3.5 * s, 3.5 * s),
              (-b * s**2 - 4., max(b * (3.5**2 - 1.) * s**2, 4.) + 4.))
    thin = lambda x: x.reshape(-1, 2)[:: max(1, x[..., 0].size // 4000)]
    first = runs[0]
    plot(figure, target, [
        (f"VI flow, {args.num_planar} planar steps\n(independent samples, "
         f"seed {first['seed']})", first_samples["vi"][:4000]),
        (f"plain NUTS\nmin ESS/grad = "
         f"{first['hmc']['min_ess_per_gradient']:.2e}",
         thin(first_samples["hmc"])),
        (f"NeuTra NUTS\nmin ESS/grad = "
         f"{first['neutra']['min_ess_per_gradient']:.2e}",
         thin(first_samples["neutra"])),
    ], limits)
    print(f"wrote {figure}")
  return results


def _print_table(results, target):
  truth_var = target.variance()
  columns = [
      ("KL(q||p)", lambda run, r: f"{run['vi']['kl_q_p_last_window']:.3f}"),
      ("step", lambda run, r: f"{r['step_size']:.3f}"),
      ("grad/it", lambda run, r: f"{r['gradients_per_iteration']:.1f}"),
      ("accept", lambda run, r: f"{r['acceptance_rate']:.3f}"),
      ("div", lambda run, r: f"{r['divergences']}"),
      ("ESS x1,x2", lambda run, r: "{:.0f},{:.0f}".format(*r["ess"])),
      ("min ESS/grad", lambda run, r: f"{r['min_ess_per_gradient']:.2e}"),
      ("R-hat x1,x2", lambda run, r: "{:.3f},{:.3f}".format(*r["r_hat"])),
      ("mean z x1,x2",
       lambda run, r: "{:+.2f},{:+.2f}".format(*r["mean_z_score"])),
      ("var/true x1,x2",
       lambda run, r: "{:.2f},{:.2f}".format(*r["variance_ratio"])),
      ("sec", lambda run, r: f"{r['seconds']:.1f}"),
  ]
  header = ["sampler", "seed"] + [name for name, _ in columns]
  rows = []
  for name, label in (("hmc", "plain"), ("neutra", "NeuTra")):
    for run in results["runs"]:
      rows.append([label, str(run["seed"])]
                  + [cell(run, run[name]) for _, cell in columns])
  widths = [max(len(row[i]) for row in rows + [header])
            for i in range(len(header))]
  print(f"\ntarget: banana s = {target.scale:g}, b = {target.curvature:g}; "
        f"true var x1, x2 = {truth_var[0]:.2f}, {truth_var[1]:.2f}")
  for row in [header] + rows:
    print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
  median = results["median_over_seeds"]
  ratio = results["neutra_over_hmc_min_ess_per_gradient"]
  print(f"\nmedian min ESS/grad over seeds: plain "
        f"{median['hmc']['min_ess_per_gradient']:.2e}, NeuTra "
        f"{median['neutra']['min_ess_per_gradient']:.2e}; NeuTra/plain per "
        "seed: " + ", ".join(f"{r:.1f}" for r in ratio["per_seed"])
        + f" (median {ratio['median']:.1f})")
  run = results["runs"][0]
  print(f"cost not in ESS/grad: VI {run['vi']['gradient_evaluations']:,} "
        f"target gradients per seed; burn-in {results['command_args']['num_burnin_steps']} "
        "iterations per chain; each NeuTra gradient also goes through the flow.")
  print("VI flow alone (20,000 independent samples), var/true x1, x2: "
        + "; ".join("seed {}: {:.2f}, {:.2f}".format(
            r["seed"], *r["vi"]["variance_ratio"]) for r in results["runs"]))
  print(f"total {results['total_seconds']:.0f} s")


if __name__ == "__main__":
  main()
