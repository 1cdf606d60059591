"""Activation normalization (Kingma & Dhariwal 2018, Sec. 3.1)."""

import tensorflow as tf
import tensorflow_probability as tfp

# TFP internals (variables kept as references, TFP's dtype rules) come
# through tfp_flows._internal, the one module that names private APIs.
from tfp_flows import _internal

from tfp_flows.bijectors.checks import (CheckedInputs, _dtype_name,
                                        channel_assertions, check_float_params,
                                        static_batch_shape)

tfb = tfp.bijectors

__all__ = ["ActNorm"]


class ActNorm(CheckedInputs, tfb.AutoCompositeTensorBijector):
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

  Bad input fails fast, statically (no run-time cost), with a `TypeError` or
  `ValueError` naming the argument, the expected and the received: `shift`
  and `log_scale` must be floating point of one dtype, of rank >= 1 and of
  the same size `C`; an input must be a `Tensor` of the bijector's dtype (or
  a Python/NumPy value convertible to it) with `C` channels on its last axis.
  (Unchecked, a 1-channel input broadcast to a `C`-channel output, and the
  log-det of an input of any channel count came out as a number.) With
  `validate_args=True`, a channel count known only at run time is checked
  when the bijector is used.

  Args:
    shift: Float `Tensor` of shape `[C]`.
    log_scale: Float `Tensor` of shape `[C]`.

  Raises:
    TypeError: if `shift` and `log_scale` differ in dtype or are not floats.
    ValueError: if either is a scalar or their sizes `C` differ.
  """

  def __init__(self, shift, log_scale, validate_args=False, name="actnorm"):
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      try:
        dtype = _internal.common_dtype([shift, log_scale], tf.float32)
      except TypeError:
        raise TypeError(
            f"ActNorm: `shift` and `log_scale` must have the same dtype; got "
            f"shift: {_dtype_name(shift)}, log_scale: "
            f"{_dtype_name(log_scale)}.") from None
      check_float_params("ActNorm", dtype, shift=shift, log_scale=log_scale)
      self._shift = _internal.convert_nonref_to_tensor(
          shift, dtype=dtype, name="shift")
      self._log_scale = _internal.convert_nonref_to_tensor(
          log_scale, dtype=dtype, name="log_scale")
      for param_name, param in (("shift", self._shift),
                                ("log_scale", self._log_scale)):
        if param.shape.rank == 0:
          raise ValueError(
              f"ActNorm: `{param_name}` must have shape [C] (one value per "
              f"channel); got a scalar.")
      if not self._shift.shape[-1:].is_compatible_with(
          self._log_scale.shape[-1:]):
        raise ValueError(
            f"ActNorm: `shift` and `log_scale` must have the same size C "
            f"(one value per channel); got shift.shape={self._shift.shape} "
            f"and log_scale.shape={self._log_scale.shape}.")
      static_batch_shape("ActNorm", shift=self._shift.shape[:-1],
                         log_scale=self._log_scale.shape[:-1])
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

  def _channels(self):
    """The static size C of the parameters, or None."""
    return tf.compat.dimension_value(
        self._shift.shape[-1:].merge_with(self._log_scale.shape[-1:])[0])

  def _input_assertions(self, x, arg_name):
    """ValueError unless `x` is `[..., C]` with the parameters' C and a batch
    shape they broadcast with; under `validate_args`, the assertion that
    checks a channel count known only at run time."""
    channels = self._channels()
    assertions = channel_assertions(
        "ActNorm", x, arg_name, channels, "`shift` and `log_scale`",
        f"`shift` and `log_scale` have size {channels}",
        self.shift, self.validate_args)
    if x.shape.rank is not None:
      batch_shape = static_batch_shape(
          "ActNorm", shift=self._shift.shape[:-1],
          log_scale=self._log_scale.shape[:-1])
      try:
        tf.broadcast_static_shape(x.shape[:-1], batch_shape)
      except ValueError:
        raise ValueError(
            f"ActNorm: `{arg_name}` of shape {x.shape} does not broadcast "
            f"with the parameters' batch shape {batch_shape} (shift.shape="
            f"{self._shift.shape}, log_scale.shape={self._log_scale.shape})."
        ) from None
    return assertions

  def _forward(self, x):
    with tf.control_dependencies(self._input_assertions(x, "x")):
      return x * tf.exp(self.log_scale) + self.shift

  def _inverse(self, y):
    with tf.control_dependencies(self._input_assertions(y, "y")):
      return (y - self.shift) * tf.exp(-tf.convert_to_tensor(self.log_scale))

  def _forward_log_det_jacobian(self, x):
    with tf.control_dependencies(self._input_assertions(x, "x")):
      return tf.reduce_sum(self.log_scale, axis=-1)
