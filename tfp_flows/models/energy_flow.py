"""A Keras model fitting a planar or radial flow to an unnormalized 2-D
density (Rezende & Mohamed 2015, Sec. 6.1)."""


import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.families import get_family
from tfp_flows.energies import energy
from tfp_flows.layers.flows import FlowParameters
from tfp_flows.models.base import FlowModel
from tfp_flows.models.free_energy import annealed_beta, diagonal_normal_sample

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["EnergyFlowModel"]


@keras.saving.register_keras_serializable(package="tfp_flows")
class EnergyFlowModel(FlowModel):
  r"""Fits `q_K = flow(N(mu, diag sigma^2))` to `exp(-U) / Z` on `R^2`.

  Minimizes the paper's free energy (Sec. 6.1), a Monte Carlo estimate
  over `batch_size` samples `z_0 ~ q_0` per step:

  ```none
  F = E[log q_0(z_0) - sum_k log|det df_k/dz_{k-1}| + beta_t U(z_K)]
    = KL(q_K || e^{-U}/Z) - log Z   at beta_t = 1,
  beta_t = min(1, initial_beta + t / annealing_steps)
  ```

  so `F >= -log Z`, with equality iff `q_K = e^{-U} / Z`. The base's `mu`
  and `log sigma` and the flow parameters are Keras weights (a
  `FlowParameters` layer). `fit` ignores its data: pass any dataset and
  `steps_per_epoch`; step `t` draws its own samples from the stateless seed
  `[seed, t]`.

  Metrics: `free_energy` (at `beta = 1`), `loss` (at `beta_t`), `beta`.

  `box`: fit `energies.energy(energy_name, box)`, the target restricted to
  `|z1| <= box` (needed for `U2`-`U4` to be densities; see
  `tfp_flows.energies`). `None` fits the formula as written.
  """

  metric_names = ("loss", "free_energy", "beta")

  def __init__(self, energy_name="U1", flow="planar", num_flows=8,
               batch_size=100, initial_beta=0.01, annealing_steps=10_000,
               seed=0, box=None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    self.energy_fn = energy(energy_name, box)
    self.box = None if box is None else float(box)
    get_family(flow, "EnergyFlowModel: flow")  # fails fast on a bad name
    if batch_size < 1 or annealing_steps < 0 or not 0. < initial_beta <= 1.:
      raise ValueError(
          f"EnergyFlowModel: need batch_size >= 1, annealing_steps >= 0 and "
          f"0 < initial_beta <= 1; got {batch_size}, {annealing_steps}, "
          f"{initial_beta}.")
    self.energy_name, self.flow, self.num_flows = energy_name, flow, num_flows
    self.batch_size = batch_size
    self.initial_beta, self.annealing_steps = initial_beta, annealing_steps
    self.base_loc = self.add_weight(shape=(2,), initializer="zeros",
                                    name="base_loc")
    self.base_log_scale = self.add_weight(shape=(2,), initializer="zeros",
                                          name="base_log_scale")
    # No network here: under a `mixed_*` policy the flow, like the rest of
    # the model, stays in the variables' dtype.
    self.flow_parameters = FlowParameters(flow, num_flows, 2, seed=seed,
                                          dtype=self.variable_dtype,
                                          name="flow_parameters")
    self.built = True

  def get_config(self):
    return {**super().get_config(), "energy_name": self.energy_name,
            "flow": self.flow, "num_flows": self.num_flows,
            "batch_size": self.batch_size, "initial_beta": self.initial_beta,
            "annealing_steps": self.annealing_steps, "box": self.box}

  def _base_distribution(self):
    return tfd.MultivariateNormalDiag(
        loc=self.base_loc.value, scale_diag=tf.exp(self.base_log_scale.value))

  def sample_and_log_prob(self, noise):
    """`z_K` and `log q_K(z_K)` for standard-normal `noise` `[..., 2]`."""
    z0, log_q0 = diagonal_normal_sample(
        self.base_loc.value, self.base_log_scale.value, noise)
    z, log_det = self.flow_parameters(z0)
    return z, log_q0 - log_det

  def log_prob(self, z):
    """`log q_K(z)` of arbitrary points `[..., 2]`, through the flow's
    inverse (numerical for planar steps)."""
    flow = tfb.Chain(list(reversed(self.flow_parameters.bijectors())))
    q = tfd.TransformedDistribution(self._base_distribution(), flow)
    return q.log_prob(tf.cast(z, self.likelihood_dtype))

  def beta(self, step):
    return annealed_beta(step, self.initial_beta, self.annealing_steps,
                         self.likelihood_dtype)

  def free_energy(self, num_samples=10_000, seed=0):
    """Monte Carlo estimate of `F` at `beta = 1` (an upper bound on
    `-log Z` in expectation): mean and standard error, NumPy floats."""
    noise = tf.random.stateless_normal([num_samples, 2], seed=[seed, 0],
                                       dtype=self.likelihood_dtype)
    z, log_q = self.sample_and_log_prob(noise)
    values = (log_q + self.energy_fn(z)).numpy()
    return values.mean(), values.std(ddof=1) / np.sqrt(num_samples)

  def fit(self, x=None, *args, **kwargs):
    """`FlowModel.fit`; the data are ignored, so not shuffled either."""
    kwargs.setdefault("shuffle", False)
    return super().fit(x, *args, **kwargs)

  def check_batch(self, data):
    del data  # each step draws its own samples from q_0
    return None

  def noise_spec(self, batch):
    return tf.random.stateless_normal, self.batch_size, [2]

  def objective(self, batch, noise, training):
    beta = (self.beta(self.optimizer.iterations) if training
            else tf.constant(1., self.likelihood_dtype))
    z, log_q = self.sample_and_log_prob(noise)
    potential = self.energy_fn(z)
    loss = tf.reduce_mean(log_q + beta * potential)
    return loss, {"loss": loss, "free_energy": log_q + potential,
                  "beta": beta}
