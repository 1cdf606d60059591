"""Activation normalization (Kingma & Dhariwal 2018, Sec. 3.1)."""

import tensorflow as tf
import tensorflow_probability as tfp

# TFP internals (variables kept as references, TFP's dtype rules) come
# through tfp_flows._internal, the one module that names private APIs.
from tfp_flows import _internal

tfb = tfp.bijectors

__all__ = ["ActNorm"]


class ActNorm(tfb.AutoCompositeTensorBijector):
  r"""Per-channel affine map `y = x * exp(log_scale) + shift`.

  Glow's ActNorm, written in the data-to-latent direction of the paper. The
  parameters act on the last (channel) axis; every other event axis (height,
  width) shares them, so with `event_ndims=3` on `[..., H, W, C]` images:

  ```none
  forward:  y = x * exp(log_scale) + shift
  inverse:  x = (y - shift) * exp(-log_scale)
  log|det J| = H * W * sum(log_scale)
  ```

  TFP's `Scale`/`Shift` are scalar bijectors: their `[C]` parameters would be
  a batch shape, not an event shape, which is why this is its own bijector.
  Data-dependent initialization (`shift`, `log_scale` such that the first
  batch comes out zero-mean, unit-variance per channel) is done by the Keras
  layer that owns the weights (`tfp_flows.layers.ActNormLayer`), not here.

  Args:
    shift: Float `Tensor` of shape `[C]`.
    log_scale: Float `Tensor` of shape `[C]`.
  """

  def __init__(self, shift, log_scale, validate_args=False, name="actnorm"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      dtype = _internal.common_dtype([shift, log_scale], tf.float32)
      self._shift = _internal.convert_nonref_to_tensor(
          shift, dtype=dtype, name="shift")
      self._log_scale = _internal.convert_nonref_to_tensor(
          log_scale, dtype=dtype, name="log_scale")
      super().__init__(
          forward_min_event_ndims=1, is_constant_jacobian=True,
          validate_args=validate_args, parameters=parameters, dtype=dtype,
          name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict(shift=tfp.util.ParameterProperties(event_ndims=1),
                log_scale=tfp.util.ParameterProperties(event_ndims=1))

  @property
  def shift(self):
    return self._shift

  @property
  def log_scale(self):
    return self._log_scale

  def _forward(self, x):
    return x * tf.exp(self.log_scale) + self.shift

  def _inverse(self, y):
    return (y - self.shift) * tf.exp(-tf.convert_to_tensor(self.log_scale))

  def _forward_log_det_jacobian(self, x):
    return tf.reduce_sum(self.log_scale, axis=-1)
