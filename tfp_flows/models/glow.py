"""Glow (Kingma & Dhariwal 2018) as a Keras 3 model over a TFP bijector chain."""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import export
from tfp_flows.layers import GlowArchitecture
from tfp_flows.models.base import FlowModel
from tfp_flows.validation import check_values, checked_latents

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["GlowModel"]

NUM_PIXEL_VALUES = 256


@keras.saving.register_keras_serializable(package="tfp_flows")
class GlowModel(FlowModel):
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

  metric_names = ("loss", "bits_per_dim")
  needs_initialization = True  # ActNorm's data-dependent initialization

  def __init__(self, image_shape=(28, 28, 1), num_levels=2, num_steps=8,
               hidden_channels=64, seed=0, **kwargs):
    super().__init__(seed=seed, **kwargs)
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
    self.event_size = height * width * channels
    self.architecture = GlowArchitecture(self.image_shape, num_levels,
                                         num_steps, hidden_channels, seed,
                                         dtype=self.dtype_policy)
    # The architecture is a plain object: Keras tracks its layers through
    # these flat lists (step k of level l at l * K + k), filled step by step
    # so the weights and optimizer slots keep the names and order of `.keras`
    # files saved before the architecture had a class of its own.
    self.actnorms, self.convolutions, self.couplings = [], [], []
    for level in self.architecture.levels:
      for actnorm, convolution, coupling in level.steps:
        self.actnorms.append(actnorm)
        self.convolutions.append(convolution)
        self.couplings.append(coupling)
    self.built = True

  def get_config(self):
    return {**super().get_config(), "image_shape": self.image_shape,
            "num_levels": self.num_levels, "num_steps": self.num_steps,
            "hidden_channels": self.hidden_channels}

  # The flow ---------------------------------------------------------------

  @property
  def flow(self):
    """The `tfb.Bijector` from latents `[..., D]` to images `[..., H, W, C]`
    in `[0, 1)`, built from the current weights."""
    data_to_latent = tfb.Chain([
        self.architecture.data_to_latent(),
        tfb.Shift(tf.constant(-0.5, self.likelihood_dtype))])
    return tfb.Invert(data_to_latent, name="glow")

  @property
  def distribution(self):
    """`tfd.TransformedDistribution(N(0, I_D), flow)` over `[0, 1)` images."""
    dtype = self.likelihood_dtype
    base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)),
                      sample_shape=[self.event_size])
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
    dtype = self.likelihood_dtype
    return (tf.cast(images, dtype) + tf.cast(noise, dtype)) / NUM_PIXEL_VALUES

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

  def initialize_from(self, images):
    """Sets each ActNorm so its outputs on `images` (checked 8-bit images)
    are zero-mean, unit-variance per channel; see `FlowModel.initialize`."""
    if images.shape[0] == 0:
      raise ValueError("GlowModel.initialize: ActNorm's data-dependent "
                       "initialization needs at least one image; got none.")
    self.architecture.initialize_actnorm(self._dequantize(images, 0.5) - 0.5)

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
      return tf.zeros([0], self.likelihood_dtype)
    if tf.executing_eagerly():
      self.initialize(images)  # a no-op once initialized
    noise = tf.random.stateless_uniform(tf.shape(images), seed=[seed, 0],
                                        dtype=self.likelihood_dtype)
    with tf.control_dependencies([self.assert_initialized()]):
      return self._log_prob_with_noise(images, noise)

  def call(self, images, training=False):
    noise = tf.random.stateless_uniform(tf.shape(images), seed=[0, 0],
                                        dtype=self.likelihood_dtype)
    return self._log_prob_with_noise(images, noise)

  # Training ---------------------------------------------------------------

  def check_batch(self, data):
    return self._check_images(super().check_batch(data))

  def noise_spec(self, images):
    # Uniform dequantization noise.
    return (tf.random.stateless_uniform, tf.shape(images)[0],
            tf.shape(images)[1:])

  def objective(self, images, noise, training):
    nll = -self._log_prob_with_noise(images, noise)
    return tf.reduce_mean(nll), {"loss": nll,
                                 "bits_per_dim": self.bits_per_dim(-nll)}

  # Sampling and the latent space ------------------------------------------

  def sample(self, num_samples, temperature=1.0, seed=None):
    """`num_samples` uint8 images from latents `N(0, temperature^2 I)`."""
    if isinstance(num_samples, int) and num_samples < 0:
      raise ValueError(f"GlowModel.sample: num_samples must be >= 0; got "
                       f"{num_samples}.")
    shape = [num_samples, self.event_size]
    dtype = self.likelihood_dtype
    if seed is None:
      latents = tf.random.normal(shape, dtype=dtype)
    else:
      latents = tf.random.stateless_normal(shape, seed=[seed, 1], dtype=dtype)
    return self.decode(tf.cast(temperature, dtype) * latents)

  def encode(self, images):
    """Latents `[N, D]` of the bin-centred 8-bit images."""
    images = self._check_images(images)
    if images.shape[0] == 0:
      return tf.zeros([0, self.event_size], self.likelihood_dtype)
    return self.flow.inverse(self._dequantize(images, 0.5))

  def decode(self, latents):
    """uint8 images from latents `[N, D]`; `decode(encode(x)) == x`."""
    latents = checked_latents(latents, self.event_size, "GlowModel",
                              self.likelihood_dtype)
    if latents.shape[0] == 0:
      return tf.zeros([0, *self.image_shape], tf.uint8)
    return self._quantize(self.flow.forward(latents))

  # Serving -----------------------------------------------------------------

  def serving_endpoints(self):
    """TF Serving's signatures (`tfp_flows.export`): `log_prob` (the
    default), `sample`, `encode`, `decode`; images uint8 `[N, H, W, C]`,
    latents float32 `[N, D]`."""
    if not self.is_initialized:
      raise ValueError(
          "export_saved_model: the GlowModel's ActNorm is not initialized; "
          "train it, or call model.initialize(images), before exporting.")

    def checked(images):
      return export.checked_shape(images, self.image_shape, "images")

    def log_prob(images):
      log_p = self.log_prob(checked(images))
      return {"log_prob": log_p, "bits_per_dim": self.bits_per_dim(log_p)}

    def sample(num_samples, temperature):
      return {"images": self.sample(export.checked_num_samples(num_samples),
                                    temperature=temperature)}

    def encode(images):
      return {"latents": self.encode(checked(images))}

    def decode(latents):
      return {"images": self.decode(
          export.checked_shape(latents, (self.event_size,), "latents"))}

    images = export.images_spec(self.image_shape)
    return {
        "log_prob": (log_prob, [images]),
        "sample": (sample, [tf.TensorSpec([], tf.int32, name="num_samples"),
                            tf.TensorSpec([], tf.float32, name="temperature")]),
        "encode": (encode, [images]),
        "decode": (decode, [export.latents_spec(self.event_size)]),
    }
