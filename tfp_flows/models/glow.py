"""Glow (Kingma & Dhariwal 2018) as a Keras 3 model over a TFP bijector chain."""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import channels_first_flatten, squeeze
from tfp_flows.layers import (ActNormLayer, AffineCouplingLayer,
                              InvertibleConv1x1Layer)
from tfp_flows.models.common import (add_skipped_steps, check_values,
                                     checked_latents, global_batch_noise,
                                     images_of, metric_logs, minimize,
                                     prepare_fit, skip_symbolic_build,
                                     step_seed)

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["GlowModel"]

NUM_PIXEL_VALUES = 256


@keras.saving.register_keras_serializable(package="tfp_flows")
class GlowModel(keras.Model):
  """Multi-scale Glow on 8-bit images, trained by maximum likelihood.

  Data-to-latent, per level `l = 0..L-1` on images scaled to `[-1/2, 1/2)`:
  squeeze (2x2 space-to-depth), `K` steps of ActNorm, invertible 1x1
  convolution and affine coupling, then (except after the last level) half
  of the channels leave for the base distribution and the rest go on to the
  next level. Everything is a `tfb.Bijector`; `flow` chains them (latent to
  image, TFP's generative direction) and `distribution` is
  `tfd.TransformedDistribution(N(0, I_D), flow)` over images in `[0, 1)`.

  Likelihoods are of the 8-bit images: `log_prob(x) = log q((x + u) / 256)
  - D log 256` with uniform dequantization noise `u`, so bits/dim is
  `-log_prob / (D ln 2)` and, averaged over `u`, bounds the discrete NLL
  from above.

  Args:
    image_shape: `(H, W, C)`; `H` and `W` divisible by `2**num_levels`.
    num_levels: `L`, the number of squeeze levels.
    num_steps: `K`, steps of flow per level.
    hidden_channels: width of each coupling network.
    seed: seeds the 1x1 convolutions' initial rotations and the
      dequantization noise (in training a function of the step, so a resumed
      run and a run under a distribution strategy draw what an uninterrupted
      single-device run would).
  """

  def __init__(self, image_shape=(28, 28, 1), num_levels=2, num_steps=8,
               hidden_channels=64, seed=0, **kwargs):
    super().__init__(**kwargs)
    height, width, channels = (int(s) for s in image_shape)
    if num_levels < 1 or num_steps < 1 or hidden_channels < 1:
      raise ValueError(
          f"GlowModel: num_levels, num_steps and hidden_channels must be >= 1; "
          f"got {num_levels}, {num_steps}, {hidden_channels}.")
    if height % 2**num_levels or width % 2**num_levels:
      raise ValueError(
          f"GlowModel: image height and width must be divisible by "
          f"2**num_levels = {2**num_levels}; got image_shape={image_shape}.")
    self.image_shape = (height, width, channels)
    self.num_levels = num_levels
    self.num_steps = num_steps
    self.hidden_channels = hidden_channels
    self.seed = seed
    self.event_size = height * width * channels

    # Per level: the input shape, and how many squeezed channels exit there.
    self._level_shapes, self._exit_channels = [], []
    h, w, c = height, width, channels
    for level in range(num_levels):
      self._level_shapes.append((h, w, c))
      h, w, c = h // 2, w // 2, 4 * c
      exit_channels = c // 2 if level < num_levels - 1 else c
      self._exit_channels.append(exit_channels)
      c -= exit_channels if level < num_levels - 1 else 0

    # Flat lists (step k of level l at l * K + k): Keras tracks them.
    self.actnorms, self.convolutions, self.couplings = [], [], []
    for level, (h, w, c) in enumerate(self._level_shapes):
      step_shape = (None, h // 2, w // 2, 4 * c)
      for step in range(num_steps):
        actnorm = ActNormLayer(name=f"actnorm_{level}_{step}")
        convolution = InvertibleConv1x1Layer(
            seed=seed * 1000 + level * num_steps + step,
            name=f"conv1x1_{level}_{step}")
        coupling = AffineCouplingLayer(hidden_channels,
                                       name=f"coupling_{level}_{step}")
        for layer in (actnorm, convolution, coupling):
          layer.build(step_shape)
        self.actnorms.append(actnorm)
        self.convolutions.append(convolution)
        self.couplings.append(coupling)
    self.actnorm_initialized = self.add_weight(
        shape=(), initializer="zeros", trainable=False,
        name="actnorm_initialized")
    self.skipped_steps = add_skipped_steps(self)
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
    self.built = True

  def get_config(self):
    return {**super().get_config(), "image_shape": self.image_shape,
            "num_levels": self.num_levels, "num_steps": self.num_steps,
            "hidden_channels": self.hidden_channels, "seed": self.seed}

  # The flow ---------------------------------------------------------------

  def _steps(self, level):
    k = self.num_steps
    return zip(self.actnorms[level * k:(level + 1) * k],
               self.convolutions[level * k:(level + 1) * k],
               self.couplings[level * k:(level + 1) * k])

  def _level_to_latent(self, level):
    """Data-to-latent bijector from level `level`'s input to its latents."""
    h, w, c = self._level_shapes[level]
    parts = [squeeze(h, w, c, name=f"squeeze_{level}")]
    for actnorm, convolution, coupling in self._steps(level):
      parts += [actnorm.bijector(), convolution.bijector(), coupling.bijector()]
    parts.append(channels_first_flatten(h // 2, w // 2, 4 * c))
    if level < self.num_levels - 1:
      next_h, next_w, next_c = self._level_shapes[level + 1]
      onward = tfb.Chain([
          self._level_to_latent(level + 1),
          tfb.Invert(channels_first_flatten(next_h, next_w, next_c)),
      ])
      parts.append(tfb.Blockwise(
          [tfb.Identity(), onward],
          block_sizes=[self._exit_channels[level] * next_h * next_w,
                       next_c * next_h * next_w],
          name=f"split_{level}"))
    return tfb.Chain(parts[::-1], name=f"level_{level}")

  @property
  def flow(self):
    """The `tfb.Bijector` from latents `[..., D]` to images `[..., H, W, C]`
    in `[0, 1)`, built from the current weights."""
    data_to_latent = tfb.Chain([self._level_to_latent(0), tfb.Shift(-0.5)])
    return tfb.Invert(data_to_latent, name="glow")

  @property
  def distribution(self):
    """`tfd.TransformedDistribution(N(0, I_D), flow)` over `[0, 1)` images."""
    base = tfd.Sample(tfd.Normal(0., 1.), sample_shape=[self.event_size])
    return tfd.TransformedDistribution(base, self.flow, name="glow")

  # Images <-> the continuous space ----------------------------------------

  def _check_images(self, images):
    """8-bit images `[N, H, W, C]`, or an error saying what is wrong: shape
    and dtype statically; for dtypes other than uint8, pixel values in
    [0, 255] at run time (outside it the dequantized density is of nothing,
    and a NaN would surface only as a NaN loss)."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(
          f"GlowModel expects images of shape [N, {', '.join(map(str, self.image_shape))}]; "
          f"got {images.shape}.")
    if not (images.dtype.is_integer or images.dtype.is_floating):
      raise TypeError(f"GlowModel expects 8-bit pixel values (uint8, or "
                      f"integers or floats in [0, 255]); got dtype "
                      f"{images.dtype.name}.")
    if images.dtype == tf.uint8:
      return images
    values = tf.cast(images, tf.float32)
    in_range = (values >= 0.) & (values <= NUM_PIXEL_VALUES - 1.)
    return check_values(
        images, tf.reduce_all(in_range),
        "GlowModel expects pixel values in [0, 255]",
        tf.boolean_mask(values, tf.logical_not(in_range)))

  def _dequantize(self, images, noise):
    return (tf.cast(images, tf.float32) + noise) / NUM_PIXEL_VALUES

  @staticmethod
  def _quantize(x):
    values = tf.floor(x * NUM_PIXEL_VALUES)
    return tf.cast(tf.clip_by_value(values, 0., NUM_PIXEL_VALUES - 1.),
                   tf.uint8)

  def _nats_of_8bit(self, continuous_log_prob):
    return continuous_log_prob - self.event_size * math.log(NUM_PIXEL_VALUES)

  def bits_per_dim(self, log_prob):
    """Bits per dimension of an 8-bit log-likelihood in nats."""
    return -log_prob / (self.event_size * math.log(2.))

  # ActNorm's data-dependent initialization --------------------------------

  @property
  def is_initialized(self):
    return bool(self.actnorm_initialized.numpy() > 0.5)

  def initialize(self, images):
    """Data-dependent ActNorm initialization from `images`, once.

    Walks the data-to-latent direction step by step and sets each ActNorm
    so its outputs on this batch are zero-mean, unit-variance per channel.
    Called in cross-replica context (as `fit` does), the assignments reach
    every replica: all replicas start from the same statistics.
    """
    if self.is_initialized:
      return
    images = self._check_images(images)
    if images.shape[0] == 0:
      raise ValueError("GlowModel.initialize: ActNorm's data-dependent "
                       "initialization needs at least one image; got none.")
    x = self._dequantize(images, 0.5) - 0.5
    for level, (h, w, c) in enumerate(self._level_shapes):
      x = squeeze(h, w, c).forward(x)
      for actnorm, convolution, coupling in self._steps(level):
        actnorm.initialize_from(x)
        for layer in (actnorm, convolution, coupling):
          x = layer.bijector().forward(x)
      x = x[..., self._exit_channels[level]:]
    self.actnorm_initialized.assign(1.)

  def fit(self, x=None, y=None, batch_size=None, non_finite="stop", **kwargs):
    """Keras' `fit`, after ActNorm's initialization on the first batch.

    `non_finite`: what to do after a step with a non-finite loss or gradient
    (never applied to the weights): `"stop"` raises
    `tfp_flows.callbacks.NonFiniteLossError`, `"skip"` goes on and counts it
    (`skipped_steps` in the logs).
    """
    if not self.is_initialized:
      self.initialize(_first_batch(x, batch_size))
    kwargs = prepare_fit(self, x, kwargs, non_finite)
    return super().fit(x, y, batch_size=batch_size, **kwargs)

  # Likelihood -------------------------------------------------------------

  def _log_prob_with_noise(self, images, noise):
    return self._nats_of_8bit(
        self.distribution.log_prob(self._dequantize(images, noise)))

  def log_prob(self, images, seed=0):
    """Log-likelihood in nats of 8-bit images `[N, H, W, C]`, shape `[N]`.

    Uses uniform dequantization noise from the stateless `seed` (fixed by
    default, so repeated calls agree). Initializes ActNorm on first use.
    """
    images = self._check_images(images)
    if images.shape[0] == 0:
      # Nothing to score; TF's convolutions mis-shape an empty batch here.
      return tf.zeros([0])
    if tf.executing_eagerly():
      self.initialize(images)  # a no-op once initialized
    noise = tf.random.stateless_uniform(tf.shape(images), seed=[seed, 0])
    with tf.control_dependencies([self._assert_initialized()]):
      return self._log_prob_with_noise(images, noise)

  def _assert_initialized(self):
    return tf.debugging.assert_equal(
        self.actnorm_initialized.value, 1.,
        message="GlowModel: ActNorm is not initialized. Call "
                "model.initialize(images) (or fit, or log_prob eagerly) on a "
                "batch of data first.")

  def call(self, images, training=False):
    noise = tf.random.stateless_uniform(tf.shape(images), seed=[0, 0])
    return self._log_prob_with_noise(images, noise)

  # Training ---------------------------------------------------------------

  _maybe_symbolic_build = skip_symbolic_build

  @property
  def metrics(self):
    return [self.loss_tracker, self.bits_per_dim_tracker]

  def _update_metrics(self, nll, applied=True):
    """Adds per-example `nll` to the metrics; nothing for a step that was
    not applied (its values may be NaN, which would poison the means)."""
    weight = tf.cast(applied, tf.float32)
    nll = tf.where(applied, nll, 0.)
    self.loss_tracker.update_state(nll, sample_weight=weight)
    self.bits_per_dim_tracker.update_state(self.bits_per_dim(-nll),
                                           sample_weight=weight)

  def _dequantization_noise(self, images, step):
    return global_batch_noise(tf.random.stateless_uniform,
                              tf.shape(images)[0], tf.shape(images)[1:],
                              step_seed(self.seed, step))

  def train_step(self, data):
    images = self._check_images(images_of(data))
    noise = self._dequantization_noise(images, self.optimizer.iterations)
    with tf.GradientTape() as tape, tf.control_dependencies(
        [self._assert_initialized()]):
      nll = -self._log_prob_with_noise(images, noise)
      loss = tf.reduce_mean(nll)
    applied = minimize(self, tape, loss)
    self._update_metrics(nll, applied)
    return metric_logs(self.metrics, skipped_steps=self.skipped_steps.value)

  def test_step(self, data):
    images = self._check_images(images_of(data))
    # Step -1: evaluation noise that no training step draws.
    nll = -self._log_prob_with_noise(images,
                                     self._dequantization_noise(images, -1))
    self._update_metrics(nll)
    return metric_logs(self.metrics)

  # Sampling and the latent space ------------------------------------------

  def sample(self, num_samples, temperature=1.0, seed=None):
    """`num_samples` uint8 images from latents `N(0, temperature^2 I)`."""
    if isinstance(num_samples, int) and num_samples < 0:
      raise ValueError(f"GlowModel.sample: num_samples must be >= 0; got "
                       f"{num_samples}.")
    shape = [num_samples, self.event_size]
    if seed is None:
      latents = tf.random.normal(shape)
    else:
      latents = tf.random.stateless_normal(shape, seed=[seed, 1])
    return self.decode(temperature * latents)

  def encode(self, images):
    """Latents `[N, D]` of the bin-centred 8-bit images."""
    images = self._check_images(images)
    if images.shape[0] == 0:
      return tf.zeros([0, self.event_size])
    return self.flow.inverse(self._dequantize(images, 0.5))

  def decode(self, latents):
    """uint8 images from latents `[N, D]`; `decode(encode(x)) == x`."""
    latents = checked_latents(latents, self.event_size, "GlowModel")
    if latents.shape[0] == 0:
      return tf.zeros([0, *self.image_shape], tf.uint8)
    return self._quantize(self.flow.forward(latents))


def _first_batch(x, batch_size):
  if isinstance(x, tf.data.Dataset):
    return images_of(next(iter(x.take(1))))
  return images_of(x)[:batch_size or 32]
