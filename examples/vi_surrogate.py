r"""A planar/radial flow as the surrogate posterior of `tfp.vi`, checked
against a posterior known in closed form.

The model is Bayesian linear regression with known noise:

```none
w ~ N(0, tau^2 I_D),     y | w ~ N(X w, sigma^2 I_N)
=> w | y ~ N(mu, Sigma),  Sigma = (X^T X / sigma^2 + I / tau^2)^{-1},
                          mu = Sigma X^T y / sigma^2,
   log p(y) = log N(y; 0, sigma^2 I + tau^2 X X^T).
```

The surrogate is `q = (Shift ∘ ScaleMatvecTriL ∘ Planar ∘ Radial)_# N(0, I)`
with every parameter a `tf.Variable`, trained by
`tfp.vi.fit_surrogate_posterior` (reverse KL, reparametrized gradients). The
exact posterior lies in the family (the flow steps at the identity, the affine
map at `(mu, chol Sigma)`), so a good fit reaches `KL(q || p) = 0`: the loss
`E_q[log q - log p(w, y)] = KL - log p(y)` then equals `-log p(y)` with zero
variance.

    python examples/vi_surrogate.py
    python examples/vi_surrogate.py --num-steps 1000 --dim 2 --seed 1
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_flows.bijectors import Planar, Radial  # noqa: E402
from tfp_flows.cli import positive_float, positive_int  # noqa: E402

tfb = tfp.bijectors
tfd = tfp.distributions


class RegressionProblem:
  """Data and exact posterior of Bayesian linear regression, float64 numpy.

  The design has correlated columns, so the posterior covariance is far from
  diagonal and a mean-field surrogate could not match it.
  """

  def __init__(self, dim=3, num_points=20, noise_scale=0.5, prior_scale=1.,
               seed=0):
    rng = np.random.default_rng(seed)
    mixing = np.eye(dim) + 0.8 * np.tril(np.ones((dim, dim)), -1)
    self.features = rng.normal(size=(num_points, dim)) @ mixing.T
    self.true_weights = rng.normal(scale=prior_scale, size=dim)
    self.targets = (self.features @ self.true_weights
                    + rng.normal(scale=noise_scale, size=num_points))
    self.noise_scale, self.prior_scale, self.dim = noise_scale, prior_scale, dim

  def exact_posterior(self):
    """Returns the posterior mean `[D]`, covariance `[D, D]` and `log p(y)`."""
    x, y = self.features, self.targets
    precision = x.T @ x / self.noise_scale**2 + np.eye(self.dim) / self.prior_scale**2
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y / self.noise_scale**2
    marginal_cov = (self.noise_scale**2 * np.eye(len(y))
                    + self.prior_scale**2 * x @ x.T)
    log_evidence = tfd.MultivariateNormalTriL(
        scale_tril=np.linalg.cholesky(marginal_cov)).log_prob(y).numpy()
    return mean, cov, float(log_evidence)

  def target_log_prob_fn(self, dtype=tf.float32):
    """`w [..., D] -> log p(w, y) [...]`, the unnormalized posterior."""
    x = tf.constant(self.features, dtype)
    y = tf.constant(self.targets, dtype)
    prior = tfd.MultivariateNormalDiag(
        scale_diag=tf.fill([self.dim], tf.constant(self.prior_scale, dtype)))
    noise_scale = tf.constant(self.noise_scale, dtype)

    def log_prob(w):
      predictions = tf.einsum("nd,...d->...n", x, w)
      log_likelihood = tf.reduce_sum(
          tfd.Normal(predictions, noise_scale).log_prob(y), axis=-1)
      return prior.log_prob(w) + log_likelihood

    return log_prob


def _fill_scale_tril(dtype):
  # TFP's default `diag_shift` is a Python float, which makes the bijector
  # float32 whatever the variable's dtype.
  return tfb.FillScaleTriL(diag_shift=tf.constant(1e-5, dtype))


def make_surrogate(dim, seed=0, dtype=tf.float32):
  """`(Shift ∘ ScaleMatvecTriL ∘ Planar ∘ Radial)_# N(0, I_dim)`.

  The nonlinear steps start near the identity (small planar `u, w`; radial
  `beta = 0`); the affine part starts at `N(0, I)`. `tfb.Chain` applies its
  list right to left.
  """
  rng = np.random.default_rng(seed)

  def variable(value, name):
    return tf.Variable(np.asarray(value), dtype=dtype, name=name)

  flow = tfb.Chain([
      tfb.Shift(variable(np.zeros(dim), "loc")),
      tfb.ScaleMatvecTriL(tfp.util.TransformedVariable(
          np.eye(dim), _fill_scale_tril(dtype), dtype=dtype,
          name="scale_tril")),
      Planar(u=variable(0.1 * rng.normal(size=dim), "planar_u"),
             w=variable(0.1 * rng.normal(size=dim), "planar_w"),
             b=variable(0., "planar_b")),
      # raw_alpha = raw_beta gives beta = 0: the identity.
      Radial.from_unconstrained(z0=variable(rng.normal(size=dim), "radial_z0"),
                                raw_alpha=variable(0., "radial_raw_alpha"),
                                raw_beta=variable(0., "radial_raw_beta")),
  ])
  base = tfd.MultivariateNormalDiag(loc=tf.zeros(dim, dtype))
  return tfd.TransformedDistribution(base, flow, name="flow_surrogate")


def fit(problem, num_steps=3000, sample_size=32, learning_rate=0.05, seed=0,
        jit_compile=True):
  """Trains `make_surrogate` by `tfp.vi.fit_surrogate_posterior`.

  Returns the surrogate and the loss trace `[num_steps]` (numpy): the
  per-step Monte Carlo estimate of `KL(q || p) - log p(y)`.
  """
  surrogate = make_surrogate(problem.dim, seed=seed)
  # Cosine decay: the gradient noise near the optimum is of the order of the
  # posterior scale, so a constant rate leaves the fit jittering around it.
  optimizer = keras.optimizers.Adam(
      keras.optimizers.schedules.CosineDecay(learning_rate, num_steps))
  # Slot variables made now, not inside the traced optimization loop.
  optimizer.build(surrogate.trainable_variables)
  losses = tfp.vi.fit_surrogate_posterior(
      problem.target_log_prob_fn(), surrogate, optimizer=optimizer,
      num_steps=num_steps, sample_size=sample_size,
      seed=tfp.random.sanitize_seed(seed), jit_compile=jit_compile)
  return surrogate, losses.numpy()


def sample_moments(distribution, num_samples=20_000, seed=0):
  """Monte Carlo mean `[D]` and covariance `[D, D]` of `distribution`."""
  samples = distribution.sample(
      num_samples, seed=tfp.random.sanitize_seed(seed)).numpy().astype(np.float64)
  return samples.mean(0), np.cov(samples, rowvar=False)


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description="Fit a flow surrogate posterior with tfp.vi and compare it "
                  "with the exact posterior of Bayesian linear regression.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--dim", type=positive_int, default=3)
  parser.add_argument("--num-points", type=positive_int, default=20)
  parser.add_argument("--num-steps", type=positive_int, default=3000)
  parser.add_argument("--sample-size", type=positive_int, default=32)
  parser.add_argument("--learning-rate", type=positive_float, default=0.05)
  parser.add_argument("--num-eval-samples", type=positive_int, default=20_000)
  parser.add_argument("--seed", type=int, default=0)
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  problem = RegressionProblem(dim=args.dim, num_points=args.num_points,
                              seed=args.seed)
  exact_mean, exact_cov, log_evidence = problem.exact_posterior()
  start = time.perf_counter()
  surrogate, losses = fit(problem, num_steps=args.num_steps,
                          sample_size=args.sample_size,
                          learning_rate=args.learning_rate, seed=args.seed)
  seconds = time.perf_counter() - start
  fit_mean, fit_cov = sample_moments(surrogate, args.num_eval_samples,
                                     seed=args.seed + 1)
  np.set_printoptions(precision=4, suppress=True)
  window = max(1, args.num_steps // 10)
  print(f"fit_surrogate_posterior: {args.num_steps} steps x {args.sample_size} "
        f"samples in {seconds:.1f} s")
  print(f"loss, mean of first {window} steps: {losses[:window].mean():.4f}; "
        f"of last {window}: {losses[-window:].mean():.4f}; "
        f"-log p(y) exact: {-log_evidence:.4f}")
  print("posterior mean, fitted:", fit_mean)
  print("posterior mean, exact: ", exact_mean)
  print("posterior cov, fitted:\n", fit_cov)
  print("posterior cov, exact:\n", exact_cov)
  exact_scale = np.linalg.cholesky(exact_cov)
  whitened_error = np.linalg.solve(exact_scale, fit_mean - exact_mean)
  whitened_cov = np.linalg.solve(exact_scale,
                                 np.linalg.solve(exact_scale, fit_cov).T)
  print(f"mean error in posterior standard deviations (Mahalanobis): "
        f"{np.linalg.norm(whitened_error):.4f}")
  print(f"max |eigenvalue - 1| of the whitened fitted covariance: "
        f"{np.abs(np.linalg.eigvalsh(whitened_cov) - 1).max():.4f}")


if __name__ == "__main__":
  main()
