"""Glow's invertible 1x1 convolution: TFP's ScaleMatvecLU, one matmul a pass."""

import tensorflow as tf
import tensorflow_probability as tfp

# TFP internals (variables kept as references) come through
# tfp_flows._internal, the one module that names private APIs.
from tfp_flows import _internal

from tfp_flows.bijectors.checks import (CheckedInputs, channel_assertions,
                                        check_float_params)

tfb = tfp.bijectors

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(CheckedInputs, tfb.ScaleMatvecLU):
  r"""`y = W x` at every pixel, `W = P L U` given in packed LU form.

  Kingma & Dhariwal (2018), Sec. 3.2: applied to `[..., H, W, C]` images with
  `event_ndims=3`, `log|det J| = H W sum(log|diag(U)|)`. Parameters,
  validation and log-det are TFP's `ScaleMatvecLU`; only the products
  differ. `ScaleMatvecLU` calls `tf.linalg.matvec(W, x)`, which for images
  runs one tiny `C x C` product per pixel and, in the gradient, materializes
  a `[N, H, W, C, C]` tensor; here all pixels go through one
  `[N H W, C] x [C, C]` matmul (about 7x faster on a `[64, 14, 14, 4]` batch
  with its gradient: `benchmarks/bench_conv1x1.py`). That one matmul is also
  why `W` has no batch shape (one `[C, C]` matrix, as in Glow).

  Bad input fails fast, statically (no run-time cost), with a `TypeError` or
  `ValueError` naming the argument, the expected and the received:
  `lower_upper` must be a floating-point `[C, C]` matrix and `permutation`
  `[C]` integer indices; an input must be a `Tensor` of the bijector's dtype
  (or a Python/NumPy value convertible to it) with `C` channels on its last
  axis. (Unchecked, a non-square `lower_upper` or an input of the wrong
  channel count still got a log-det: ScaleMatvecLU's reads only the
  diagonal.) With
  `validate_args=True`, TFP's checks of the values (a nonzero diagonal, a
  valid permutation) apply, and a channel count known only at run time is
  checked when the bijector is used.

  Args:
    lower_upper: `[C, C]` packed LU factors, as from `tf.linalg.lu`.
    permutation: `[C]` permutation indices, as from `tf.linalg.lu`.

  Raises:
    TypeError: if `lower_upper` is not floating point or `permutation` not
      integer.
    ValueError: if `lower_upper` is not a square matrix or `permutation` not
      a vector of its size.
  """

  def __init__(self, lower_upper, permutation, validate_args=False,
               name="invertible_conv1x1"):
    # Converted here, so the checks run before ScaleMatvecLU's own
    # `validate_args` assertions (whose messages name no shapes), and in the
    # dtype of the values: ScaleMatvecLU's `dtype_hint=tf.float32` turned a
    # float64 NumPy `lower_upper` into a float32 bijector.
    if not _internal.is_ref(lower_upper):
      lower_upper = tf.convert_to_tensor(
          lower_upper, dtype=_internal.common_dtype([lower_upper], tf.float32),
          name="lower_upper")
    if not _internal.is_ref(permutation):
      permutation = tf.convert_to_tensor(permutation, dtype_hint=tf.int32,
                                         name="permutation")
    check_float_params("InvertibleConv1x1", lower_upper.dtype,
                       lower_upper=lower_upper)
    if not permutation.dtype.is_integer:
      raise TypeError(
          f"InvertibleConv1x1: `permutation` must be int32 or int64 indices "
          f"(as from tf.linalg.lu); got {permutation.dtype.name}.")
    shape = lower_upper.shape
    channels = None
    if shape.rank is not None:
      if shape.rank != 2:
        raise ValueError(
            f"InvertibleConv1x1: `lower_upper` must have shape [C, C] (one "
            f"matrix, no batch shape); got shape {shape}.")
      rows, channels = (tf.compat.dimension_value(d) for d in shape)
      if rows is not None and channels is not None and rows != channels:
        raise ValueError(
            f"InvertibleConv1x1: `lower_upper` must be square, [C, C]; got "
            f"shape {shape}.")
      channels = channels if channels is not None else rows
    if permutation.shape.rank is not None and not (
        permutation.shape.rank == 1 and permutation.shape.is_compatible_with(
            [channels])):
      raise ValueError(
          f"InvertibleConv1x1: `permutation` must have shape [C] = "
          f"[{channels if channels is not None else 'C'}] to match "
          f"`lower_upper` of shape {shape}; got shape {permutation.shape}.")
    super().__init__(lower_upper, permutation, validate_args=validate_args,
                     name=name)

  def _channels(self):
    """The static size C of `lower_upper`, or None."""
    shape = self.lower_upper.shape
    return tf.compat.dimension_value(shape[-1]) if shape.rank else None

  def _input_assertions(self, x, arg_name):
    """ValueError unless `x` is `[..., C]` with the parameters' C; under
    `validate_args`, the assertion that checks a channel count known only at
    run time."""
    channels = self._channels()
    return channel_assertions(
        "InvertibleConv1x1", x, arg_name, channels, "`lower_upper`",
        f"`lower_upper` is {channels} x {channels}",
        self.lower_upper, self.validate_args)

  @staticmethod
  def _apply_to_channels(matrix, x):
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
    return tf.reshape(tf.matmul(flat, matrix, transpose_b=True), tf.shape(x))

  def _forward(self, x):
    with tf.control_dependencies(self._input_assertions(x, "x")):
      weights = tfp.math.lu_reconstruct(
          tf.convert_to_tensor(self.lower_upper), self.permutation,
          validate_args=self.validate_args)
      return self._apply_to_channels(weights, x)

  def _inverse(self, y):
    with tf.control_dependencies(self._input_assertions(y, "y")):
      inverse_weights = tfp.math.lu_matrix_inverse(
          tf.convert_to_tensor(self.lower_upper), self.permutation,
          validate_args=self.validate_args)
      return self._apply_to_channels(inverse_weights, y)

  def _forward_log_det_jacobian(self, x):
    with tf.control_dependencies(self._input_assertions(x, "x")):
      return super()._forward_log_det_jacobian(x)
