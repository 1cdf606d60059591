"""Glow (Kingma & Dhariwal 2018) as a Keras 3 model over a TFP bijector chain."""

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import export, optimizers, validation
from tfp_flows.layers.glow import (GaussianMixtureLayer, GlowArchitecture,
                                   steps_per_level_of)
from tfp_flows.models.base import FlowModel
from tfp_flows.validation import check_values, checked_latents

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["DEFAULT_TOP_MIXTURE_COMPONENTS", "GLOW_RECIPE", "GlowModel",
           "PLAIN_GLOW", "padding_for"]

NUM_PIXEL_VALUES = 256

#: The options that give the plain Glow of the peer comparisons
#: (`benchmarks/bench_glow.py` against TFP's `tfb.Glow` and normflows):
#: standard normal latents, affine couplings, Glorot-initialized networks,
#: centred pixels, no padding.
#: A `.keras` file saved before these options existed loads as this.
PLAIN_GLOW = {"learned_prior": False, "coupling": "affine",
              "hidden_initializer": "glorot_uniform",
              "preprocessing": "centre", "classification_weight": 0.,
              "conditional_flow": False, "padding": 0,
              "top_mixture_components": 0}

#: openai/glow's `--weight_y` for `--ycond` (0.01). Its loss is bits per
#: subpixel plus `weight_y` times a cross-entropy in bits per image; on
#: `GlowModel`'s nats per image that is `weight_y * D`.
OPENAI_GLOW_WEIGHT_Y = 0.01

_COUPLINGS = {"affine": False, "additive": True}  # name -> additive

#: `preprocessing="logit"` maps `x` in `[0, 1)` to `logit(a + (1 - 2a) x)`
#: with this `a` (RealNVP's choice, Dinh et al. 2017, section 4.1): the
#: logit's range stays within about +-2.9, so no pixel value sits in a
#: tail the flow must stretch to reach.
LOGIT_ALPHA = 0.05


def _centred(dtype):
  return tfb.Shift(tf.constant(-0.5, dtype))


def _logit(dtype):
  # Right to left: squeeze into [a, 1 - a], then the logit. TFP's
  # `Invert(Sigmoid)` computes the logit's log-det stably.
  alpha = tf.constant(LOGIT_ALPHA, dtype)
  return tfb.Chain([tfb.Invert(tfb.Sigmoid()), tfb.Shift(alpha),
                    tfb.Scale(1. - 2. * alpha)])


#: name -> the bijector (given a dtype) from images in `[0, 1)` to the
#: first level's input.
_PREPROCESSINGS = {"centre": _centred, "logit": _logit}

#: `GlowModel.compile()`'s optimizer: `optimizers.adam_with_warmup_and_ema`
#: with these arguments (docs/RESULTS.md, "Sample quality"). No moving
#: average: with the logit it changed nothing in bits/dim at 2,000 steps and
#: lowered the confident share; a cosine decay to 0 over 5,000 steps cost
#: 0.06 bits/dim against the constant rate, so the rate stays constant.
#: 2e-3 reached 1.520 and 1.523 validation bits/dim at 5,000 steps (seeds 0
#: and 1) where 1e-3 reached 1.613 and 1.638. Adam's `beta_2` 0.99 (Keras:
#: 0.999) caps the step a sudden large gradient can take at about the
#: learning rate (0.1 / sqrt(1 - beta_2) of it: 3.2x at 0.999): with it the
#: conditional model's label accuracy at 3,000 steps was 0.921 and 0.937
#: (seeds 0, 1) where 0.999 gave 0.844 after a loss spike and 0.933.
GLOW_RECIPE = {"learning_rate": 2e-3, "warmup_steps": 200,
               "ema_momentum": None, "beta_2": 0.99}

#: An unconditional `GlowModel`'s default `top_mixture_components`: with
#: the third level, the confident share of T = 0.7 samples at 3,000 steps
#: was 0.785 and 0.828 (seeds 0 and 1) with 100 components, against 0.745
#: and 0.791 with 30, 0.621 and 0.695 with 10, and 0.778 with 300 (seed 0;
#: docs/RESULTS.md).
DEFAULT_TOP_MIXTURE_COMPONENTS = 100


def padding_for(image_shape, num_levels, padding=None):
  """The zero border (pixels on each side) of `GlowModel(padding=...)`:
  `padding` checked, or (None) the least border that makes the height and
  width divisible by `2**num_levels` (2 for 28 x 28 digits and 3 levels:
  32 x 32, openai/glow's MNIST setting); a ValueError if there is none."""
  height, width = image_shape[:2]
  factor = 2**num_levels
  if padding is None:
    candidates = [p for p in range(factor)
                  if not (height + 2 * p) % factor
                  and not (width + 2 * p) % factor]
    if not candidates:
      raise ValueError(
          f"image height and width must be divisible by 2**num_levels = "
          f"{factor} after a zero border of equal width on each side; no "
          f"border does that for image_shape={tuple(image_shape)}.")
    return candidates[0]
  checked = validation.as_int_at_least(padding, 0)
  if checked is None:
    raise ValueError(f"padding must be an int >= 0 or None; got "
                     f"{padding!r}.")
  padding = checked
  if (height + 2 * padding) % factor or (width + 2 * padding) % factor:
    raise ValueError(
        f"image height and width must be divisible by 2**num_levels = "
        f"{factor} after padding; got image_shape={tuple(image_shape)} and "
        f"padding={padding} (padding=None picks the least border that "
        f"works).")
  return padding


@keras.saving.register_keras_serializable(package="tfp_flows")
class GlowModel(FlowModel):
  """Multi-scale Glow on 8-bit images, trained by maximum likelihood.

  Data-to-latent, per level `l = 0..L-1` on images in `[0, 1)` centred to
  `[-1/2, 1/2)` (or, with `preprocessing="logit"`, mapped by
  `logit(a + (1 - 2a) x)`, `a = LOGIT_ALPHA`):
  squeeze (2x2 space-to-depth), `K` steps of ActNorm, invertible 1x1
  convolution and affine coupling, then (except after the last level) half
  of the channels leave for the base distribution and the rest go on to the
  next level. Everything is a `tfb.Bijector`; `flow` chains them (latent to
  image, TFP's generative direction) and `distribution` is
  `tfd.TransformedDistribution(base_distribution(), flow)` over images in
  `[0, 1)`, the base `N(0, I_D)` or, with a top mixture (the default of an
  unconditional model), that mixture for the top level's latents.

  With `learned_prior` (the default) the latents are not all standard
  normal: at every split the exiting channels get `N(mean, std^2)` from a
  convolution of the kept ones, and the top level a learned `N(mean,
  std^2)` per dimension (with `num_classes`, per class). Each prior is a
  bijector in the flow (`layers.SplitPriorLayer`, `layers.TopPriorLayer`)
  that standardizes its latents, so without a top mixture the base
  distribution stays `N(0, I)` and `encode` gives standard normal latents.

  A class-conditional Glow (`num_classes`) takes labels `[N]` (ints in
  `[0, num_classes)`) wherever it takes images or latents: `log_prob(images,
  labels)`, `sample(n, temperature, labels=...)`, `flow_for(labels)`,
  `distribution_for(labels)`; it trains on `(images, labels)` batches.
  With `classification_weight > 0` its loss adds that weight times the
  cross-entropy (nats per image) of a linear classifier of the top level's
  pooled output (openai/glow's `ycond` with `weight_y`).

  Likelihoods are of the 8-bit images: `log_prob(x) = log q((x + u) / 256)
  - D log 256` with uniform dequantization noise `u`, so bits/dim is
  `-log_prob / (D ln 2)` and, averaged over `u`, bounds the discrete NLL
  from above.

  Padding (openai/glow's MNIST setting: 28 x 28 digits in a 32 x 32 frame,
  for a third level): the flow and `distribution` are over the images
  with a zero border of `padding` pixels on each side (`flow_image_shape`),
  and the latents have the padded size `event_size`. Everything that
  takes or returns images works on the unpadded `image_shape`: `log_prob`,
  `encode` and `initialize` pad (pixel value 0, the digits' background),
  `sample` and `decode` crop. `log_prob` is then `log P(x, border = 0)`,
  which bounds the digits' `log P(x)` from below; `bits_per_dim` divides
  it by the digits' `D = H W C` (`image_dims`), so bits/dim stay an upper
  bound on the digits' cost, comparable with an unpadded model's.

  With `top_mixture_components = M` the top level's latents get a learned
  mixture of `M` diagonal Gaussians as their base distribution
  (`layers.GaussianMixtureLayer`) instead of `N(0, I)`: `distribution` is
  `tfd.TransformedDistribution(base, flow)` with `base` TFP's
  `tfd.Blockwise` of the split exits' `N(0, I)` and the mixture, and
  `encode` gives latents distributed so. A multimodal top prior learned
  from the images alone (no labels).

  Args:
    image_shape: `(H, W, C)` of the images (before any padding).
    num_levels: `L`, the number of squeeze levels.
    num_steps: `K`, steps of flow per level: one int for every level, or a
      sequence of `L` ints, first (finest) level first.
    hidden_channels: width of each coupling network.
    seed: seeds the 1x1 convolutions' initial rotations and the
      dequantization noise (in training a function of the step, so a resumed
      run and a run under a distribution strategy draw what an uninterrupted
      single-device run would).
    coupling: `"affine"` or `"additive"` (volume-preserving) couplings.
    hidden_initializer: initializer of the coupling networks' hidden
      convolutions (a Keras initializer name or object).
    learned_prior: learned priors at the splits and the top; `False`: every
      latent standard normal (`PLAIN_GLOW` holds the peer-comparison
      options).
    preprocessing: `"logit"` (`logit(a + (1 - 2a) x)`, as RealNVP; its
      log-det is part of the likelihood, so bits/dim stay those of the 8-bit
      images) or `"centre"` (`x - 1/2`, as openai/glow). The logit measured
      0.39 bits/dim better at 2,000 steps (docs/RESULTS.md).
    num_classes: a class-conditional top prior over this many classes.
    classification_weight: weight of the classification loss (> 0 needs
      `num_classes`); 0 leaves it out. Default: openai/glow's `weight_y`
      0.01 on this loss's scale, 0.01 times the `D` the flow sees
      (`event_size`: 7.84 for 28 x 28 digits, 10.24 in the 32 x 32 frame
      of three levels), for a class-conditional model, else 0. At 3,000 steps it raised the share
      of T = 0.7 samples classified as their label from 0.72 to 0.78 for
      0.02 bits/dim (docs/RESULTS.md).
    conditional_flow: with `num_classes`, the labels reach every coupling
      network (a per-class bias of its hidden layer) and every split prior
      (a per-class offset), not only the top prior.
    padding: a zero border of this many pixels on each side, so that the
      padded height and width are divisible by `2**num_levels`; None: the
      least border that does it (0 when `H` and `W` already are; 2 for 28 x
      28 digits and 3 levels).
    top_mixture_components: `M`, a learned `M`-component Gaussian mixture
      as the top latents' base distribution; 0: `N(0, I)`. Default:
      `DEFAULT_TOP_MIXTURE_COMPONENTS` for an unconditional Glow, 0 for a
      class-conditional one (whose top prior is already one component per
      class; it takes no mixture).
  """

  needs_initialization = True  # ActNorm's data-dependent initialization

  def __init__(self, image_shape=(28, 28, 1), num_levels=3, num_steps=8,
               hidden_channels=64, seed=0, coupling="affine",
               hidden_initializer="glorot_uniform", learned_prior=True,
               num_classes=None, classification_weight=None,
               preprocessing="logit", conditional_flow=False, padding=None,
               top_mixture_components=None, **kwargs):
    height, width, channels = (int(s) for s in image_shape)
    if num_levels < 1 or hidden_channels < 1:
      raise ValueError(
          f"GlowModel: num_levels and hidden_channels must be >= 1; "
          f"got {num_levels}, {hidden_channels}.")
    try:
      steps_per_level = steps_per_level_of(num_levels, num_steps)
    except ValueError as error:
      raise ValueError(f"GlowModel: {error}") from None
    try:
      padding = padding_for(tuple(image_shape), num_levels, padding)
    except ValueError as error:
      raise ValueError(f"GlowModel: {error}") from None
    if coupling not in _COUPLINGS:
      raise ValueError(f"GlowModel: coupling must be one of "
                       f"{sorted(_COUPLINGS)}; got {coupling!r}.")
    if preprocessing not in _PREPROCESSINGS:
      raise ValueError(f"GlowModel: preprocessing must be one of "
                       f"{list(_PREPROCESSINGS)}; got {preprocessing!r}.")
    if num_classes is not None and (
        validation.as_int_at_least(num_classes, 2) is None):
      raise ValueError(f"GlowModel: num_classes must be an int >= 2 or None; "
                       f"got {num_classes!r}.")
    if num_classes and not learned_prior:
      raise ValueError("GlowModel: a class-conditional Glow (num_classes) "
                       "puts the labels into the learned top prior; it needs "
                       "learned_prior=True.")
    if conditional_flow and not num_classes:
      raise ValueError("GlowModel: conditional_flow puts the labels into "
                       "the coupling networks and split priors; it needs "
                       "num_classes.")
    if top_mixture_components is None:
      top_mixture_components = (0 if num_classes
                                else DEFAULT_TOP_MIXTURE_COMPONENTS)
    if validation.as_int_at_least(top_mixture_components, 0) is None:
      raise ValueError(f"GlowModel: top_mixture_components must be an int "
                       f">= 0 or None; got {top_mixture_components!r}.")
    if top_mixture_components and num_classes:
      raise ValueError(
          "GlowModel: a class-conditional Glow's top prior is already one "
          "component per class; top_mixture_components is for an "
          "unconditional Glow (num_classes=None).")
    flow_image_shape = (height + 2 * padding, width + 2 * padding, channels)
    if classification_weight is None:
      # openai/glow's loss is per subpixel of what its flow sees (padded).
      classification_weight = (OPENAI_GLOW_WEIGHT_Y
                               * int(np.prod(flow_image_shape))
                               if num_classes else 0.)
    if classification_weight < 0 or (classification_weight
                                     and not num_classes):
      raise ValueError(
          f"GlowModel: classification_weight must be >= 0, and > 0 only with "
          f"num_classes; got {classification_weight!r} with num_classes="
          f"{num_classes!r}.")
    # Before the base class makes a tracker per metric name.
    self.metric_names = ("loss", "bits_per_dim") + (
        ("classification_loss",) if num_classes else ())
    super().__init__(seed=seed, **kwargs)
    self.image_shape = (height, width, channels)
    self.num_levels = num_levels
    # One int when every level has the same depth (the config of files
    # saved before per-level depths), else the list of L depths.
    self.num_steps = (steps_per_level[0] if len(set(steps_per_level)) == 1
                      else list(steps_per_level))
    self.hidden_channels = hidden_channels
    self.coupling = coupling
    self.hidden_initializer = hidden_initializer
    self.learned_prior = bool(learned_prior)
    self.num_classes = None if num_classes is None else int(num_classes)
    self.classification_weight = float(classification_weight)
    self.preprocessing = preprocessing
    self.conditional_flow = bool(conditional_flow)
    self.padding = padding
    #: The shape the flow sees: `image_shape` with the zero border.
    self.flow_image_shape = flow_image_shape
    #: `D` of bits/dim: the images' own dimensions, without the border.
    self.image_dims = height * width * channels
    #: The flow's (and the latents') dimension, border included.
    self.event_size = int(np.prod(flow_image_shape))
    self.architecture = GlowArchitecture(
        self.flow_image_shape, num_levels, num_steps, hidden_channels, seed,
        dtype=self.dtype_policy, additive_coupling=_COUPLINGS[coupling],
        hidden_initializer=hidden_initializer,
        learned_prior=self.learned_prior, num_classes=self.num_classes,
        conditional_flow=self.conditional_flow)
    # The architecture is a plain object: Keras tracks its layers through
    # these flat lists (step k of level l at l * K + k), filled step by step
    # so the weights and optimizer slots keep the names and order of `.keras`
    # files saved before the architecture had a class of its own.
    self.actnorms, self.convolutions, self.couplings = [], [], []
    for level in self.architecture.levels:
      for actnorm, convolution, coupling_layer in level.steps:
        self.actnorms.append(actnorm)
        self.convolutions.append(convolution)
        self.couplings.append(coupling_layer)
    # After the step lists: saved files match these by attribute name.
    self.priors = [level.prior for level in self.architecture.levels
                   if level.prior is not None]
    self.top_mixture_components = int(top_mixture_components)
    self.top_mixture = None if not top_mixture_components else (
        GaussianMixtureLayer(
            self.top_mixture_components,
            self.architecture.levels[-1].exit_size, seed=seed,
            name="top_mixture", dtype=self.dtype_policy))
    self.built = True

  def get_config(self):
    return {**super().get_config(), "image_shape": self.image_shape,
            "num_levels": self.num_levels, "num_steps": self.num_steps,
            "hidden_channels": self.hidden_channels,
            "coupling": self.coupling,
            "hidden_initializer": self.hidden_initializer,
            "learned_prior": self.learned_prior,
            "num_classes": self.num_classes,
            "classification_weight": self.classification_weight,
            "preprocessing": self.preprocessing,
            "conditional_flow": self.conditional_flow,
            "padding": self.padding,
            "top_mixture_components": self.top_mixture_components}

  @classmethod
  def from_config(cls, config):
    # Files saved before an option existed were trained without it.
    return cls(**{**PLAIN_GLOW, **config})

  def compile(self, optimizer=None, **kwargs):
    """Keras' `compile` (`FlowModel.compile`); without an optimizer, the
    recipe chosen by measurement (docs/RESULTS.md): Adam (`beta_2` 0.99) at
    a constant learning rate after a linear warm-up, without a moving
    average of the weights
    (`optimizers.adam_with_warmup_and_ema(**GLOW_RECIPE)`)."""
    if optimizer is None:
      optimizer = optimizers.adam_with_warmup_and_ema(**GLOW_RECIPE)
    super().compile(optimizer=optimizer, **kwargs)

  @property
  def is_conditional(self):
    return self.num_classes is not None

  # The flow ---------------------------------------------------------------

  def flow_for(self, labels=None):
    """The `tfb.Bijector` from latents `[..., event_size]` to images
    `[..., *flow_image_shape]` (padded, if `padding`) in `[0, 1)`, built
    from the current weights; a class-conditional Glow's for `labels` `[N]`
    (batch shape `[N]`)."""
    labels = self._checked_labels(labels, "flow_for")
    data_to_latent = tfb.Chain([
        self.architecture.data_to_latent(context=labels),
        self._preprocessing_bijector()])
    return tfb.Invert(data_to_latent, name="glow")

  def _preprocessing_bijector(self):
    """Images in `[0, 1)` to the first level's input."""
    return _PREPROCESSINGS[self.preprocessing](self.likelihood_dtype)

  def distribution_for(self, labels=None):
    """`tfd.TransformedDistribution(base_distribution(), flow_for(labels))`
    over `[0, 1)` images of `flow_image_shape`."""
    return tfd.TransformedDistribution(self.base_distribution(),
                                       self.flow_for(labels), name="glow")

  def base_distribution(self):
    """The latents' distribution, event shape `[event_size]`: `N(0, I)`,
    or with `top_mixture_components` TFP's `tfd.Blockwise` of `N(0, I)`
    for the split exits (the first entries) and the learned mixture for
    the top level's (the last)."""
    dtype = self.likelihood_dtype
    normal = tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype))
    if self.top_mixture is None:
      return tfd.Sample(normal, sample_shape=[self.event_size])
    mixture = self.top_mixture.distribution(dtype)
    exits = self.event_size - self.top_mixture.event_size
    if not exits:  # one level: the top is every latent
      return mixture
    return tfd.Blockwise([tfd.Sample(normal, sample_shape=[exits]), mixture],
                         name="glow_base")

  @property
  def flow(self):
    """`flow_for()`: the flow of an unconditional Glow."""
    return self.flow_for()

  @property
  def distribution(self):
    """`distribution_for()`: the distribution of an unconditional Glow."""
    return self.distribution_for()

  def _checked_labels(self, labels, where, count=None):
    """Labels `[N]` as int32 in `[0, num_classes)` (checked at run time),
    `count` of them if given, None for an unconditional Glow, or an error
    saying what is wrong."""
    if not self.is_conditional:
      if labels is not None:
        raise ValueError(f"GlowModel.{where}: this Glow is unconditional "
                         f"(num_classes=None); it takes no labels.")
      return None
    if labels is None:
      raise ValueError(
          f"GlowModel.{where}: this Glow is class-conditional (num_classes="
          f"{self.num_classes}); pass labels [N], ints in [0, "
          f"{self.num_classes}).")
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
      raise TypeError(f"GlowModel.{where}: labels must be integers in [0, "
                      f"{self.num_classes}); got dtype {labels.dtype.name}.")
    if labels.shape.rank not in (None, 1):
      raise ValueError(f"GlowModel.{where}: labels must have shape [N]; got "
                       f"{labels.shape}.")
    labels = tf.cast(labels, tf.int32)
    in_range = (labels >= 0) & (labels < self.num_classes)
    labels = check_values(
        labels, tf.reduce_all(in_range),
        f"GlowModel.{where}: labels must be in [0, {self.num_classes})",
        lambda: tf.boolean_mask(labels, tf.logical_not(in_range)))
    if count is not None:
      count = tf.cast(count, tf.int32)
      labels = check_values(
          labels, tf.equal(tf.shape(labels)[0], count),
          f"GlowModel.{where}: labels must have one entry per image or "
          f"latent; got (labels, images or latents)",
          lambda: tf.stack([tf.shape(labels)[0], count]))
    return labels

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
        lambda: tf.boolean_mask(values, tf.logical_not(in_range)))

  def _dequantize(self, images, noise):
    """`(padded images + noise) / 256`; `noise` is of `flow_image_shape`
    (or broadcasts to it)."""
    dtype = self.likelihood_dtype
    images = tf.cast(images, dtype)
    if self.padding:
      border = [self.padding] * 2
      images = tf.pad(images, [[0, 0], border, border, [0, 0]])
    return (images + tf.cast(noise, dtype)) / NUM_PIXEL_VALUES

  def _noise_shape(self, images):
    return tf.concat([tf.shape(images)[:1], self.flow_image_shape], 0)

  def _cropped(self, x):
    """`x` `[N, *flow_image_shape]` without the border."""
    if not self.padding:
      return x
    height, width, _ = self.image_shape
    return x[:, self.padding:self.padding + height,
             self.padding:self.padding + width, :]

  @staticmethod
  def _quantize(x):
    values = tf.floor(x * NUM_PIXEL_VALUES)
    return tf.cast(tf.clip_by_value(values, 0., NUM_PIXEL_VALUES - 1.),
                   tf.uint8)

  def _nats_of_8bit(self, continuous_log_prob):
    # Every dimension the flow sees is dequantized, the border's too.
    return continuous_log_prob - self.event_size * math.log(NUM_PIXEL_VALUES)

  def bits_per_dim(self, log_prob):
    """Bits per dimension of an 8-bit log-likelihood in nats, per the
    images' own `image_dims` (a padded model's border is not counted)."""
    return -log_prob / (self.image_dims * math.log(2.))

  # ActNorm's data-dependent initialization --------------------------------

  def initialize_from(self, batch):
    """Sets each ActNorm so its outputs on the batch's checked 8-bit images
    are zero-mean, unit-variance per channel; see `FlowModel.initialize`."""
    images, labels = self._images_and_labels(batch)
    if images.shape[0] == 0:
      raise ValueError("GlowModel.initialize: ActNorm's data-dependent "
                       "initialization needs at least one image; got none.")
    self.architecture.initialize_actnorm(
        self._preprocessing_bijector().forward(
            self._dequantize(images, 0.5)), context=labels)

  # Likelihood -------------------------------------------------------------

  def _latents_and_log_prob(self, images, labels, noise):
    """Latents `[N, event_size]` of the dequantized images and their 8-bit
    log-likelihood in nats `[N]`: what `distribution_for(labels).log_prob`
    computes, with the latents kept for the classification loss."""
    x = self._dequantize(images, noise)
    flow = self.flow_for(labels)
    latents = flow.inverse(x)
    log_prob = (self.base_distribution().log_prob(latents)
                + flow.inverse_log_det_jacobian(x, event_ndims=3))
    return latents, self._nats_of_8bit(log_prob)

  def _log_prob_with_noise(self, images, labels, noise):
    return self._nats_of_8bit(self.distribution_for(labels).log_prob(
        self._dequantize(images, noise)))

  def log_prob(self, images, labels=None, seed=0):
    """Log-likelihood in nats of 8-bit images `[N, H, W, C]` (given their
    `labels` `[N]` for a class-conditional Glow), shape `[N]`.

    Uses uniform dequantization noise from the stateless `seed` (fixed by
    default, so repeated calls agree). Initializes ActNorm on first use.
    """
    images = self._check_images(images)
    labels = self._checked_labels(labels, "log_prob", tf.shape(images)[0])
    return self._score(images, labels, seed, self._log_prob_with_noise)

  def marginal_log_prob(self, images, seed=0):
    """A class-conditional Glow's log-likelihood of images alone, in nats
    `[N]`: the label marginalized under a uniform prior, `log (1/K) sum_y
    p(x | y)` over the `K = num_classes` labels. This mixture is an
    unconditional density of the images (a model trained with labels, as
    FlowGMM's), comparable with an unconditional Glow's `log_prob`; it
    costs `K` passes of the flow.

    Every label sees the same dequantization noise (from the stateless
    `seed`), so the mixture is taken of one dequantized image's densities.
    """
    if not self.is_conditional:
      raise ValueError("GlowModel.marginal_log_prob: this Glow is "
                       "unconditional (num_classes=None); its log_prob is "
                       "already the images' likelihood.")
    images = self._check_images(images)
    # Label 0 only initializes ActNorm: at initialization every per-class
    # weight is zero, so the statistics are those of any label.
    initializing_labels = tf.zeros([tf.shape(images)[0]], tf.int32)
    return self._score(images, initializing_labels, seed,
                       lambda images, _, noise: self._mixture_log_prob(
                           images, noise))

  def _score(self, images, labels, seed, log_prob_with_noise):
    """`log_prob_with_noise(images, labels, noise)` `[N]` of checked images
    and labels, after what every likelihood needs: ActNorm initialized on
    first use (eagerly; in a graph, an error if it never was) and uniform
    dequantization noise from the stateless `seed`."""
    if images.shape[0] == 0:
      # Nothing to score; TF's convolutions mis-shape an empty batch here.
      return tf.zeros([0], self.likelihood_dtype)
    if tf.executing_eagerly():
      # A no-op once initialized.
      self.initialize(images if labels is None else (images, labels))
    noise = tf.random.stateless_uniform(self._noise_shape(images),
                                        seed=[seed, 0],
                                        dtype=self.likelihood_dtype)
    with tf.control_dependencies([self.assert_initialized()]):
      return log_prob_with_noise(images, labels, noise)

  def _mixture_log_prob(self, images, noise):
    """`log (1/K) sum_y p(x | y)` `[N]`, every label with the same noise."""
    count = tf.shape(images)[0]
    # [K * N]: every image once per label, label-major.
    repeated = [self.num_classes] + [1] * (images.shape.rank - 1)
    labels = tf.repeat(tf.range(self.num_classes, dtype=tf.int32), count)
    per_label = tf.reshape(self._log_prob_with_noise(
        tf.tile(images, repeated), labels, tf.tile(noise, repeated)),
        [self.num_classes, count])
    return (tf.reduce_logsumexp(per_label, axis=0)
            - tf.math.log(tf.cast(self.num_classes, per_label.dtype)))

  def call(self, inputs, training=False):
    images, labels = (inputs if self.is_conditional else (inputs, None))
    noise = tf.random.stateless_uniform(self._noise_shape(images),
                                        seed=[0, 0],
                                        dtype=self.likelihood_dtype)
    return self._log_prob_with_noise(images, labels, noise)

  # Training ---------------------------------------------------------------

  def check_batch(self, data):
    """Checked images, or `(images, labels)` for a class-conditional Glow
    (a Keras batch `(images, labels)`)."""
    if not self.is_conditional:
      return self._check_images(super().check_batch(data))
    if not (isinstance(data, (tuple, list)) and len(data) >= 2):
      raise ValueError(
          f"GlowModel: a class-conditional Glow (num_classes="
          f"{self.num_classes}) trains on (images, labels) batches; got "
          f"{type(data).__name__}.")
    images = self._check_images(data[0])
    return images, self._checked_labels(data[1], "fit", tf.shape(images)[0])

  def _images_and_labels(self, batch):
    return batch if self.is_conditional else (batch, None)

  def noise_spec(self, batch):
    # Uniform dequantization noise.
    images, _ = self._images_and_labels(batch)
    return (tf.random.stateless_uniform, tf.shape(images)[0],
            self.flow_image_shape)

  def objective(self, batch, noise, training):
    images, labels = self._images_and_labels(batch)
    if not self.is_conditional:
      nll = -self._log_prob_with_noise(images, None, noise)
      return tf.reduce_mean(nll), {"loss": nll,
                                   "bits_per_dim": self.bits_per_dim(-nll)}
    latents, log_prob = self._latents_and_log_prob(images, labels, noise)
    nll = -log_prob
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels, self._classifier_logits(latents, labels))
    loss = nll + self.classification_weight * cross_entropy
    return tf.reduce_mean(loss), {"loss": loss,
                                  "bits_per_dim": self.bits_per_dim(-nll),
                                  "classification_loss": cross_entropy}

  def _top_level_output(self, latents, labels):
    """The top level's output `[N, h, w, c]` before its prior standardized
    it, from the latents `[N, event_size]` (the top's are the last entries)."""
    top = self.architecture.levels[-1]
    h, w, c = top.output_shape
    standardized = tf.reshape(latents[..., -top.exit_size:], [-1, c, h, w])
    standardized = tf.transpose(standardized, [0, 2, 3, 1])
    return self.architecture.top_prior.bijector(labels).inverse(standardized)

  def _classifier_logits(self, latents, labels):
    return self.architecture.top_prior.classifier_logits(
        self._top_level_output(latents, labels))

  # Sampling and the latent space ------------------------------------------

  def sample(self, num_samples, temperature=1.0, seed=None, labels=None):
    """`num_samples` uint8 images `[num_samples, *image_shape]` from
    latents `N(0, temperature^2 I)` (with `top_mixture_components`, the top
    latents from a component at `temperature` times its standard
    deviation); a class-conditional Glow's of class `labels` (an int, or
    `[num_samples]` ints)."""
    if isinstance(num_samples, int) and num_samples < 0:
      raise ValueError(f"GlowModel.sample: num_samples must be >= 0; got "
                       f"{num_samples}.")
    if labels is not None and tf.convert_to_tensor(labels).shape.rank == 0:
      labels = tf.fill([num_samples], tf.convert_to_tensor(labels))
    return self.decode(self.sample_latents(num_samples, temperature, seed),
                       labels)

  def sample_latents(self, num_samples, temperature=1.0, seed=None):
    """The latents `[num_samples, event_size]` that `sample` decodes:
    `temperature` times `N(0, I)`, the top latents of a top mixture from a
    component at `temperature` times its standard deviation; from the
    stateless `seed` if given."""
    dtype = self.likelihood_dtype
    temperature = tf.cast(temperature, dtype)
    top_size = self.top_mixture.event_size if self.top_mixture else 0
    shape = [num_samples, self.event_size - top_size]
    if seed is None:
      latents = tf.random.normal(shape, dtype=dtype)
    else:
      latents = tf.random.stateless_normal(shape, seed=[seed, 1], dtype=dtype)
    latents = temperature * latents
    if self.top_mixture is not None:
      top = self.top_mixture.sample(
          num_samples, temperature,
          None if seed is None else tf.constant([seed, 2], tf.int64), dtype)
      latents = tf.concat([latents, top], axis=-1)
    return latents

  def encode(self, images, labels=None):
    """Latents `[N, event_size]` of the bin-centred 8-bit images (padded,
    if `padding`), distributed as `base_distribution()` under the model."""
    images = self._check_images(images)
    labels = self._checked_labels(labels, "encode", tf.shape(images)[0])
    if images.shape[0] == 0:
      return tf.zeros([0, self.event_size], self.likelihood_dtype)
    return self.flow_for(labels).inverse(self._dequantize(images, 0.5))

  def decode(self, latents, labels=None):
    """uint8 images `[N, *image_shape]` (cropped, if `padding`) from
    latents `[N, event_size]`; `decode(encode(x)) == x`."""
    latents = checked_latents(latents, self.event_size, "GlowModel",
                              self.likelihood_dtype)
    labels = self._checked_labels(labels, "decode", tf.shape(latents)[0])
    if latents.shape[0] == 0:
      return tf.zeros([0, *self.image_shape], tf.uint8)
    return self._quantize(self._cropped(
        self.flow_for(labels).forward(latents)))

  # Serving -----------------------------------------------------------------

  def serving_endpoints(self):
    """TF Serving's signatures (`tfp_flows.export`): `log_prob` (the
    default), `sample`, `encode`, `decode`; images uint8 `[N, H, W, C]`
    (unpadded), latents float32 `[N, event_size]` (a padded model's border
    included). A class-conditional Glow's take `labels` int32 `[N]` beside
    them, and its `sample` takes `labels` instead of `num_samples` (one
    image per label); it also serves `marginal_log_prob` (images only, the
    label marginalized)."""
    if not self.is_initialized:
      raise ValueError(
          "export_saved_model: the GlowModel's ActNorm is not initialized; "
          "train it, or call model.initialize(images), before exporting.")

    def checked(images):
      return export.checked_shape(images, self.image_shape, "images")

    def checked_labels(labels):
      return export.checked_shape(labels, (), "labels")

    images = export.images_spec(self.image_shape)
    temperature = tf.TensorSpec([], tf.float32, name="temperature")
    if not self.is_conditional:
      def log_prob(images):
        log_p = self.log_prob(checked(images))
        return {"log_prob": log_p, "bits_per_dim": self.bits_per_dim(log_p)}

      def sample(num_samples, temperature):
        return {"images": self.sample(
            export.checked_num_samples(num_samples), temperature=temperature)}

      def encode(images):
        return {"latents": self.encode(checked(images))}

      def decode(latents):
        return {"images": self.decode(
            export.checked_shape(latents, (self.event_size,), "latents"))}

      return {
          "log_prob": (log_prob, [images]),
          "sample": (sample, [tf.TensorSpec([], tf.int32, name="num_samples"),
                              temperature]),
          "encode": (encode, [images]),
          "decode": (decode, [export.latents_spec(self.event_size)]),
      }

    labels_spec = tf.TensorSpec([None], tf.int32, name="labels")

    def conditional_log_prob(images, labels):
      log_p = self.log_prob(checked(images), checked_labels(labels))
      return {"log_prob": log_p, "bits_per_dim": self.bits_per_dim(log_p)}

    def marginal_log_prob(images):
      log_p = self.marginal_log_prob(checked(images))
      return {"log_prob": log_p, "bits_per_dim": self.bits_per_dim(log_p)}

    def conditional_sample(labels, temperature):
      labels = checked_labels(labels)
      return {"images": self.sample(tf.shape(labels)[0], temperature,
                                    labels=labels)}

    def conditional_encode(images, labels):
      return {"latents": self.encode(checked(images),
                                     checked_labels(labels))}

    def conditional_decode(latents, labels):
      return {"images": self.decode(
          export.checked_shape(latents, (self.event_size,), "latents"),
          checked_labels(labels))}

    return {
        "log_prob": (conditional_log_prob, [images, labels_spec]),
        "marginal_log_prob": (marginal_log_prob, [images]),
        "sample": (conditional_sample, [labels_spec, temperature]),
        "encode": (conditional_encode, [images, labels_spec]),
        "decode": (conditional_decode,
                   [export.latents_spec(self.event_size), labels_spec]),
    }
