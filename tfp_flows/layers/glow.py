"""Glow's architecture and the Keras layers owning its weights: ActNorm,
invertible 1x1 convolution, affine or additive coupling, and the learned
priors at the splits and at the top.

Every layer here builds its bijector from its current weights with
`bijector(context=None)`; `context` is what a conditional part depends on
(the class labels `[N]` of a class-conditional Glow) and the other parts
ignore it, so the architecture walks all parts the same way.
"""

import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import validation
from tfp_flows.bijectors import (ActNorm, AffineCoupling, InvertibleConv1x1,
                                 SplitPrior, channels_first_flatten, squeeze)

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["ActNormLayer", "AffineCouplingLayer", "GaussianMixtureLayer",
           "GlowArchitecture", "GlowLevel", "InvertibleConv1x1Layer",
           "SplitPriorLayer", "TopPriorLayer"]


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

  def bijector(self, context=None):
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

  def bijector(self, context=None):
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

  Network: conv3x3(hidden)-ReLU-conv1x1(hidden)-ReLU-conv3x3(out), the
  hidden convolutions initialized by `hidden_initializer`, the last one
  zero-initialized so the coupling starts at a fixed scale `sigmoid(2)`
  (affine) or the identity (additive), with zero shift. `out` is
  `2 * (C // 2)` (shift and raw scale), or `C // 2` (the shift) with
  `additive=True`. The network computes in the layer's compute dtype (16
  bits under a `mixed_*` policy); its output is cast to the variables'
  dtype, in which the coupling's scale, shift and log-det are computed.

  With `num_classes`, the network also sees the class label: a learned,
  zero-initialized vector per class `[hidden]` is added to the first hidden
  layer's output (a per-class bias of the second layer), so the coupling is
  `p(x | y)`'s and `bijector(labels)` has batch shape `[N]`.
  """

  def __init__(self, hidden_channels=64, additive=False,
               hidden_initializer="glorot_uniform", num_classes=None,
               **kwargs):
    super().__init__(**kwargs)
    self.hidden_channels = hidden_channels
    self.additive = bool(additive)
    self.hidden_initializer = hidden_initializer
    self.num_classes = num_classes

  def build(self, input_shape):
    channels = int(input_shape[-1])
    conditioner_shape = tuple(input_shape[:-1]) + (channels - channels // 2,)
    conv = functools.partial(keras.layers.Conv2D, dtype=self.dtype_policy)
    hidden = functools.partial(
        conv, activation="relu",
        kernel_initializer=keras.initializers.get(self.hidden_initializer))
    self.network = keras.Sequential([
        hidden(self.hidden_channels, 3, padding="same"),
        hidden(self.hidden_channels, 1),
        conv((1 if self.additive else 2) * (channels // 2), 3, padding="same",
             kernel_initializer="zeros", bias_initializer="zeros"),
    ], name="network")
    self.network.build(conditioner_shape)
    if self.num_classes:
      self.class_embedding = self.add_weight(
          shape=(self.num_classes, self.hidden_channels), initializer="zeros",
          name="class_embedding")

  def get_config(self):
    return {**super().get_config(), "hidden_channels": self.hidden_channels,
            "additive": self.additive,
            "hidden_initializer": self.hidden_initializer,
            "num_classes": self.num_classes}

  def bijector(self, context=None):
    if not self.num_classes:
      return AffineCoupling(self._shift_and_log_scale, additive=self.additive)
    embedding = _class_rows(self.class_embedding, context, self)
    return AffineCoupling(
        functools.partial(self._shift_and_log_scale, embedding=embedding),
        additive=self.additive)

  def _shift_and_log_scale(self, x_a, embedding=None):
    first, pointwise, last = self.network.layers
    hidden = first(x_a)
    if embedding is not None:
      hidden += tf.cast(embedding[:, None, None, :], self.compute_dtype)
    hidden = _pointwise_conv_as_matmul(pointwise, hidden)
    return tf.cast(_conv_as_matmuls(last, hidden), self.variable_dtype)


def _pointwise_conv_as_matmul(layer, inputs):
  """`layer(inputs)` for a 1x1, stride-1, channels-last `Conv2D`, computed
  as a matrix product over the channels: the same weights, values and
  gradients (and the same layer, so saved files do not change).

  Why not call the layer: TF 2.21's oneDNN filter gradient of this
  convolution took 3.5x its forward's time at GlowModel's defaults (batch 64), a matmul's gradients about the forward's; the
  training step at GlowModel's defaults ran 1.06x faster (docs/RESULTS.md,
  "Training speed at the Glow defaults")."""
  # The scope names these ops in profiles (benchmarks/profile_step.py).
  with tf.name_scope("pointwise_conv"):
    kernel = tf.cast(layer.kernel.value, layer.compute_dtype)
    outputs = tf.tensordot(inputs, kernel[0, 0], axes=1)
    if layer.use_bias:
      outputs = tf.nn.bias_add(outputs,
                               tf.cast(layer.bias.value, layer.compute_dtype))
    return layer.activation(outputs)


def _conv_as_matmuls(layer, inputs):
  """`layer(inputs)` for an odd-sized, stride-1, "same"-padded,
  channels-last `Conv2D` with few output channels, computed forward and
  backward as matrix products (`_conv_same_as_matmuls`): the same weights,
  values and gradients (up to rounding), and the same layer, so saved files
  do not change.

  Why: the couplings' last convolution maps many channels to few (64 -> 4
  at Glow's first level), a shape whose oneDNN gradient kernels TF 2.21
  runs slowly on AVX2 machines: at 14 x 14, batch 64, 64 -> 4, forward and
  both gradients took 16.8 ms through TensorFlow's kernels and 3.6 ms as
  matrix products (`benchmarks/bench_conv_gradients.py`); there the plain
  benchmark's training step ran 1.45x faster with the gradients as forward
  convolutions and 1.12x faster again as matrix products (docs/RESULTS.md,
  "Training speed on an AVX2 machine"). The couplings' first convolutions
  (few channels to many) keep TensorFlow's kernels, which are fast there.
  """
  kernel = tf.cast(layer.kernel.value, layer.compute_dtype)
  # The formulas hold for these layers only; others keep Keras' call.
  if (layer.strides != (1, 1) or layer.dilation_rate != (1, 1)
      or layer.padding != "same" or layer.data_format != "channels_last"
      or layer.groups != 1 or any(k % 2 == 0 for k in kernel.shape[:2])):
    return layer(inputs)
  # The scope names these ops in profiles (benchmarks/profile_step.py).
  with tf.name_scope("conv_as_matmuls"):
    outputs = _conv_same_as_matmuls(inputs, kernel)
    if layer.use_bias:
      outputs = tf.nn.bias_add(outputs,
                               tf.cast(layer.bias.value, layer.compute_dtype))
    return layer.activation(outputs)


@tf.custom_gradient
def _conv_same_as_matmuls(inputs, kernel):
  """`tf.nn.conv2d(inputs, kernel, 1, "SAME")` for an odd-sized kernel
  `[kh, kw, Cin, Cout]` with few output channels, forward and both
  gradients as one matrix product each over the `Cin` channels, with the
  `kh kw` shifts and the zero border applied only to few-channel tensors
  (`(ph, pw)` the half sizes, `W_ab = kernel[a, b]`):

  ```none
  y[i, j]  = sum_(a, b) pad(x W_ab)[i + a, j + b]      (z = x W[Cin, (a, b, Cout)])
  S_ab[i, j] = pad(dy)[i + 2 ph - a, j + 2 pw - b]     (dy shifted, zero-filled)
  dx = S W^T[(a, b, Cout), Cin],   dW = x^T S          (S = [S_ab]_(a, b))
  ```

  The backward keeps only `inputs` (which the ReLU before this convolution
  keeps anyway) and builds `S`, `kh kw Cout` channels, once for both
  gradients. An earlier version padded the `Cin`-channel input and kept
  that copy for the filter gradient: about 115 MB more peak memory at
  GlowModel's defaults (docs/RESULTS.md).
  """
  kh, kw, in_channels, out_channels = kernel.shape
  ph, pw = (kh - 1) // 2, (kw - 1) // 2
  height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
  shifts = [(a, b) for a in range(kh) for b in range(kw)]
  z = tf.pad(tf.tensordot(inputs, tf.reshape(
      tf.transpose(kernel, [2, 0, 1, 3]),
      [in_channels, kh * kw * out_channels]), axes=1),
             [[0, 0], [ph, ph], [pw, pw], [0, 0]])
  outputs = tf.add_n([
      z[:, a:a + height, b:b + width,
        (a * kw + b) * out_channels:(a * kw + b + 1) * out_channels]
      for a, b in shifts])

  def gradient(output_gradient):
    padded_gradient = tf.pad(output_gradient,
                             [[0, 0], [ph, ph], [pw, pw], [0, 0]])
    shifted = tf.concat([
        padded_gradient[:, 2 * ph - a:2 * ph - a + height,
                        2 * pw - b:2 * pw - b + width, :]
        for a, b in shifts], axis=-1)
    input_gradient = tf.tensordot(shifted, tf.reshape(
        tf.transpose(kernel, [0, 1, 3, 2]),
        [kh * kw * out_channels, in_channels]), axes=1)
    kernel_gradient = tf.matmul(
        tf.reshape(inputs, [-1, in_channels]),
        tf.reshape(shifted, [-1, kh * kw * out_channels]), transpose_a=True)
    kernel_gradient = tf.transpose(tf.reshape(
        kernel_gradient, [in_channels, kh, kw, out_channels]), [1, 2, 0, 3])
    return input_gradient, kernel_gradient

  return outputs, gradient


class SplitPriorLayer(keras.layers.Layer):
  """Owns the learned prior of the channels that leave at a split; builds
  `SplitPrior`: `N(mean, exp(log_std)^2)` of the exiting `C // 2`
  channels from a zero-initialized 3x3 convolution of the `C - C // 2`
  that stay (openai/glow's `split2d_prior`), so it starts as the standard
  normal. Computes in the compute dtype, cast to the variables' dtype as
  the couplings are.

  With `num_classes`, a zero-initialized per-class offset `[H, W, 2 *
  (C // 2)]` of the mean and log standard deviation (as `TopPriorLayer`'s):
  the prior is `p(x_exit | x_kept, y)`.
  """

  def __init__(self, num_classes=None, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes

  def build(self, input_shape):
    height, width, channels = (int(s) for s in input_shape[-3:])
    self.network = keras.layers.Conv2D(
        2 * (channels // 2), 3, padding="same", kernel_initializer="zeros",
        bias_initializer="zeros", dtype=self.dtype_policy, name="network")
    self.network.build(tuple(input_shape[:-1]) + (channels - channels // 2,))
    if self.num_classes:
      self.class_mean_and_log_std = self.add_weight(
          shape=(self.num_classes, height, width, 2 * (channels // 2)),
          initializer="zeros", name="class_mean_and_log_std")

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes}

  def bijector(self, context=None):
    if not self.num_classes:
      return SplitPrior(self._mean_and_log_std)
    offset = _class_rows(self.class_mean_and_log_std, context, self)
    return SplitPrior(functools.partial(self._mean_and_log_std,
                                        offset=offset))

  def _mean_and_log_std(self, kept, offset=None):
    output = tf.cast(self.network(kept), self.variable_dtype)
    return output if offset is None else output + offset


class TopPriorLayer(keras.layers.Layer):
  """Owns the learned prior of the last level's output `[H, W, C]`:
  `N(mean, exp(log_std)^2)` per dimension (openai/glow's `learntop`), and
  with `num_classes` a per-class offset of both (its `ycond`: the prior is
  `p(z | y)`), all zero-initialized (the standard normal).

  `bijector(labels)` is the affine map that standardizes the top latent,
  data-to-latent `y = (x - mean) * exp(-log_std)`, as TFP's `Shift` and
  `Scale`: with labels `[N]` its parameters are batch-shaped `[N, H, W, C]`.
  `classifier_logits(x)` are the logits of openai/glow's optional
  classification loss: a zero-initialized linear map of `x`'s mean over
  `H, W`.
  """

  def __init__(self, num_classes=None, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes

  def build(self, input_shape):
    height, width, channels = (int(s) for s in input_shape[-3:])
    self.mean_and_log_std = self.add_weight(
        shape=(height, width, 2 * channels), initializer="zeros",
        name="mean_and_log_std")
    if self.num_classes:
      self.class_mean_and_log_std = self.add_weight(
          shape=(self.num_classes, height, width, 2 * channels),
          initializer="zeros", name="class_mean_and_log_std")
      self.classifier_kernel = self.add_weight(
          shape=(channels, self.num_classes), initializer="zeros",
          name="classifier_kernel")
      self.classifier_bias = self.add_weight(
          shape=(self.num_classes,), initializer="zeros",
          name="classifier_bias")

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes}

  def _mean_and_log_std(self, labels):
    parameters = self.mean_and_log_std.value
    if self.num_classes:
      parameters = parameters + _class_rows(self.class_mean_and_log_std,
                                            labels, self)
    return tf.split(parameters, 2, axis=-1)

  def bijector(self, context=None):
    mean, log_std = self._mean_and_log_std(context)
    return tfb.Chain([tfb.Scale(log_scale=-log_std), tfb.Shift(-mean)],
                     name="top_prior")

  def classifier_logits(self, x):
    """Class logits `[N, num_classes]` from the top level's output `x`
    `[N, H, W, C]` (before the prior standardizes it)."""
    pooled = tf.reduce_mean(x, axis=[-3, -2])
    return tf.matmul(pooled, self.classifier_kernel.value) + (
        self.classifier_bias.value)


class GaussianMixtureLayer(keras.layers.Layer):
  """Owns a learned mixture of `num_components` diagonal Gaussians over
  vectors `[event_size]`; `distribution(dtype)` builds it as TFP's
  `tfd.MixtureSameFamily(tfd.Categorical, tfd.MultivariateNormalDiag)`.

  It is not a map, so it lives in the base distribution, not in the flow:
  `GlowModel(top_mixture_components=M)` makes it the base of the top
  level's (standardized) latent, a multimodal top prior learned from the
  images alone. Weights: mixture logits `[M]` (zeros: equal weights), means
  `[M, event_size]` (`N(0, 0.1^2)`, seeded, so the components start apart
  but near the standard normal) and log standard deviations `[M,
  event_size]` (zeros).

  `sample(n, temperature, seed)` draws a component per sample, then its
  mean plus `temperature` times its standard deviation times `N(0, I)`:
  the temperature narrows each component, not the spread of the means,
  so `temperature = 0` gives the component means.
  """

  def __init__(self, num_components, event_size, seed=0, **kwargs):
    super().__init__(**kwargs)
    if validation.as_int_at_least(num_components, 1) is None:
      raise ValueError(f"GaussianMixtureLayer: num_components must be an "
                       f"int >= 1; got {num_components!r}.")
    self.num_components = int(num_components)
    self.event_size = int(event_size)
    self.seed = seed
    self.logits = self.add_weight(shape=(self.num_components,),
                                  initializer="zeros", name="logits")
    self.means = self.add_weight(
        shape=(self.num_components, self.event_size),
        initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
        name="means")
    self.log_stds = self.add_weight(
        shape=(self.num_components, self.event_size), initializer="zeros",
        name="log_stds")
    self.built = True

  def get_config(self):
    return {**super().get_config(), "num_components": self.num_components,
            "event_size": self.event_size, "seed": self.seed}

  def _parameters(self, dtype):
    return (tf.cast(self.logits.value, dtype),
            tf.cast(self.means.value, dtype),
            tf.cast(self.log_stds.value, dtype))

  def distribution(self, dtype="float32"):
    """The mixture, event shape `[event_size]`, in `dtype`."""
    logits, means, log_stds = self._parameters(dtype)
    return tfd.MixtureSameFamily(
        tfd.Categorical(logits=logits),
        tfd.MultivariateNormalDiag(means, tf.exp(log_stds)),
        name="gaussian_mixture")

  def sample(self, num_samples, temperature=1., seed=None, dtype="float32"):
    """`[num_samples, event_size]` draws at `temperature` (see the class
    docstring), from the stateless `seed` `[2]` if given."""
    logits, means, log_stds = self._parameters(dtype)
    if seed is None:
      components = tf.random.categorical(logits[None], num_samples)[0]
      noise = tf.random.normal([num_samples, self.event_size], dtype=dtype)
    else:
      seeds = tf.random.experimental.stateless_split(seed, 2)
      components = tf.random.stateless_categorical(
          logits[None], num_samples, seed=seeds[0])[0]
      noise = tf.random.stateless_normal([num_samples, self.event_size],
                                         seed=seeds[1], dtype=dtype)
    return (tf.gather(means, components) + tf.cast(temperature, dtype)
            * tf.exp(tf.gather(log_stds, components)) * noise)


@dataclasses.dataclass(frozen=True)
class GlowLevel:
  """One level of Glow, data-to-latent: its input (the image at level 0,
  the kept part of the previous level's output after it), a squeeze, `K`
  steps of ActNorm, 1x1 convolution and coupling, the learned prior if any
  (`SplitPriorLayer` of the exiting channels given the kept ones;
  `TopPriorLayer` at the last level), and a channel-major flatten whose
  first `exit_size` entries (half of the squeezed channels; all at the last
  level) leave for the base distribution.

  Attributes:
    index: the level, from 0.
    input_shape: `(h, w, c)` of the level's input as an image.
    steps: `K` (ActNormLayer, InvertibleConv1x1Layer, AffineCouplingLayer).
    exit_size: entries of the level's flat output that exit here.
    prior: the learned prior's layer, or None (a standard normal).
  """
  index: int
  input_shape: tuple
  steps: tuple
  exit_size: int
  prior: keras.layers.Layer = None

  @property
  def output_shape(self):
    """`(h / 2, w / 2, 4 c)`: the squeezed shape the steps act on."""
    h, w, c = self.input_shape
    return h // 2, w // 2, 4 * c

  @property
  def output_size(self):
    return int(np.prod(self.output_shape))

  def parts(self):
    """The level's maps in data-to-latent order: bijectors, and the layers
    that build theirs (`layer.bijector()`) from their current weights."""
    h, w, c = self.input_shape
    parts = []
    if self.index > 0:  # the previous level's kept entries, as an image
      parts.append(tfb.Invert(channels_first_flatten(h, w, c)))
    parts.append(squeeze(h, w, c, name=f"squeeze_{self.index}"))
    for step in self.steps:
      parts.extend(step)
    if self.prior is not None:
      parts.append(self.prior)
    parts.append(channels_first_flatten(*self.output_shape))
    return parts


def steps_per_level_of(num_levels, num_steps):
  """`(K_0, ..., K_{L-1})` from one `K` or a sequence of `L` of them,
  each an int >= 1; a ValueError naming the bad value otherwise."""
  per_level = ((num_steps,) * num_levels
               if isinstance(num_steps, (int, np.integer)) else
               tuple(num_steps))
  if len(per_level) != num_levels or not all(
      validation.as_int_at_least(k, 1) is not None for k in per_level):
    raise ValueError(
        f"num_steps must be an int >= 1 or a sequence of num_levels = "
        f"{num_levels} of them; got {num_steps!r}.")
  return tuple(int(k) for k in per_level)


class GlowArchitecture:
  """Glow's multi-scale architecture, described once: the levels, their
  shapes, steps and exits, and the layers that own the weights.

  `data_to_latent(context=labels)` builds the bijector (images in
  `[-1/2, 1/2)` to latents `[D]`) from the current weights, and
  `walk(x, context)` goes through the same levels eagerly, map by map, for
  what needs the intermediate values (ActNorm's data-dependent
  initialization, tests). The layers are in `levels[l].steps` and
  `levels[l].prior`; the model that holds the architecture tracks them.

  Args:
    image_shape: `(H, W, C)`, `H` and `W` divisible by `2**num_levels`.
    num_levels, num_steps, hidden_channels: `L`, `K` and the coupling
      networks' width; `num_steps` is one `K` for every level or a sequence
      of `L` of them, first level first.
    seed: seeds the 1x1 convolutions' initial rotations.
    dtype: the layers' Keras dtype policy (default: the global one).
    additive_coupling: additive instead of affine couplings.
    hidden_initializer: the coupling networks' hidden kernels' initializer.
    learned_prior: a `SplitPriorLayer` at every split and a
      `TopPriorLayer` at the top; otherwise every latent is standard normal.
    num_classes: with `learned_prior`, a class-conditional top prior.
    conditional_flow: with `num_classes`, the labels also reach every
      coupling network and split prior, not only the top prior.
  """

  def __init__(self, image_shape, num_levels, num_steps, hidden_channels,
               seed=0, dtype=None, additive_coupling=False,
               hidden_initializer="glorot_uniform", learned_prior=False,
               num_classes=None, conditional_flow=False):
    if num_classes and not learned_prior:
      raise ValueError("GlowArchitecture: a class-conditional prior "
                       "(num_classes) needs learned_prior=True.")
    if conditional_flow and not num_classes:
      raise ValueError("GlowArchitecture: conditional_flow needs "
                       "num_classes.")
    flow_classes = num_classes if conditional_flow else None
    steps_per_level = steps_per_level_of(num_levels, num_steps)
    h, w, c = image_shape
    self.levels = []
    for index, level_steps in enumerate(steps_per_level):
      step_shape = (None, h // 2, w // 2, 4 * c)
      steps = []
      # Step k of level l has seed offset sum(K_0..K_{l-1}) + k: l * K + k
      # for one K, as files saved before per-level depths were written.
      first_step = sum(steps_per_level[:index])
      for k in range(level_steps):
        step = (ActNormLayer(name=f"actnorm_{index}_{k}", dtype=dtype),
                InvertibleConv1x1Layer(
                    seed=seed * 1000 + first_step + k,
                    name=f"conv1x1_{index}_{k}", dtype=dtype),
                AffineCouplingLayer(hidden_channels,
                                    additive=additive_coupling,
                                    hidden_initializer=hidden_initializer,
                                    num_classes=flow_classes,
                                    name=f"coupling_{index}_{k}",
                                    dtype=dtype))
        for layer in step:
          layer.build(step_shape)
        steps.append(step)
      last = index == num_levels - 1
      prior = None
      if learned_prior:
        prior = (TopPriorLayer(num_classes, name="top_prior", dtype=dtype)
                 if last else
                 SplitPriorLayer(flow_classes, name=f"split_prior_{index}",
                                 dtype=dtype))
        prior.build(step_shape)
      exit_channels = 4 * c if last else 2 * c
      self.levels.append(GlowLevel(index, (h, w, c), tuple(steps),
                                   exit_channels * (h // 2) * (w // 2),
                                   prior))
      h, w, c = h // 2, w // 2, 2 * c

  @property
  def top_prior(self):
    """The `TopPriorLayer`, or None."""
    return self.levels[-1].prior

  def data_to_latent(self, level=0, context=None):
    """The bijector from level `level`'s input to the latents of it and
    of the levels after it, built from the current weights (and the
    labels `context` of a class-conditional prior)."""
    this = self.levels[level]
    maps = [_as_bijector(part, context) for part in this.parts()]
    if level + 1 < len(self.levels):
      maps.append(tfb.Blockwise(
          [tfb.Identity(), self.data_to_latent(level + 1, context)],
          block_sizes=[this.exit_size, this.output_size - this.exit_size],
          name=f"split_{level}"))
    return tfb.Chain(maps[::-1], name=f"level_{level}")

  def walk(self, x, context=None):
    """Yields `(part, input)` for every part of every level, in the
    data-to-latent order of `data_to_latent`, from the first level's input
    `x` (the model's preprocessed images). Each part is applied after the
    caller has seen it, so the caller may first change a layer's weights
    (ActNorm's initialization does)."""
    for level in self.levels:
      for part in level.parts():
        yield part, x
        x = _as_bijector(part, context).forward(x)
      x = x[..., level.exit_size:]  # what `split_<level>` passes on

  def initialize_actnorm(self, x, context=None):
    """Sets every ActNorm so that its outputs on images `x` are zero-mean,
    unit-variance per channel (the paper's data-dependent initialization)."""
    for part, part_input in self.walk(x, context):
      if isinstance(part, ActNormLayer):
        part.initialize_from(part_input)


def _class_rows(per_class, labels, layer):
  """The rows `[N, ...]` of the per-class weight `[num_classes, ...]` for
  `labels` `[N]`, or an error if a class-conditional layer got none."""
  if labels is None:
    raise ValueError(
        f"{layer.name} is class-conditional (num_classes={layer.num_classes}):"
        f" pass the class labels [N].")
  return tf.gather(per_class.value, labels)


def _as_bijector(part, context=None):
  return (part.bijector(context) if isinstance(part, keras.layers.Layer)
          else part)
