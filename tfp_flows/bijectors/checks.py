"""Input and parameter checks shared by `Planar` and `Radial`.

Static checks (dtypes, shapes) run in Python when a flow is built or a graph
traced, so they cost nothing per step; `assert_finite` is only used under
`validate_args`, as TFP's run-time parameter checks are.
"""

import numpy as np
import tensorflow as tf

# TFP internals (variables kept as references, TFP's dtype rules) come
# through tfp_flows._internal, the one module that names private APIs.
from tfp_flows import _internal

__all__ = ["CheckedInputs", "assert_finite", "channel_assertions",
           "check_float_params", "check_input_dtype", "check_input_shape",
           "eps", "norm", "static_batch_shape"]


class CheckedInputs:
  """Checks the dtype of a `Tensor` passed to the four public methods before
  TFP converts it (TFP's own message names neither the flow nor the
  remedy). Shape checks live in each flow's `_check_input`, called from its
  `_forward`-style methods, so they also serve `tfb.Chain` and
  `TransformedDistribution`, which reach those through TFP's wrappers."""

  def forward(self, x, name="forward", **kwargs):
    check_input_dtype(self, x, "x", "forward")
    return super().forward(x, name=name, **kwargs)

  def inverse(self, y, name="inverse", **kwargs):
    check_input_dtype(self, y, "y", "inverse")
    return super().inverse(y, name=name, **kwargs)

  def forward_log_det_jacobian(self, x, event_ndims=None,
                               name="forward_log_det_jacobian", **kwargs):
    check_input_dtype(self, x, "x", "forward_log_det_jacobian")
    return super().forward_log_det_jacobian(x, event_ndims, name=name,
                                            **kwargs)

  def inverse_log_det_jacobian(self, y, event_ndims=None,
                               name="inverse_log_det_jacobian", **kwargs):
    check_input_dtype(self, y, "y", "inverse_log_det_jacobian")
    return super().inverse_log_det_jacobian(y, event_ndims, name=name,
                                            **kwargs)


def check_float_params(flow_name, dtype, **params):
  """TypeError unless the parameters' common dtype is floating point."""
  if dtype is None or not tf.as_dtype(dtype).is_floating:
    found = ", ".join(f"{name}: {_dtype_name(p)}" for name, p in params.items())
    raise TypeError(
        f"{flow_name}: parameters must be floating point (float32 or "
        f"float64); got {found}. Pass float values, e.g. "
        f"tf.cast(param, tf.float32).")


def _dtype_name(value):
  dtype = getattr(value, "dtype", None)
  if dtype is None:
    return type(value).__name__
  try:
    return tf.as_dtype(dtype).name
  except TypeError:
    return str(dtype)


def static_batch_shape(flow_name, **shapes):
  """The broadcast of the parameters' static batch shapes; ValueError
  naming them when they do not broadcast."""
  batch_shape = tf.TensorShape([])
  for shape in shapes.values():
    try:
      batch_shape = tf.broadcast_static_shape(batch_shape, tf.TensorShape(shape))
    except ValueError:
      described = ", ".join(f"{name} {tf.TensorShape(s)}"
                            for name, s in shapes.items())
      raise ValueError(
          f"{flow_name}: the parameters' batch shapes do not broadcast: "
          f"{described}.") from None
  return batch_shape


def check_input_dtype(bijector, x, arg_name, method):
  """TypeError when a `Tensor` input's dtype is not the flow's.

  Python and NumPy values are left to TFP, which converts them to the
  flow's dtype as it does for every bijector.
  """
  if not (tf.is_tensor(x) or isinstance(x, tf.Variable)):
    return
  if x.dtype != bijector.dtype:
    flow_name = type(bijector).__name__
    alternative = (f" or build the flow in {x.dtype.name}"
                   if x.dtype.is_floating else "")
    raise TypeError(
        f"{flow_name}.{method}: `{arg_name}` has dtype {x.dtype.name} but the "
        f"flow's parameters are {bijector.dtype.name}; cast it with "
        f"tf.cast({arg_name}, tf.{bijector.dtype.name}){alternative}.")


def check_input_shape(flow_name, x, arg_name, event_size, batch_shape,
                      check_event_size=True):
  """ValueError unless `x` has rank >= 1, last dimension `D` and a batch
  shape that broadcasts with `batch_shape`; `event_size` is
  `(parameter name, parameter shape)`, whose last dimension is `D`."""
  param_name, param_shape = event_size
  if x.shape.rank is None:
    return
  if x.shape.rank == 0:
    raise ValueError(
        f"{flow_name}: `{arg_name}` must have shape [..., D] with D = "
        f"{param_shape[-1]} (the size of `{param_name}`); got a scalar.")
  x_size = tf.compat.dimension_value(x.shape[-1])
  d = tf.compat.dimension_value(param_shape[-1])
  if check_event_size and x_size is not None and d is not None and x_size != d:
    raise ValueError(
        f"{flow_name}: `{arg_name}` has event size {x_size} (shape "
        f"{x.shape}) but `{param_name}` has size {d}.")
  try:
    tf.broadcast_static_shape(x.shape[:-1], batch_shape)
  except ValueError:
    raise ValueError(
        f"{flow_name}: `{arg_name}` has batch shape {x.shape[:-1]} (shape "
        f"{x.shape}), which does not broadcast with the parameters' batch "
        f"shape {batch_shape}.") from None


def channel_assertions(flow_name, x, arg_name, channels, params, mismatch,
                       param, validate_args):
  """Checks that `x` is `[..., C]` with the parameters' `C` channels, for
  bijectors of images (ActNorm, the 1x1 convolution).

  ValueError for a scalar `x` or a static channel count other than
  `channels`; `params` names the parameters that fix `C` (e.g. "`shift` and
  `log_scale`") and `mismatch` ends the error (e.g. "`lower_upper` is 4 x
  4"). Returns, under `validate_args`, the assertion that `x` has as many
  channels as the last axis of the parameter `param` (for counts known only
  at run time); else `[]`.
  """
  if x.shape.rank == 0:
    raise ValueError(
        f"{flow_name}: `{arg_name}` must have shape [..., C] with C = "
        f"{channels} channels (the size of {params}); got a scalar.")
  if x.shape.rank is not None:
    x_channels = tf.compat.dimension_value(x.shape[-1])
    if (x_channels is not None and channels is not None
        and x_channels != channels):
      raise ValueError(
          f"{flow_name}: `{arg_name}` has a channel (last) axis of size "
          f"{x_channels} (shape {x.shape}) but {mismatch}.")
  if not validate_args:
    return []
  return [tf.debugging.assert_equal(
      tf.shape(x)[-1], tf.shape(param)[-1],
      message=f"{flow_name}: the last (channel) axis of `{arg_name}` must "
              f"have the size C of {params}.")]


def assert_finite(flow_name, param_name, param):
  """An assertion that a parameter holds no NaN or inf (under
  `validate_args`): a ValueError at once for a constant, an
  InvalidArgumentError at use for a variable (as TFP's other run-time
  parameter checks, e.g. Radial's `alpha > 0`)."""
  message = f"{flow_name}: `{param_name}` must be finite (no NaN or inf)."
  if not _internal.is_ref(param):
    return _internal.assert_finite(param, message)
  return tf.debugging.assert_equal(
      tf.reduce_all(tf.math.is_finite(param)), True, message=message)


def eps(dtype):
  """Machine epsilon of a floating dtype (TensorFlow or NumPy)."""
  return np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps


def norm(x):
  """Euclidean norm over the last axis, scaled by `max |x_i|` so that
  neither it nor its gradient over- or underflows in between. 0 at 0, with
  a zero (not NaN) gradient there."""
  scale = tf.reduce_max(tf.abs(x), axis=-1, keepdims=True)
  positive = scale > 0.
  safe_scale = tf.where(positive, scale, 1.)
  sum_sq = tf.reduce_sum(tf.square(x / safe_scale), axis=-1)
  positive = positive[..., 0]
  return tf.where(positive,
                  safe_scale[..., 0] * tf.sqrt(tf.where(positive, sum_sq, 1.)),
                  0.)
