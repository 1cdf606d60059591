"""Chains of planar or radial flows built from parameter tensors.

Two owners of the same parameters: an encoder that emits them per example
(the amortized flows of `FlowVAE`), or `FlowParameters`, a layer that holds
one shared set as Keras weights (the 2-D density fits, `tfp.vi` surrogates).
Either way the parameters of step `k` are the vector `params[..., k, :]`:

```none
planar:  [u (D), w (D), b (1)]                       size 2 D + 1
radial:  [z0 (D), raw_alpha (1), raw_beta (1)]       size D + 2
```

with `alpha, beta = radial_params_from_unconstrained(raw_alpha, raw_beta)`,
so every real vector gives an invertible step.
"""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import Planar, Radial
from tfp_flows.bijectors.planar import planar_constrained_params, planar_step
from tfp_flows.bijectors.radial import (radial_params_from_unconstrained,
                                        radial_step)

tfb = tfp.bijectors

__all__ = ["FLOW_TYPES", "flow_param_size", "near_identity_flow_params",
           "flow_bijectors", "flow_forward_and_log_det",
           "forward_and_log_det", "FlowParameters"]

FLOW_TYPES = ("planar", "radial")


def _check_flow(flow):
  if flow not in FLOW_TYPES:
    raise ValueError(f"flow must be one of {FLOW_TYPES}; got {flow!r}.")


def flow_param_size(flow, dim):
  """Number of reals parametrizing one `flow` step on `R^dim`."""
  _check_flow(flow)
  return 2 * dim + 1 if flow == "planar" else dim + 2


def near_identity_flow_params(flow, num_flows, dim, scale=0.1, seed=0):
  """Parameters `[K, P]` of `K` steps near the identity, each with log-det
  0 (up to rounding) everywhere.

  Radial: `raw_alpha = raw_beta = 0`, so `alpha = log 2` and `beta = 0`: the
  identity; `z0 ~ N(0, I)`. Planar: the paper's `u_hat` keeps `w^T u_hat =
  m(w^T u) = -1 + softplus(w^T u)`, which is -0.31 at `w^T u = 0`: small
  random `u, w` would make every step a contraction along `w` (log-det
  about -0.37 where `tanh` is linear). Here `w ~ N(0, scale^2 I)`, `b = 0`
  and `u = log(e - 1) w / ||w||^2 + v` with `v ~ N(0, scale^2 I)` projected
  orthogonal to `w`: then `m(w^T u) = 0` and `u_hat = v`, a shear
  `z + v tanh(w^T z)` (volume-preserving) that moves `z` by less than
  `||v|| ~ scale sqrt(D)`. Not `u = w = 0`: every gradient of a planar step
  vanishes there.
  """
  size = flow_param_size(flow, dim)
  noise = keras.random.normal([num_flows, size], seed=seed)
  if flow == "radial":
    return tf.concat([noise[:, :dim], tf.zeros([num_flows, 2])], axis=-1)
  w = scale * noise[:, dim:2 * dim]
  w_norm_sq = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
  v = scale * noise[:, :dim]
  v -= tf.reduce_sum(v * w, axis=-1, keepdims=True) / w_norm_sq * w
  u = math.log(math.e - 1.) * w / w_norm_sq + v
  return tf.concat([u, w, tf.zeros([num_flows, 1])], axis=-1)


def _checked_params(flow, params, dim):
  _check_flow(flow)
  params = tf.convert_to_tensor(params)
  expected = flow_param_size(flow, dim)
  if params.shape.rank is not None and (
      params.shape.rank < 2 or params.shape[-1] not in (None, expected)):
    raise ValueError(
        f"{flow} flow parameters must have shape [..., K, {expected}] for "
        f"D = {dim}; got {params.shape}.")
  return params


def flow_bijectors(flow, params, dim):
  """The `K` bijectors of `params` `[..., K, P]`, in the order applied.

  Batch dimensions `...` of `params` become batch dimensions of each
  bijector, so an encoder's `[N, K, P]` output gives one flow per example.
  """
  params = _checked_params(flow, params, dim)
  bijectors = []
  for k in range(params.shape[-2]):
    step = params[..., k, :]
    if flow == "planar":
      bijectors.append(Planar(u=step[..., :dim], w=step[..., dim:2 * dim],
                              b=step[..., 2 * dim], name=f"planar_{k}"))
    else:
      alpha, beta = radial_params_from_unconstrained(step[..., dim],
                                                     step[..., dim + 1])
      bijectors.append(Radial(z0=step[..., :dim], alpha=alpha, beta=beta,
                              name=f"radial_{k}"))
  return bijectors


def flow_forward_and_log_det(flow, params, dim, z):
  """`z_K` and `sum_k log|det df_k/dz_{k-1}|` of the `K` steps of `params`
  `[..., K, P]` applied to `z` `[..., D]`: the values (and gradients) of
  `forward_and_log_det(flow_bijectors(flow, params, dim), z)`, faster.

  Training is dominated by these `K` small steps, each a handful of
  elementwise ops on `[N, D]` tensors, so their cost is the number of ops.
  Here the parameters of all steps are constrained at once on `[..., K, P]`
  and each step computes `w^T z + b` (planar) or `||z - z0||` (radial) once
  for both its output and its log-det, with the bijectors' own formulas
  (`planar_step`, `radial_step`). The chain of bijectors repeats the
  constraints per step and per method.
  """
  params = _checked_params(flow, params, dim)
  z = tf.convert_to_tensor(z)
  log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
  if flow == "planar":
    u_hat, w, b, log_one_plus_c = planar_constrained_params(
        params[..., :dim], params[..., dim:2 * dim], params[..., 2 * dim])
    for k in range(params.shape[-2]):
      z, step_log_det = planar_step(z, u_hat[..., k, :], w[..., k, :],
                                    b[..., k], log_one_plus_c[..., k])
      log_det += step_log_det
  else:
    alpha, beta = radial_params_from_unconstrained(params[..., dim],
                                                   params[..., dim + 1])
    alpha_plus_beta = alpha + beta
    for k in range(params.shape[-2]):
      z, step_log_det = radial_step(z, params[..., k, :dim], alpha[..., k],
                                    alpha_plus_beta[..., k])
      log_det += step_log_det
  return z, log_det


def forward_and_log_det(bijectors, z):
  """`z_K = f_K(...f_1(z))` and `sum_k log|det df_k/dz_{k-1}|`, one pass.

  What a `TransformedDistribution` of `tfb.Chain` computes by
  `experimental_sample_and_log_prob`, written out so each step's input is
  at hand for its log-det without relying on TFP's cache.
  """
  log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
  for bijector in bijectors:
    log_det += bijector.forward_log_det_jacobian(z, event_ndims=1)
    z = bijector.forward(z)
  return z, log_det


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowParameters(keras.layers.Layer):
  """Keras weights `[K, P]` for `K` planar or radial steps on `R^dim`.

  `bijectors()` builds the steps from the weights' current values, so Keras
  tracks, saves and distributes them (a bijector holding a `tf.Variable`
  would hide it from a Keras 3 model).

  Initialization keeps each step near the identity: planar `u, w ~ N(0,
  0.1^2)`, `b = 0`; radial `z0 ~ N(0, 1)`, `alpha = softplus(0)`,
  `beta = 0` (`raw_beta = raw_alpha = 0`).
  """

  def __init__(self, flow, num_flows, dim, seed=0, **kwargs):
    super().__init__(**kwargs)
    _check_flow(flow)
    if num_flows < 1 or dim < 1:
      raise ValueError(f"FlowParameters: num_flows and dim must be >= 1; got "
                       f"{num_flows} and {dim}.")
    self.flow, self.num_flows, self.dim, self.seed = flow, num_flows, dim, seed
    size = flow_param_size(flow, dim)
    # Random u, w (planar) or z0 (radial); zero b, raw_alpha, raw_beta.
    num_random, scale = (2 * dim, 0.1) if flow == "planar" else (dim, 1.)
    mask = tf.concat([tf.ones([num_random]), tf.zeros([size - num_random])], 0)
    initial = scale * keras.random.normal([num_flows, size], seed=seed) * mask
    self.params = self.add_weight(
        shape=(num_flows, size), name="params",
        initializer=keras.initializers.Constant(initial))

  def get_config(self):
    return {**super().get_config(), "flow": self.flow,
            "num_flows": self.num_flows, "dim": self.dim, "seed": self.seed}

  def bijectors(self):
    return flow_bijectors(self.flow, self.params.value, self.dim)

  def call(self, z):
    return flow_forward_and_log_det(self.flow, self.params.value, self.dim, z)
