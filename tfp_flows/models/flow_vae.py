"""A VAE whose approximate posterior is a planar or radial flow (Rezende &
Mohamed 2015, Sec. 6.2), as a Keras 3 model with a custom `train_step`."""

import math

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.layers.flows import (FLOW_TYPES, flow_bijectors,
                                    flow_forward_and_log_det, flow_param_size,
                                    near_identity_flow_params)
from tfp_flows.models.common import (HALF_LOG_2PI, add_skipped_steps,
                                     annealed_beta, build_optimizer,
                                     check_values,
                                     checked_latents, diagonal_normal_sample,
                                     global_batch_noise, images_of, metric_logs,
                                     minimize, prepare_fit,
                                     skip_symbolic_build, step_seed)

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["FlowVAE"]


class _ScaledKernelDense(keras.layers.Dense):
  """`Dense` computing `x @ (kernel_multiplier * kernel) + bias`.

  Under Adam (or RMSprop) a weight moves about `learning_rate` per step
  whatever its gradient's scale, so scaling the kernel where it is used
  scales how fast the layer's function changes by `kernel_multiplier`: a
  learning-rate multiplier for this one kernel, with one optimizer (Keras 3
  optimizers take no per-variable rates). StyleGAN's mapping network uses
  the same trick (`lr_mul`).
  """

  def __init__(self, units, kernel_multiplier, **kwargs):
    super().__init__(units, **kwargs)
    self.kernel_multiplier = float(kernel_multiplier)

  def call(self, inputs):
    outputs = keras.ops.matmul(inputs, self.kernel) * self.kernel_multiplier
    return self.activation(outputs + self.bias)


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowVAE(keras.Model):
  r"""Variational autoencoder with a normalizing-flow posterior.

  ```none
  encoder:  x -> mu, log sigma, flow parameters (all per example)
  q_0(z_0 | x) = N(mu, diag sigma^2),   z_K = f_K(...f_1(z_0)),
  log q_K(z_K | x) = log q_0(z_0 | x) - sum_k log|det df_k/dz_{k-1}|
  decoder:  z_K -> Bernoulli logits over the pixels;  prior p(z) = N(0, I)
  ```

  Training minimizes the paper's annealed free energy, one sample of `z_0`
  per example:

  ```none
  F_t(x) = E[log q_0(z_0)] - beta_t E[log p(x | z_K) + log p(z_K)]
           - E[sum_k log|det df_k/dz_{k-1}|],
  beta_t = min(1, initial_beta + t / annealing_steps)
  ```

  with `t` the optimizer's step. `beta_t = 1` gives the negative ELBO,
  which `test_step` reports. The samples go through the flow forward only
  (no inverse, no root-finding).

  Metrics: `loss` (`F_t`), `elbo`, `reconstruction` (`E log p(x|z_K)`),
  `kl` (`E[log q_K(z_K|x) - log p(z_K)]`, so `elbo = reconstruction - kl`),
  `beta`. All in nats per image.

  Args:
    latent_dim: dimension `D` of `z`.
    flow: `"planar"`, `"radial"` or `"none"` (a diagonal-Gaussian VAE).
    num_flows: `K`, flow steps (ignored for `"none"`).
    hidden_units: widths of the encoder's hidden layers; the decoder mirrors
      them.
    activation: of the hidden layers.
    image_shape: `(H, W, C)` of the binary images.
    initial_beta, annealing_steps: the annealing schedule; `annealing_steps=0`
      trains on the plain ELBO (`beta = 1` throughout).
    seed: seeds the training samples of `z_0` (a function of the step, so a
      resumed run and a run under a distribution strategy draw what an
      uninterrupted single-device run would).
    flow_head_lr_multiplier: how fast, relative to the other layers, the
      flow head's kernel (how the flow parameters depend on `x`) learns;
      see `_ScaledKernelDense`. At 1 (a plain `Dense` head), Adam(1e-3)
      moves the per-example flow parameters so fast that a planar K = 10
      posterior trains worse than a diagonal Gaussian; at 0.03 it trains
      better (docs/RESULTS.md). The bias (the flow shared by all examples)
      learns at the full rate.
  """

  def __init__(self, latent_dim=40, flow="planar", num_flows=10,
               hidden_units=(400, 400), activation="relu",
               image_shape=(28, 28, 1), initial_beta=0.01,
               annealing_steps=10_000, seed=0, flow_head_lr_multiplier=0.03,
               **kwargs):
    super().__init__(**kwargs)
    if flow not in FLOW_TYPES + ("none",):
      raise ValueError(f"FlowVAE: flow must be one of {FLOW_TYPES + ('none',)}"
                       f"; got {flow!r}.")
    hidden_units = tuple(int(units) for units in hidden_units)
    if latent_dim < 1 or not hidden_units or min(hidden_units) < 1:
      raise ValueError(
          f"FlowVAE: latent_dim must be >= 1 and hidden_units a non-empty "
          f"sequence of positive widths; got latent_dim={latent_dim}, "
          f"hidden_units={hidden_units}.")
    if flow != "none" and num_flows < 1:
      raise ValueError(f"FlowVAE: num_flows must be >= 1 for flow={flow!r}; "
                       f"got {num_flows}.")
    if not 0. < flow_head_lr_multiplier < math.inf:
      raise ValueError(f"FlowVAE: flow_head_lr_multiplier must be finite and "
                       f"> 0; got "
                       f"{flow_head_lr_multiplier}.")
    if not 0. < initial_beta <= 1. or annealing_steps < 0:
      raise ValueError(
          f"FlowVAE: need 0 < initial_beta <= 1 and annealing_steps >= 0; got "
          f"{initial_beta} and {annealing_steps}.")
    self.latent_dim = int(latent_dim)
    self.flow = flow
    self.num_flows = int(num_flows) if flow != "none" else 0
    self.hidden_units = hidden_units
    self.activation = activation
    self.image_shape = tuple(int(s) for s in image_shape)
    self.initial_beta = float(initial_beta)
    self.annealing_steps = int(annealing_steps)
    self.seed = seed
    self.flow_head_lr_multiplier = float(flow_head_lr_multiplier)
    self.event_size = math.prod(self.image_shape)

    dense = keras.layers.Dense
    self.encoder_layers = [
        dense(units, activation=activation, name=f"encoder_{i}")
        for i, units in enumerate(hidden_units)]
    self.posterior_head = dense(2 * self.latent_dim, name="posterior_head")
    self.flow_head = None
    if self.num_flows:
      # Every example starts from the same flow, near the identity (zero
      # kernel, `near_identity_flow_params` as bias); the kernel learns how
      # the flow depends on x. Keras' default (Glorot) kernel instead starts
      # each example with its own random flow of O(1) parameters, whose
      # saturated tanh units fold z_0 into pieces.
      initial = tf.reshape(near_identity_flow_params(
          flow, self.num_flows, self.latent_dim, seed=seed), [-1])
      self.flow_head = _ScaledKernelDense(
          self.num_flows * flow_param_size(flow, self.latent_dim),
          kernel_multiplier=self.flow_head_lr_multiplier,
          kernel_initializer="zeros",
          bias_initializer=keras.initializers.Constant(initial),
          name="flow_head")
    self.decoder_layers = [
        dense(units, activation=activation, name=f"decoder_{i}")
        for i, units in enumerate(reversed(hidden_units))]
    self.logits_head = dense(self.event_size, name="logits_head")
    width = self.event_size
    for layer in self.encoder_layers:
      layer.build((None, width))
      width = layer.units
    for head in (self.posterior_head, self.flow_head):
      if head is not None:
        head.build((None, width))
    width = self.latent_dim
    for layer in self.decoder_layers + [self.logits_head]:
      layer.build((None, width))
      width = layer.units

    self.skipped_steps = add_skipped_steps(self)
    self.loss_tracker = keras.metrics.Mean(name="loss")
    self.elbo_tracker = keras.metrics.Mean(name="elbo")
    self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
    self.kl_tracker = keras.metrics.Mean(name="kl")
    self.beta_tracker = keras.metrics.Mean(name="beta")
    self.built = True

  def get_config(self):
    return {**super().get_config(), "latent_dim": self.latent_dim,
            "flow": self.flow, "num_flows": self.num_flows,
            "hidden_units": self.hidden_units, "activation": self.activation,
            "image_shape": self.image_shape,
            "initial_beta": self.initial_beta,
            "annealing_steps": self.annealing_steps, "seed": self.seed,
            "flow_head_lr_multiplier": self.flow_head_lr_multiplier}

  @classmethod
  def from_config(cls, config):
    # Models saved before the option existed have a plain Dense flow head.
    return super().from_config({"flow_head_lr_multiplier": 1., **config})

  # Inputs ------------------------------------------------------------------

  def _check_images(self, images):
    """Float32 `[N, H, W, C]` of binary images, or an error saying what is
    wrong: shape and dtype statically, the 0/1 values at run time (a
    Bernoulli likelihood of other values would train on nonsense, and a NaN
    would surface only as a NaN loss)."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and (
        images.shape.rank != 4 or
        not images.shape[1:].is_compatible_with(self.image_shape)):
      raise ValueError(
          f"FlowVAE: images must have shape [N, {', '.join(map(str, self.image_shape))}]"
          f"; got {images.shape}.")
    if not (images.dtype.is_integer or images.dtype.is_floating or
            images.dtype == tf.bool):
      raise TypeError(f"FlowVAE: images must be bool, or integer or float 0/1 "
                      f"values; got dtype {images.dtype.name}.")
    images = tf.cast(images, tf.float32)
    binary = tf.equal(images, 0.) | tf.equal(images, 1.)
    return check_values(
        images, tf.reduce_all(binary),
        "FlowVAE expects binary images (pixel values 0 or 1); binarize them "
        "first (e.g. TFDS binarized_mnist)",
        tf.boolean_mask(images, tf.logical_not(binary)))

  # The posterior -----------------------------------------------------------

  def posterior_parameters(self, images):
    """`loc`, `log_scale` `[N, D]` of `q_0` and flow parameters `[N, K, P]`
    (`None` for `flow="none"`)."""
    return self._encoder(self._check_images(images))

  def _encoder(self, images):
    """`posterior_parameters` of checked float32 images."""
    h = tf.reshape(images, [-1, self.event_size])
    for layer in self.encoder_layers:
      h = layer(h)
    loc, log_scale = tf.split(self.posterior_head(h), 2, axis=-1)
    flow_params = None
    if self.flow_head is not None:
      flow_params = tf.reshape(
          self.flow_head(h),
          [-1, self.num_flows, flow_param_size(self.flow, self.latent_dim)])
    return loc, log_scale, flow_params

  def flow_bijectors(self, flow_params):
    """The posterior's flow steps, in the order applied to `z_0`."""
    if flow_params is None:
      return []
    return flow_bijectors(self.flow, flow_params, self.latent_dim)

  def posterior(self, images):
    """`q_K(z_K | x)` as a `tfd.TransformedDistribution`, batch shape `[N]`.

    Its `log_prob` of arbitrary latents inverts the flow (root-finding for
    planar steps); training and evaluation use forward samples instead.
    """
    loc, log_scale, flow_params = self.posterior_parameters(images)
    base = tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.exp(log_scale))
    steps = self.flow_bijectors(flow_params)
    return tfd.TransformedDistribution(
        base, tfb.Chain(list(reversed(steps))) if steps else tfb.Identity())

  def _sample_posterior(self, loc, log_scale, flow_params, noise):
    """`z_K` and `log q_K(z_K | x)` for standard-normal `noise` `[..., N, D]`."""
    z0, log_q0 = diagonal_normal_sample(loc, log_scale, noise)
    z, log_det = self._flow_forward(flow_params, z0)
    return z, log_q0 - log_det

  def _flow_forward(self, flow_params, z):
    """The flow applied to `z` and its summed log-det (the chain of
    `flow_bijectors`, computed by `flow_forward_and_log_det`)."""
    if flow_params is None:
      return z, tf.zeros(tf.shape(z)[:-1], z.dtype)
    return flow_forward_and_log_det(self.flow, flow_params, self.latent_dim, z)

  # The generative model ----------------------------------------------------

  def decoder_logits(self, latents):
    """Bernoulli logits `[..., H, W, C]` of `p(x | z)`."""
    h = latents
    for layer in self.decoder_layers:
      h = layer(h)
    logits = self.logits_head(h)
    return tf.reshape(logits,
                      tf.concat([tf.shape(logits)[:-1], self.image_shape], 0))

  def _log_likelihood_and_prior(self, images, latents):
    """`log p(x | z)` and `log p(z)` for `latents` `[..., N, D]`."""
    logits = self.decoder_logits(latents)
    # Bernoulli log-likelihood, as tfd.Bernoulli(logits).log_prob, summed.
    log_likelihood = -tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.broadcast_to(images, tf.shape(logits)), logits=logits),
        axis=[-3, -2, -1])
    log_prior = -tf.reduce_sum(0.5 * tf.square(latents) + HALF_LOG_2PI,
                               axis=-1)
    return log_likelihood, log_prior

  # Objectives --------------------------------------------------------------

  def elbo_terms(self, images, noise):
    """Per-example `(log p(x|z_K), log p(z_K), log q_K(z_K|x))`, one sample
    each, from standard-normal `noise` `[N, D]`."""
    return self._elbo_terms(self._check_images(images), noise)

  def _elbo_terms(self, images, noise):
    """`elbo_terms` of checked float32 images."""
    loc, log_scale, flow_params = self._encoder(images)
    z, log_q = self._sample_posterior(loc, log_scale, flow_params, noise)
    log_likelihood, log_prior = self._log_likelihood_and_prior(images, z)
    return log_likelihood, log_prior, log_q

  def elbo(self, images, seed=0):
    """Single-sample ELBO per example `[N]`, nats; stateless in `seed`."""
    images = tf.convert_to_tensor(images)  # elbo_terms checks them
    noise = tf.random.stateless_normal(
        [tf.shape(images)[0], self.latent_dim], seed=[seed, 0])
    log_likelihood, log_prior, log_q = self.elbo_terms(images, noise)
    return log_likelihood + log_prior - log_q

  def log_importance_weights(self, images, num_samples, seed=0):
    """`log p(x|z) + log p(z) - log q_K(z|x)` for `num_samples` posterior
    samples of each image: `[num_samples, N]`. Their log-mean-exp is the
    importance-sampled estimate of `log p(x)`; see
    `tfp_flows.evaluation.importance_log_likelihood`."""
    images = self._check_images(images)
    loc, log_scale, flow_params = self._encoder(images)
    noise = tf.random.stateless_normal(
        [num_samples, tf.shape(images)[0], self.latent_dim], seed=[seed, 1])
    z, log_q = self._sample_posterior(loc, log_scale, flow_params, noise)
    log_likelihood, log_prior = self._log_likelihood_and_prior(images, z)
    return log_likelihood + log_prior - log_q

  def beta(self, step):
    """The annealing schedule `min(1, initial_beta + step / annealing_steps)`."""
    return annealed_beta(step, self.initial_beta, self.annealing_steps)

  def call(self, images, training=False):
    return self.elbo(images)

  # Training ----------------------------------------------------------------

  _maybe_symbolic_build = skip_symbolic_build

  @property
  def metrics(self):
    return [self.loss_tracker, self.elbo_tracker, self.reconstruction_tracker,
            self.kl_tracker, self.beta_tracker]

  def _step_noise(self, images, step):
    """The standard-normal noise of `z_0` in training step `step` (-1:
    evaluation), drawn for the global batch (`global_batch_noise`)."""
    return global_batch_noise(tf.random.stateless_normal, tf.shape(images)[0],
                              [self.latent_dim], step_seed(self.seed, step))

  def _free_energy_terms(self, images, beta, step, noise):
    """Per-example free energy `F_t`, `log p(x|z_K)` and KL term of checked
    float32 images in step `step`, with `noise = _step_noise(images, step)`."""
    log_likelihood, log_prior, log_q = self._elbo_terms(images, noise)
    free_energy = log_q - beta * (log_likelihood + log_prior)
    return free_energy, log_likelihood, log_q - log_prior

  def _update_metrics(self, terms, beta, applied=True):
    """Adds per-example terms to the metrics; nothing for a step that was
    not applied (its values may be NaN, which would poison the means)."""
    weight = tf.cast(applied, tf.float32)
    free_energy, log_likelihood, kl = (tf.where(applied, t, 0.) for t in terms)
    for tracker, value in ((self.loss_tracker, free_energy),
                           (self.elbo_tracker, log_likelihood - kl),
                           (self.reconstruction_tracker, log_likelihood),
                           (self.kl_tracker, kl), (self.beta_tracker, beta)):
      tracker.update_state(value, sample_weight=weight)

  def compile(self, *args, jit_compile="auto", **kwargs):
    """Keras' `compile`; `jit_compile` XLA-compiles the training step's
    arithmetic but not its input checks.

    Keras' own `jit_compile` compiles all of `train_step`, and XLA drops
    `tf.debugging.Assert`: non-binary or NaN images would then train
    silently. So Keras compiles nothing here, and `train_step` checks the
    images in TensorFlow, then runs the free energy, its gradient and the
    optimizer update as one XLA function. `"auto"` (the default) means XLA
    unless under a distribution strategy (whose `merge_call`s XLA cannot
    hold; Keras' "auto" turns it off there too) or with `run_eagerly`; on
    CPUs as well, where Keras' "auto" would not: the step is dominated by
    the flow's K small elementwise steps, which XLA fuses (training speed in
    docs/RESULTS.md, `benchmarks/bench_flow_vae.py`).
    """
    super().compile(*args, jit_compile=False, **kwargs)
    # What the user asked for, so that a saved model compiles as this one.
    self._compile_config.config["jit_compile"] = jit_compile
    self._jit_compile_arithmetic = (
        not self.run_eagerly and (jit_compile == "auto" or bool(jit_compile)))

  def compile_from_config(self, config):
    # Keras does not call an overridden `compile` when loading a model.
    self.compile(**keras.saving.deserialize_keras_object(config))
    build_optimizer(self)

  def train_step(self, data):
    # Outside XLA: XLA would drop the check's Assert, and its stateless
    # random numbers differ from TensorFlow's for the same seed (a run's
    # noise would then depend on the compiler).
    images = self._check_images(images_of(data))
    noise = self._step_noise(images, self.optimizer.iterations)
    step_arithmetic = self._train_step_arithmetic
    if (getattr(self, "_jit_compile_arithmetic", False) and
        not tf.distribute.has_strategy()):
      # Created per trace of `train_step`, not kept on the model, so no
      # SavedModel export picks up an XLA function.
      step_arithmetic = tf.function(step_arithmetic, jit_compile=True)
    return step_arithmetic(images, noise)

  def _train_step_arithmetic(self, images, noise):
    step = self.optimizer.iterations
    beta = self.beta(step)
    with tf.GradientTape() as tape:
      terms = self._free_energy_terms(images, beta, step, noise)
      loss = tf.reduce_mean(terms[0])
    applied = minimize(self, tape, loss)
    self._update_metrics(terms, beta, applied)
    return metric_logs(self.metrics, skipped_steps=self.skipped_steps.value)

  def test_step(self, data):
    # Step -1: evaluation noise that no training step draws.
    beta = tf.constant(1.)
    images = self._check_images(images_of(data))
    noise = self._step_noise(images, -1)
    self._update_metrics(self._free_energy_terms(images, beta, -1, noise),
                         beta)
    return metric_logs(self.metrics)

  def fit(self, x=None, *args, non_finite="stop", **kwargs):
    """Keras' `fit`. `non_finite`: what to do after a step with a non-finite
    loss or gradient (never applied to the weights): `"stop"` raises
    `tfp_flows.callbacks.NonFiniteLossError`, `"skip"` goes on and counts it
    (`skipped_steps` in the logs)."""
    kwargs = prepare_fit(self, x, kwargs, non_finite)
    return super().fit(x, *args, **kwargs)

  # Encoding, decoding, sampling --------------------------------------------

  def encode(self, images, seed=0):
    """`(mean, latents)` `[N, D]`: the flow applied to the mean of `q_0`, and
    one sample of `z_K ~ q_K(z | x)` (stateless in `seed`)."""
    loc, log_scale, flow_params = self.posterior_parameters(images)
    mean, _ = self._flow_forward(flow_params, loc)
    noise = tf.random.stateless_normal(tf.shape(loc), seed=[seed, 2])
    latents, _ = self._sample_posterior(loc, log_scale, flow_params, noise)
    return mean, latents

  def decode(self, latents):
    """Pixel probabilities `[N, H, W, C]` of `p(x | z)`."""
    return tf.sigmoid(self.decoder_logits(
        checked_latents(latents, self.latent_dim, "FlowVAE")))

  def sample(self, num_samples, seed=None):
    """Pixel probabilities of `num_samples` images decoded from the prior."""
    if isinstance(num_samples, int) and num_samples < 0:
      raise ValueError(f"FlowVAE.sample: num_samples must be >= 0; got "
                       f"{num_samples}.")
    shape = [num_samples, self.latent_dim]
    latents = (tf.random.normal(shape) if seed is None else
               tf.random.stateless_normal(shape, seed=[seed, 3]))
    return self.decode(latents)
