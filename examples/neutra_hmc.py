r"""NeuTra HMC (Hoffman et al. 2019) with a planar flow: a flow fitted by
`tfp.vi.fit_surrogate_posterior` preconditions HMC through
`tfp.mcmc.TransformedTransitionKernel`, compared with plain HMC on the same
target.

The target is the twisted Gaussian ("banana") of Haario et al. (1999):

```none
x_1 ~ N(0, s^2),    x_2 | x_1 ~ N(b (x_1^2 - s^2), 1)        (s = 10, b = 0.1)
E[x] = 0,   Var[x_1] = s^2,   Var[x_2] = 1 + b^2 Var[x_1^2] = 1 + 2 b^2 s^4
```

It is the shear `(z_1, z_2) -> (z_1, z_2 + b (z_1^2 - s^2))` of
`N(0, diag(s^2, 1))`, so its density is normalized and its moments are exact.
Its curvature changes along a narrow ridge (conditional scale 1, arms 100 units
long): plain HMC must take steps sized for the ridge and many of them to
travel its length.

NeuTra runs HMC on `z` with the target `log p(f(z)) + log|det J_f(z)|`, where
`f` is the trained flow (`TransformedTransitionKernel` builds exactly this
from `bijector=f`). If `f_# N(0, I)` were `p`, that target would be `N(0, I)`.
Only `f` and its log-det are evaluated during sampling; the planar inverse
(numerical root finding) is never called: chains start at `z_0 ~ N(0, I)`
through `bootstrap_results(transformed_init_state=z_0)`.

Both samplers: `DualAveragingStepSizeAdaptation` around HMC, the same number of
leapfrog steps, burn-in, target acceptance and initial states (`f(z_0)`, so
plain HMC starts from the same points NeuTra does). Gradient evaluations are
counted as iterations x leapfrog steps x chains (TFP's leapfrog integrator takes
one gradient of the target per leapfrog step and carries the last one to the
next iteration). For NeuTra each of these also differentiates through the
flow; VI training is counted separately as steps x Monte Carlo samples
(gradients of the target).

    python examples/neutra_hmc.py
    python examples/neutra_hmc.py --num-results 500 --num-chains 8 --vi-steps 2000
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
        np.eye(dim), tfb.FillScaleTriL(), dtype=dtype, name=name))

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


def make_kernel(target_log_prob_fn, num_leapfrog_steps, num_adaptation_steps,
                bijector=None, target_accept_prob=0.75, initial_step_size=0.1):
  """Dual-averaging-adapted HMC, run on `z` with `x = bijector(z)` if given.

  `TransformedTransitionKernel` is the outer kernel so that
  `bootstrap_results(transformed_init_state=...)` can start it in the latent
  space; it rewrites the target of the HMC kernel nested inside the step-size
  adaptation, which then adapts the latent step size.
  """
  kernel = tfp.mcmc.DualAveragingStepSizeAdaptation(
      tfp.mcmc.HamiltonianMonteCarlo(
          target_log_prob_fn, step_size=initial_step_size,
          num_leapfrog_steps=num_leapfrog_steps),
      num_adaptation_steps=num_adaptation_steps,
      target_accept_prob=target_accept_prob)
  if bijector is not None:
    kernel = tfp.mcmc.TransformedTransitionKernel(kernel, bijector)
  return kernel


def run_chains(target_log_prob_fn, initial_latent, num_results,
               num_burnin_steps, num_leapfrog_steps, bijector=None, seed=0,
               target_accept_prob=0.75):
  """Runs HMC chains from `bijector(initial_latent)` (NeuTra if `bijector`
  is given, plain HMC started from the same points otherwise).

  Returns numpy samples `[num_results, chains, 2]` of the target, the
  acceptance indicators `[num_results, chains]` and the adapted step size.
  """
  kernel = make_kernel(target_log_prob_fn, num_leapfrog_steps,
                       num_adaptation_steps=int(0.8 * num_burnin_steps),
                       bijector=bijector, target_accept_prob=target_accept_prob)

  def trace_fn(_, results):
    if bijector is not None:
      results = results.inner_results
    return results.inner_results.is_accepted, results.new_step_size

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

  samples, (accepted, step_size) = sample(
      tf.convert_to_tensor(initial_latent, tf.float32),
      tfp.random.sanitize_seed(seed))
  return samples.numpy(), accepted.numpy(), float(step_size[-1])


def chain_summary(samples, accepted, num_leapfrog_steps, target):
  """ESS (cross-chain), R-hat and moments of `samples [n, chains, 2]`."""
  num_results, num_chains, _ = samples.shape
  ess = tfp.mcmc.effective_sample_size(
      tf.constant(samples, tf.float64), cross_chain_dims=1).numpy()
  r_hat = tfp.mcmc.potential_scale_reduction(
      tf.constant(samples, tf.float64), independent_chain_ndims=1).numpy()
  flat = samples.reshape(-1, 2).astype(np.float64)
  mean, variance = flat.mean(0), flat.var(0)
  # Standard error of the mean from the true variance and the measured ESS.
  mean_z = (mean - target.mean()) / np.sqrt(target.variance() / ess)
  gradients = num_results * num_leapfrog_steps * num_chains
  return {
      "ess": ess.tolist(),
      "min_ess": float(ess.min()),
      "gradient_evaluations": int(gradients),
      "ess_per_gradient": (ess / gradients).tolist(),
      "min_ess_per_gradient": float(ess.min() / gradients),
      "r_hat": r_hat.tolist(),
      "acceptance_rate": float(accepted.mean()),
      "mean": mean.tolist(),
      "mean_z_score": mean_z.tolist(),
      "variance": variance.tolist(),
      "variance_ratio": (variance / target.variance()).tolist(),
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
      description="NeuTra HMC with a planar flow against plain HMC on the "
                  "banana target; prints a table, writes JSON and a figure.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--scale", type=positive_float, default=10.)
  parser.add_argument("--curvature", type=float, default=0.1)
  parser.add_argument("--num-planar", type=non_negative_int, default=16,
                      help="planar steps in the flow; 0 leaves the affine "
                           "part only (linear preconditioning)")
  parser.add_argument("--vi-steps", type=positive_int, default=6000)
  parser.add_argument("--vi-sample-size", type=positive_int, default=64)
  parser.add_argument("--learning-rate", type=positive_float, default=0.02)
  parser.add_argument("--num-chains", type=positive_int, default=16)
  parser.add_argument("--num-results", type=positive_int, default=4000)
  parser.add_argument("--num-burnin-steps", type=positive_int, default=1000)
  parser.add_argument("--num-leapfrog-steps", type=positive_int, default=4)
  parser.add_argument("--target-accept-prob", type=positive_float, default=0.75)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--output", type=pathlib.Path,
                      default=pathlib.Path("runs/neutra/neutra.json"))
  parser.add_argument("--figure", type=pathlib.Path, default=None,
                      help="PNG path; default: beside --output")
  parser.add_argument("--no-figure", action="store_true")
  args = parser.parse_args(argv)
  if args.num_chains < 2:
    parser.error("--num-chains: cross-chain ESS and R-hat need >= 2 chains")
  if not 0 < args.target_accept_prob < 1:
    parser.error("--target-accept-prob must be in (0, 1)")
  return args


def main(argv=None):
  args = parse_args(argv)
  keras.utils.set_random_seed(args.seed)
  target = Banana(args.scale, args.curvature)
  results = {"command_args": {k: str(v) for k, v in vars(args).items()},
             "target": {"name": "banana", "scale": target.scale,
                        "curvature": target.curvature,
                        "mean": target.mean().tolist(),
                        "variance": target.variance().tolist()}}

  print(f"[1/3] VI: {args.vi_steps} steps x {args.vi_sample_size} samples, "
        f"{args.num_planar} planar steps ...", flush=True)
  start = time.perf_counter()
  surrogate, losses = fit_flow(target.log_prob, args.num_planar, args.vi_steps,
                               args.vi_sample_size, args.learning_rate,
                               seed=args.seed)
  window = max(1, args.vi_steps // 10)
  vi_samples = surrogate.sample(
      20_000, seed=tfp.random.sanitize_seed(args.seed + 1)).numpy()
  # log Z = 0 (the target is normalized), so the final loss estimates
  # KL(q || p) directly.
  results["vi"] = {
      "seconds": time.perf_counter() - start,
      "gradient_evaluations": args.vi_steps * args.vi_sample_size,
      "kl_q_p_last_window": float(losses[-window:].mean()),
      "loss_first_window": float(losses[:window].mean()),
      "mean": vi_samples.mean(0).tolist(),
      "variance": vi_samples.var(0).tolist(),
  }
  print(f"      {results['vi']['seconds']:.1f} s; KL(q||p) ~ "
        f"{results['vi']['kl_q_p_last_window']:.3f} nats "
        f"(mean loss over the last {window} steps)", flush=True)

  initial_latent = tf.random.stateless_normal(
      [args.num_chains, 2], seed=[args.seed, 7])
  initial_state = surrogate.bijector.forward(initial_latent).numpy()
  chains = {}
  for stage, (name, bijector) in enumerate(
      [("hmc", None), ("neutra", surrogate.bijector)], start=2):
    print(f"[{stage}/3] {name}: {args.num_chains} chains x "
          f"({args.num_burnin_steps} burn-in + {args.num_results}) iterations "
          f"x {args.num_leapfrog_steps} leapfrog steps ...", flush=True)
    start = time.perf_counter()
    samples, accepted, step_size = run_chains(
        target.log_prob,
        initial_state if bijector is None else initial_latent,
        args.num_results, args.num_burnin_steps, args.num_leapfrog_steps,
        bijector=bijector, seed=args.seed + stage,
        target_accept_prob=args.target_accept_prob)
    seconds = time.perf_counter() - start
    summary = chain_summary(samples, accepted, args.num_leapfrog_steps, target)
    summary.update(
        seconds=seconds, step_size=step_size,
        burnin_gradient_evaluations=(args.num_burnin_steps
                                     * args.num_leapfrog_steps
                                     * args.num_chains))
    results[name] = summary
    chains[name] = samples
    print(f"      {seconds:.1f} s (including XLA compilation)", flush=True)

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
    plot(figure, target, [
        (f"VI flow, {args.num_planar} planar steps\n(independent samples)",
         vi_samples[:4000]),
        (f"plain HMC, L = {args.num_leapfrog_steps}\nmin ESS/grad = "
         f"{results['hmc']['min_ess_per_gradient']:.2e}", thin(chains["hmc"])),
        (f"NeuTra HMC, L = {args.num_leapfrog_steps}\nmin ESS/grad = "
         f"{results['neutra']['min_ess_per_gradient']:.2e}",
         thin(chains["neutra"])),
    ], limits)
    print(f"wrote {figure}")
  return results


def _print_table(results, target):
  truth_var = target.variance()
  rows = [
      ("step size (adapted)", lambda r: f"{r['step_size']:.3g}"),
      ("acceptance rate", lambda r: f"{r['acceptance_rate']:.3f}"),
      ("ESS x1, x2", lambda r: "{:.0f}, {:.0f}".format(*r["ess"])),
      ("gradient evaluations", lambda r: f"{r['gradient_evaluations']:,}"),
      ("ESS/grad x1, x2",
       lambda r: "{:.2e}, {:.2e}".format(*r["ess_per_gradient"])),
      ("min ESS/grad", lambda r: f"{r['min_ess_per_gradient']:.2e}"),
      ("R-hat x1, x2", lambda r: "{:.3f}, {:.3f}".format(*r["r_hat"])),
      ("mean x1, x2 (truth 0, 0)", lambda r: "{:.2f}, {:.2f}".format(*r["mean"])),
      ("mean z-score x1, x2",
       lambda r: "{:.2f}, {:.2f}".format(*r["mean_z_score"])),
      (f"var x1, x2 (truth {truth_var[0]:.0f}, {truth_var[1]:.0f})",
       lambda r: "{:.1f}, {:.1f}".format(*r["variance"])),
      ("sampling seconds (incl. compile)", lambda r: f"{r['seconds']:.1f}"),
  ]
  width = max(len(name) for name, _ in rows)
  print()
  print(f"{'':{width}}  {'plain HMC':>22}  {'NeuTra HMC':>22}")
  for name, cell in rows:
    print(f"{name:{width}}  {cell(results['hmc']):>22}  "
          f"{cell(results['neutra']):>22}")
  vi = results["vi"]
  print(f"\nVI training: {vi['gradient_evaluations']:,} target gradient "
        f"evaluations ({vi['seconds']:.1f} s), KL(q||p) ~ "
        f"{vi['kl_q_p_last_window']:.3f}; burn-in: "
        f"{results['hmc']['burnin_gradient_evaluations']:,} per sampler.")
  print(f"VI flow alone (20,000 independent samples): mean "
        "{:.2f}, {:.2f}; var {:.1f}, {:.1f}".format(*vi["mean"], *vi["variance"]))


if __name__ == "__main__":
  main()
