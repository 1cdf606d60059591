"""Keras layers owning Glow's weights: ActNorm, invertible 1x1 conv, coupling."""

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.bijectors import ActNorm, AffineCoupling, InvertibleConv1x1


__all__ = ["ActNormLayer", "InvertibleConv1x1Layer", "AffineCouplingLayer"]


class ActNormLayer(keras.layers.Layer):
  """Owns ActNorm's `shift` and `log_scale` `[C]`; builds `ActNorm`.

  `initialize_from(x)` sets them from a batch of this layer's inputs so the
  outputs are zero-mean, unit-variance per channel (the paper's data-dependent
  initialization). The model calls it once, on the first batch, in
  cross-replica context, so every replica gets the same statistics.
  """

  def build(self, input_shape):
    channels = input_shape[-1]
    self.shift = self.add_weight(shape=(channels,), initializer="zeros",
                                 name="shift")
    self.log_scale = self.add_weight(shape=(channels,), initializer="zeros",
                                     name="log_scale")

  def bijector(self):
    return ActNorm(self.shift.value, self.log_scale.value)

  def initialize_from(self, x):
    axes = list(range(len(x.shape) - 1))
    mean, variance = tf.nn.moments(x, axes=axes)
    log_scale = -0.5 * tf.math.log(variance + 1e-6)
    self.log_scale.assign(log_scale)
    self.shift.assign(-mean * tf.exp(log_scale))


class InvertibleConv1x1Layer(keras.layers.Layer):
  """Owns an invertible 1x1 convolution in LU form; builds
  `InvertibleConv1x1` (TFP's `ScaleMatvecLU` with a faster product).

  `W = P L U` with a fixed permutation `P`, unit-lower-triangular `L` and
  upper-triangular `U` whose diagonal is `sign * exp(log_abs_diag)`, so
  log|det W| = sum(log_abs_diag) and `W` stays invertible (Kingma & Dhariwal
  2018, Sec. 3.2). Initialized from a random rotation.
  """

  def __init__(self, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed

  def build(self, input_shape):
    channels = int(input_shape[-1])
    rng = np.random.default_rng(self.seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(channels, channels)))
    lower_upper, permutation = tf.linalg.lu(tf.constant(rotation, tf.float32))
    lower_upper = lower_upper.numpy()
    diagonal = np.diag(lower_upper)
    self.permutation = self.add_weight(
        shape=(channels,), dtype="int32", trainable=False, name="permutation",
        initializer=keras.initializers.Constant(permutation.numpy()))
    self.diagonal_sign = self.add_weight(
        shape=(channels,), trainable=False, name="diagonal_sign",
        initializer=keras.initializers.Constant(np.sign(diagonal)))
    self.log_abs_diagonal = self.add_weight(
        shape=(channels,), name="log_abs_diagonal",
        initializer=keras.initializers.Constant(np.log(np.abs(diagonal))))
    self.lower = self.add_weight(
        shape=(channels, channels), name="lower",
        initializer=keras.initializers.Constant(np.tril(lower_upper, -1)))
    self.upper = self.add_weight(
        shape=(channels, channels), name="upper",
        initializer=keras.initializers.Constant(np.triu(lower_upper, 1)))

  def get_config(self):
    return {**super().get_config(), "seed": self.seed}

  def bijector(self):
    # Only the strict triangles of `lower` and `upper` are used; the masks
    # keep the unused halves out of the map (their gradients are zero).
    lower_upper = (tf.linalg.band_part(self.lower.value, -1, 0)
                   - tf.linalg.band_part(self.lower.value, 0, 0)
                   + tf.linalg.band_part(self.upper.value, 0, -1)
                   - tf.linalg.band_part(self.upper.value, 0, 0)
                   + tf.linalg.diag(self.diagonal_sign.value
                                    * tf.exp(self.log_abs_diagonal.value)))
    return InvertibleConv1x1(lower_upper, self.permutation.value)


class AffineCouplingLayer(keras.layers.Layer):
  """Owns a coupling network; builds `AffineCoupling` around it.

  Network: conv3x3(hidden)-ReLU-conv1x1(hidden)-ReLU-conv3x3(2 * (C // 2)),
  the last convolution zero-initialized so the coupling starts at a fixed
  scale `sigmoid(2)` and zero shift.
  """

  def __init__(self, hidden_channels=64, **kwargs):
    super().__init__(**kwargs)
    self.hidden_channels = hidden_channels

  def build(self, input_shape):
    channels = int(input_shape[-1])
    conditioner_shape = tuple(input_shape[:-1]) + (channels - channels // 2,)
    self.network = keras.Sequential([
        keras.layers.Conv2D(self.hidden_channels, 3, padding="same",
                            activation="relu"),
        keras.layers.Conv2D(self.hidden_channels, 1, activation="relu"),
        keras.layers.Conv2D(2 * (channels // 2), 3, padding="same",
                            kernel_initializer="zeros",
                            bias_initializer="zeros"),
    ], name="network")
    self.network.build(conditioner_shape)

  def get_config(self):
    return {**super().get_config(), "hidden_channels": self.hidden_channels}

  def bijector(self):
    return AffineCoupling(self.network)
