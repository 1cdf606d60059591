"""A VAE whose approximate posterior is a normalizing flow (Rezende &
Mohamed 2015, Sec. 6.2: planar, radial; van den Berg et al. 2018:
Sylvester), as a Keras 3 model with a custom `train_step`."""

import functools
import math
import statistics

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import export
from tfp_flows.bijectors.families import family_names, get_family
from tfp_flows.models.base import FlowModel
from tfp_flows.models.free_energy import (annealed_beta,
                                          diagonal_normal_sample,
                                          standard_normal_log_prob)
from tfp_flows.validation import check_values, checked_latents

tfb = tfp.bijectors
tfd = tfp.distributions

__all__ = ["FlowVAE"]


def _all_binary(images):
  """Whether every value of `images` is 0 or 1, in as few passes as the
  dtype allows: the check runs before every training step, and on a
  diagonal FlowVAE the two comparisons and the `and` of the general test
  took about a tenth of the step (benchmarks/profile_step.py). (On an
  empty batch the reductions give the dtype's extremes, which pass.)"""
  if images.dtype.is_unsigned:  # uint8 (TFDS binarized_mnist), ...: >= 0
    return tf.reduce_max(images) <= 1
  if images.dtype.is_integer:
    return ((tf.reduce_min(images) >= 0) &
            (tf.reduce_max(images) <= 1))
  # Floats: NaN fails `equal`, so this is no min/max test.
  return tf.reduce_all(_binary_mask(images))


def _binary_mask(images):
  """Elementwise: whether each value is 0 or 1 (False for NaN)."""
  return tf.equal(images, 0) | tf.equal(images, 1)


def _dropout(hidden, noise, rate):
  """Inverted dropout of `hidden` `[N, U]`, its mask from standard-normal
  `noise` `[N, U]`: a unit is dropped where `noise < Phi^-1(rate)`, which
  has probability `rate`; kept units are scaled by `1 / (1 - rate)`.

  Why not `keras.layers.Dropout`: its mask comes from a seed generator's
  state, so a resumed run, or one on several replicas, would drop other
  units than an uninterrupted single-device run. Here the mask is part of
  the training step's noise, which `FlowModel` draws statelessly from the
  step number, for the global batch."""
  threshold = statistics.NormalDist().inv_cdf(rate)  # rate > 0: finite
  kept = tf.cast(noise >= threshold, hidden.dtype)
  return hidden * kept * tf.cast(1. / (1. - rate), hidden.dtype)


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
class FlowVAE(FlowModel):
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
    flow: a flow family's name (`tfp_flows.bijectors.family_names()`:
      `"planar"`, `"radial"`, `"sylvester_householder"`,
      `"sylvester_orthogonal"`, `"sylvester_triangular"`) or `"none"` (a
      diagonal-Gaussian VAE).
    num_flows: `K`, flow steps (ignored for `"none"`).
    hidden_units: widths of the encoder's hidden layers; the decoder mirrors
      them.
    activation: of the hidden layers.
    image_shape: `(H, W, C)` of the binary images.
    initial_beta, annealing_steps: the annealing schedule; `annealing_steps=0`
      trains on the plain ELBO (`beta = 1` throughout). The default 10,000 is
      the paper's, for its 500,000 updates. At this machine's budgets 1,000
      trained better: 2.7-4.0 nats of test -log p(x) at 50,000 updates, 13
      nats of validation -ELBO at 10,000 (docs/RESULTS.md); it is
      examples/train_flow_vae.py's default.
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
    dropout: the rate of dropout after every hidden layer of the encoder
      and the decoder, in training only (evaluation, importance sampling,
      encoding and decoding use every unit). A regularizer against
      memorizing a fixed binarization (docs/RESULTS.md); 0 (the default)
      draws no extra noise, so training is what it was without the option.
  """

  metric_names = ("loss", "elbo", "reconstruction", "kl", "beta")
  # The step is dominated by the flow's K small elementwise steps, which XLA
  # fuses, on CPUs too (docs/RESULTS.md, benchmarks/bench_flow_vae.py).
  jit_compile_by_default = True

  def __init__(self, latent_dim=40, flow="planar", num_flows=10,
               hidden_units=(400, 400), activation="relu",
               image_shape=(28, 28, 1), initial_beta=0.01,
               annealing_steps=10_000, seed=0, flow_head_lr_multiplier=0.03,
               dropout=0., **kwargs):
    super().__init__(seed=seed, **kwargs)
    if flow != "none" and flow not in family_names():
      raise ValueError(f"FlowVAE: flow must be one of "
                       f"{family_names() + ('none',)}; got {flow!r}.")
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
    if not 0. <= dropout < 1.:
      raise ValueError(f"FlowVAE: dropout must be in [0, 1); got {dropout}.")
    if not 0. < initial_beta <= 1. or annealing_steps < 0:
      raise ValueError(
          f"FlowVAE: need 0 < initial_beta <= 1 and annealing_steps >= 0; got "
          f"{initial_beta} and {annealing_steps}.")
    self.latent_dim = int(latent_dim)
    self.flow = flow
    self.family = get_family(flow) if flow != "none" else None
    self.num_flows = int(num_flows) if self.family else 0
    self.hidden_units = hidden_units
    self.activation = activation
    self.image_shape = tuple(int(s) for s in image_shape)
    self.initial_beta = float(initial_beta)
    self.annealing_steps = int(annealing_steps)
    self.flow_head_lr_multiplier = float(flow_head_lr_multiplier)
    self.dropout = float(dropout)
    self.event_size = math.prod(self.image_shape)

    # The sublayers take the model's dtype policy (Keras does not pass a
    # model's `dtype=` on to the layers it creates).
    dense = functools.partial(keras.layers.Dense, dtype=self.dtype_policy)
    self.encoder_layers = [
        dense(units, activation=activation, name=f"encoder_{i}")
        for i, units in enumerate(hidden_units)]
    self.posterior_head = dense(2 * self.latent_dim, name="posterior_head")
    self.flow_head = None
    if self.num_flows:
      # Every example starts from the same flow, near the identity (zero
      # kernel, the family's `near_identity` as bias); the kernel learns how
      # the flow depends on x. Keras' default (Glorot) kernel instead starts
      # each example with its own random flow of O(1) parameters, whose
      # saturated tanh units fold z_0 into pieces.
      initial = tf.reshape(self.family.near_identity(
          self.num_flows, self.latent_dim, seed), [-1])
      self.flow_head = _ScaledKernelDense(
          self.num_flows * self.family.param_size(self.latent_dim),
          kernel_multiplier=self.flow_head_lr_multiplier,
          kernel_initializer="zeros",
          bias_initializer=keras.initializers.Constant(initial),
          dtype=self.dtype_policy, name="flow_head")
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
    self.built = True

  def get_config(self):
    return {**super().get_config(), "latent_dim": self.latent_dim,
            "flow": self.flow, "num_flows": self.num_flows,
            "hidden_units": self.hidden_units, "activation": self.activation,
            "image_shape": self.image_shape,
            "initial_beta": self.initial_beta,
            "annealing_steps": self.annealing_steps,
            "flow_head_lr_multiplier": self.flow_head_lr_multiplier,
            "dropout": self.dropout}

  @classmethod
  def from_config(cls, config):
    # Models saved before the option existed have a plain Dense flow head.
    return super().from_config({"flow_head_lr_multiplier": 1., **config})

  # Inputs ------------------------------------------------------------------

  def _check_images(self, images):
    """`[N, H, W, C]` binary images in `likelihood_dtype`, or an error saying
    what is wrong: shape and dtype statically, the 0/1 values at run time (a
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
    if images.dtype == tf.bool:
      return tf.cast(images, self.likelihood_dtype)
    return tf.cast(check_values(
        images, _all_binary(images),
        "FlowVAE expects binary images (pixel values 0 or 1); binarize them "
        "first (e.g. TFDS binarized_mnist)",
        lambda: tf.boolean_mask(images,
                                tf.logical_not(_binary_mask(images)))),
                   self.likelihood_dtype)

  # The posterior -----------------------------------------------------------

  def posterior_parameters(self, images):
    """`loc`, `log_scale` `[N, D]` of `q_0` and flow parameters `[N, K, P]`
    (`None` for `flow="none"`)."""
    return self._encoder(self._check_images(images))

  def _encoder(self, images, dropout_noise=()):
    """`posterior_parameters` of checked images, in `likelihood_dtype` (the
    networks may compute in 16 bits; the posterior's parameters do not);
    with `dropout_noise`, one `[N, units]` noise per hidden layer, dropout
    after each."""
    h = tf.reshape(images, [-1, self.event_size])
    for i, layer in enumerate(self.encoder_layers):
      h = layer(h)
      if dropout_noise:
        h = _dropout(h, dropout_noise[i], self.dropout)
    posterior = tf.cast(self.posterior_head(h), self.likelihood_dtype)
    loc, log_scale = tf.split(posterior, 2, axis=-1)
    flow_params = None
    if self.flow_head is not None:
      flow_params = tf.reshape(
          tf.cast(self.flow_head(h), self.likelihood_dtype),
          [-1, self.num_flows, self.family.param_size(self.latent_dim)])
    return loc, log_scale, flow_params

  def flow_bijectors(self, flow_params):
    """The posterior's flow steps, in the order applied to `z_0`."""
    if flow_params is None:
      return []
    return self.family.bijectors(flow_params, self.latent_dim)

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
    `flow_bijectors`, by the family's vectorized path)."""
    if flow_params is None:
      return z, tf.zeros(tf.shape(z)[:-1], z.dtype)
    return self.family.forward_and_log_det(flow_params, self.latent_dim, z)

  # The generative model ----------------------------------------------------

  def decoder_logits(self, latents):
    """Bernoulli logits `[..., H, W, C]` of `p(x | z)`, in
    `likelihood_dtype`."""
    return self._decoder_logits(latents)

  def _decoder_logits(self, latents, dropout_noise=()):
    """`decoder_logits`; with `dropout_noise` (as `_encoder`'s, `[N, units]`
    for latents `[N, D]`), dropout after each hidden layer."""
    h = latents
    for i, layer in enumerate(self.decoder_layers):
      h = layer(h)
      if dropout_noise:
        h = _dropout(h, dropout_noise[i], self.dropout)
    logits = tf.cast(self.logits_head(h), self.likelihood_dtype)
    return tf.reshape(logits,
                      tf.concat([tf.shape(logits)[:-1], self.image_shape], 0))

  def _log_likelihood_and_prior(self, images, latents, dropout_noise=()):
    """`log p(x | z)` and `log p(z)` for `latents` `[..., N, D]`."""
    logits = self._decoder_logits(latents, dropout_noise)
    # Bernoulli log-likelihood, as tfd.Bernoulli(logits).log_prob, summed.
    log_likelihood = -tf.reduce_sum(
        tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.broadcast_to(images, tf.shape(logits)), logits=logits),
        axis=[-3, -2, -1])
    return log_likelihood, standard_normal_log_prob(latents)

  # Objectives --------------------------------------------------------------

  def elbo_terms(self, images, noise):
    """Per-example `(log p(x|z_K), log p(z_K), log q_K(z_K|x))`, one sample
    each, from standard-normal `noise` `[N, D]`."""
    return self._elbo_terms(self._check_images(images), noise)

  def _elbo_terms(self, images, noise, dropout_noise=((), ())):
    """`elbo_terms` of checked float32 images; `dropout_noise`: the
    encoder's and the decoder's (`_split_noise`), or none: no dropout."""
    encoder_noise, decoder_noise = dropout_noise
    loc, log_scale, flow_params = self._encoder(images, encoder_noise)
    z, log_q = self._sample_posterior(loc, log_scale, flow_params, noise)
    log_likelihood, log_prior = self._log_likelihood_and_prior(
        images, z, decoder_noise)
    return log_likelihood, log_prior, log_q

  def elbo(self, images, seed=0):
    """Single-sample ELBO per example `[N]`, nats; stateless in `seed`."""
    images = tf.convert_to_tensor(images)  # elbo_terms checks them
    noise = tf.random.stateless_normal(
        [tf.shape(images)[0], self.latent_dim], seed=[seed, 0],
        dtype=self.likelihood_dtype)
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
        [num_samples, tf.shape(images)[0], self.latent_dim], seed=[seed, 1],
        dtype=self.likelihood_dtype)
    z, log_q = self._sample_posterior(loc, log_scale, flow_params, noise)
    log_likelihood, log_prior = self._log_likelihood_and_prior(images, z)
    return log_likelihood + log_prior - log_q

  def beta(self, step):
    """The annealing schedule `min(1, initial_beta + step / annealing_steps)`."""
    return annealed_beta(step, self.initial_beta, self.annealing_steps,
                         self.likelihood_dtype)

  def call(self, images, training=False):
    return self.elbo(images)

  # Training ----------------------------------------------------------------

  def check_batch(self, data):
    return self._check_images(super().check_batch(data))

  def noise_spec(self, images):
    # z_0's standard-normal noise, then the dropout masks' (`_split_noise`).
    return (tf.random.stateless_normal, tf.shape(images)[0],
            [self.latent_dim + self._dropout_noise_size])

  @property
  def _dropout_noise_size(self):
    return 2 * sum(self.hidden_units) if self.dropout else 0

  def _split_noise(self, noise):
    """A step's noise `[N, D + dropout units]`: `z_0`'s `[N, D]`, and the
    encoder's and the decoder's dropout noise, one `[N, units]` a hidden
    layer (empty without dropout)."""
    if not self._dropout_noise_size:
      return noise, ((), ())
    widths = ([self.latent_dim] + list(self.hidden_units)
              + list(reversed(self.hidden_units)))
    parts = tf.split(noise, widths, axis=-1)
    layers = len(self.hidden_units)
    return parts[0], (tuple(parts[1:1 + layers]), tuple(parts[1 + layers:]))

  def free_energy_terms(self, images, noise, beta, training=False):
    """Per-example free energy `F_t` at inverse temperature `beta`,
    `log p(x|z_K)` and the KL term `log q_K(z_K|x) - log p(z_K)` of checked
    float32 images, one sample each from standard-normal `noise` (a step's,
    `noise_spec`); with `training`, dropout as the model has it."""
    noise, dropout_noise = self._split_noise(noise)
    log_likelihood, log_prior, log_q = self._elbo_terms(
        images, noise, dropout_noise if training else ((), ()))
    free_energy = log_q - beta * (log_likelihood + log_prior)
    return free_energy, log_likelihood, log_q - log_prior

  def objective(self, images, noise, training):
    # Annealed in training; the plain negative ELBO (beta = 1) in evaluation.
    beta = (self.beta(self.optimizer.iterations) if training
            else tf.constant(1., self.likelihood_dtype))
    free_energy, log_likelihood, kl = self.free_energy_terms(
        images, noise, beta, training=training)
    return tf.reduce_mean(free_energy), {
        "loss": free_energy, "elbo": log_likelihood - kl,
        "reconstruction": log_likelihood, "kl": kl, "beta": beta}

  # Encoding, decoding, sampling --------------------------------------------

  def encode(self, images, seed=0):
    """`(mean, latents)` `[N, D]`: the flow applied to the mean of `q_0`, and
    one sample of `z_K ~ q_K(z | x)` (stateless in `seed`)."""
    loc, log_scale, flow_params = self.posterior_parameters(images)
    mean, _ = self._flow_forward(flow_params, loc)
    noise = tf.random.stateless_normal(tf.shape(loc), seed=[seed, 2],
                                       dtype=loc.dtype)
    latents, _ = self._sample_posterior(loc, log_scale, flow_params, noise)
    return mean, latents

  def decode(self, latents):
    """Pixel probabilities `[N, H, W, C]` of `p(x | z)`."""
    return tf.sigmoid(self.decoder_logits(
        checked_latents(latents, self.latent_dim, "FlowVAE",
                        self.likelihood_dtype)))

  def sample(self, num_samples, seed=None):
    """Pixel probabilities of `num_samples` images decoded from the prior."""
    if isinstance(num_samples, int) and num_samples < 0:
      raise ValueError(f"FlowVAE.sample: num_samples must be >= 0; got "
                       f"{num_samples}.")
    shape = [num_samples, self.latent_dim]
    dtype = self.likelihood_dtype
    latents = (tf.random.normal(shape, dtype=dtype) if seed is None else
               tf.random.stateless_normal(shape, seed=[seed, 3], dtype=dtype))
    return self.decode(latents)

  # Serving -----------------------------------------------------------------

  def serving_endpoints(self):
    """TF Serving's signatures (`tfp_flows.export`): `elbo` (the default),
    `encode`, `decode`, `sample`; images uint8 `[N, H, W, C]` of 0/1,
    latents float32 `[N, D]`."""

    def binary(images):
      images = export.checked_shape(images, self.image_shape, "images")
      with tf.control_dependencies([tf.debugging.assert_less_equal(
          images, tf.constant(1, images.dtype),
          message="FlowVAE expects binary images (pixel values 0 or 1)")]):
        return tf.identity(images)

    def elbo(images):
      return {"elbo": self.elbo(binary(images))}

    def encode(images):
      mean, latents = self.encode(binary(images))
      return {"mean": mean, "latents": latents}

    def decode(latents):
      return {"probs": self.decode(
          export.checked_shape(latents, (self.latent_dim,), "latents"))}

    def sample(num_samples):
      probs = self.sample(export.checked_num_samples(num_samples))
      draws = tf.random.uniform(tf.shape(probs), dtype=probs.dtype) < probs
      return {"images": tf.cast(draws, tf.uint8), "probs": probs}

    images = export.images_spec(self.image_shape)
    return {
        "elbo": (elbo, [images]),
        "encode": (encode, [images]),
        "decode": (decode, [export.latents_spec(self.latent_dim)]),
        "sample": (sample, [tf.TensorSpec([], tf.int32, name="num_samples")]),
    }
