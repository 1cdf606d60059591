"""Glow's invertible 1x1 convolution: TFP's ScaleMatvecLU, one matmul a pass."""

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(tfb.ScaleMatvecLU):
  r"""`y = W x` at every pixel, `W = P L U` given in packed LU form.

  Kingma & Dhariwal (2018), Sec. 3.2: applied to `[..., H, W, C]` images with
  `event_ndims=3`, `log|det J| = H W sum(log|diag(U)|)`. Parameters,
  validation and log-det are TFP's `ScaleMatvecLU`; only the products
  differ. `ScaleMatvecLU` calls `tf.linalg.matvec(W, x)`, which for images
  runs one tiny `C x C` product per pixel and, in the gradient, materializes
  a `[N, H, W, C, C]` tensor; here all pixels go through one
  `[N H W, C] x [C, C]` matmul (about 7x faster on a `[64, 14, 14, 4]` batch
  with its gradient: `benchmarks/bench_conv1x1.py`).

  Args:
    lower_upper: `[C, C]` packed LU factors, as from `tf.linalg.lu`.
    permutation: `[C]` permutation indices, as from `tf.linalg.lu`.
  """

  def __init__(self, lower_upper, permutation, validate_args=False,
               name="invertible_conv1x1"):
    super().__init__(lower_upper, permutation, validate_args=validate_args,
                     name=name)

  @staticmethod
  def _apply_to_channels(matrix, x):
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
    return tf.reshape(tf.matmul(flat, matrix, transpose_b=True), tf.shape(x))

  def _forward(self, x):
    weights = tfp.math.lu_reconstruct(
        tf.convert_to_tensor(self.lower_upper), self.permutation,
        validate_args=self.validate_args)
    return self._apply_to_channels(weights, x)

  def _inverse(self, y):
    inverse_weights = tfp.math.lu_matrix_inverse(
        tf.convert_to_tensor(self.lower_upper), self.permutation,
        validate_args=self.validate_args)
    return self._apply_to_channels(inverse_weights, y)
