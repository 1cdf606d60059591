"""FlowVAE: the free energy's terms, annealing, training, weights and saving."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import data
from tfp_flows.bijectors import family_names
from tfp_flows.evaluation import importance_log_likelihood
from tfp_flows.models import FlowVAE
from tfp_flows.models.flow_vae import _dropout

tfd = tfp.distributions


def _synthetic_digits(n, seed=0):
  """Binary 28x28 images with a few thick strokes: stand-ins for digits."""
  rng = np.random.default_rng(seed)
  images = np.zeros((n, 28, 28, 1), np.uint8)
  for image in images:
    for _ in range(3):
      r, c = rng.integers(4, 20, size=2)
      if rng.random() < 0.5:
        image[r:r + 3, c:c + 8] = 1
      else:
        image[r:r + 8, c:c + 3] = 1
  return images


@pytest.fixture(scope="module")
def digits(shared_data_dir, tmp_path_factory):
  """Binarized MNIST through the user's loader when ../shared/data is here,
  else synthetic binary digits."""
  if shared_data_dir is None:
    return {"train": _synthetic_digits(2000), "test": _synthetic_digits(200, 1)}
  return data.load_binarized_mnist(shared_data_dir / "binarized_mnist",
                                   tmp_path_factory.mktemp("tfds"))


def _small_model(flow="planar", **kwargs):
  kwargs = {"latent_dim": 4, "num_flows": 3, "hidden_units": (64,), **kwargs}
  return FlowVAE(flow=flow, **kwargs)


@pytest.mark.parametrize("flow", family_names() + ("none",))
def test_trainable_variables_are_every_weight_and_all_get_gradients(flow):
  model = _small_model(flow)
  trainable = {id(v) for v in model.trainable_variables}
  kernels = [layer.kernel for layer in model.encoder_layers +
             model.decoder_layers + [model.posterior_head, model.logits_head]]
  if flow != "none":
    kernels.append(model.flow_head.kernel)
  assert {id(k) for k in kernels} <= trainable
  # Two weights (kernel, bias) per Dense layer and nothing else trainable.
  assert len(model.trainable_variables) == 2 * len(kernels)
  images = _synthetic_digits(8)
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(model.elbo(images))
  gradients = tape.gradient(loss, model.trainable_variables)
  for variable, gradient in zip(model.trainable_variables, gradients,
                                strict=True):
    assert gradient is not None, variable.path
    assert np.all(np.isfinite(gradient)), variable.path
  # The flow parameters matter: their gradient is not zero.
  if flow != "none":
    flow_gradient = gradients[[id(v) for v in model.trainable_variables].index(
        id(model.flow_head.kernel))]
    assert np.abs(flow_gradient).max() > 0


@pytest.mark.parametrize("flow", family_names())
def test_forward_log_q_matches_tfp_transformed_distribution(flow):
  """log q_K from the forward pass equals TFP's log_prob through the
  inverse of the same flow: the log-dets are chained correctly."""
  model = _small_model(flow)
  images = _synthetic_digits(5)
  loc, log_scale, flow_params = model.posterior_parameters(images)
  noise = tf.random.stateless_normal(loc.shape, seed=[3, 4])
  z, log_q = model._sample_posterior(loc, log_scale, flow_params, noise)
  log_q_tfp = model.posterior(images).log_prob(tf.identity(z))
  np.testing.assert_allclose(log_q, log_q_tfp, rtol=1e-4, atol=1e-3)


def test_diagonal_elbo_matches_closed_form_kl():
  """For flow="none", E_q[log q - log p(z)] is KL(N(mu, s^2) || N(0, 1))."""
  model = _small_model("none")
  images = _synthetic_digits(4)
  loc, log_scale, _ = model.posterior_parameters(images)
  noise = tf.random.stateless_normal([20000, 4, 4], seed=[1, 2])
  z, log_q = model._sample_posterior(loc, log_scale, None, noise)
  _, log_prior = model._log_likelihood_and_prior(
      tf.cast(images, tf.float32), z)
  mc_kl = tf.reduce_mean(log_q - log_prior, axis=0)
  scale_sq = tf.exp(2. * log_scale)
  exact_kl = 0.5 * tf.reduce_sum(
      scale_sq + tf.square(loc) - 1. - 2. * log_scale, axis=-1)
  np.testing.assert_allclose(mc_kl, exact_kl, atol=0.05)


def test_annealing_schedule_and_beta_metric():
  model = _small_model(initial_beta=0.01, annealing_steps=10_000)
  np.testing.assert_allclose(
      model.beta(tf.constant([0, 5000, 9900, 10_000, 50_000])),
      [0.01, 0.51, 1.0, 1.0, 1.0], rtol=1e-6)
  assert float(_small_model(annealing_steps=0).beta(3)) == 1.0
  # In fit, beta follows the optimizer's step: the mean over steps 0..9.
  model = _small_model(annealing_steps=100)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  history = model.fit(_synthetic_digits(100), batch_size=10, epochs=1,
                      verbose=0)
  np.testing.assert_allclose(history.history["beta"][0],
                             np.mean(0.01 + np.arange(10) / 100), rtol=1e-5)
  # test_step scores the plain ELBO: loss == -elbo.
  result = model.evaluate(_synthetic_digits(20), batch_size=10, verbose=0,
                          return_dict=True)
  assert result["beta"] == 1.0
  np.testing.assert_allclose(result["loss"], -result["elbo"], rtol=1e-5)
  np.testing.assert_allclose(result["elbo"],
                             result["reconstruction"] - result["kl"], rtol=1e-5)


def test_short_fit_lowers_the_loss_on_digits(digits):
  model = FlowVAE(latent_dim=8, flow="planar", num_flows=4,
                  hidden_units=(128,), annealing_steps=0)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  train = data.image_dataset(digits["train"][:2000], 50, shuffle=True)
  before = -float(np.mean(model.elbo(digits["test"][:200])))
  history = model.fit(train, epochs=3, verbose=0)
  after = -float(np.mean(model.elbo(digits["test"][:200])))
  assert history.history["loss"][-1] < history.history["loss"][0]
  assert after < before - 100, (before, after)
  assert np.isfinite(after)


def test_importance_log_likelihood_bounds_the_elbo(digits):
  model = FlowVAE(latent_dim=8, flow="planar", num_flows=4,
                  hidden_units=(128,), annealing_steps=0)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  model.fit(data.image_dataset(digits["train"][:2000], 50, shuffle=True),
            epochs=2, verbose=0)
  test = digits["test"][:64]
  elbo = np.mean([model.elbo(test, seed=s).numpy() for s in range(20)], 0)
  log_likelihood = importance_log_likelihood(
      model, test, num_samples=200, batch_size=32, max_rows=1000,
      progress=False)
  assert log_likelihood.shape == (64,) and np.all(np.isfinite(log_likelihood))
  assert log_likelihood.mean() > elbo.mean()
  # Deterministic in its seed.
  again = importance_log_likelihood(model, test, num_samples=200,
                                    batch_size=32, max_rows=1000,
                                    progress=False)
  np.testing.assert_array_equal(log_likelihood, again)
  # A tighter bound with more samples: E[log mean of S weights] grows with S
  # (Burda et al. 2016), so over 64 digits 10 samples score clearly lower.
  fewer = importance_log_likelihood(model, test, num_samples=10,
                                    batch_size=32, max_rows=1000,
                                    progress=False)
  assert fewer.mean() < log_likelihood.mean(), (fewer.mean(),
                                                log_likelihood.mean())


def test_importance_log_likelihood_matches_quadrature_in_one_dimension():
  """With a 1-D latent, p(x) = int p(x|z) N(z) dz by quadrature on a grid.

  Two checks against it: the importance weights integrate exactly against
  q_0 (a change of variables through the flow: checks log q_K), and the
  importance-sampled estimate converges to it."""
  keras.utils.set_random_seed(0)
  model = FlowVAE(latent_dim=1, flow="planar", num_flows=2,
                  hidden_units=(16,), image_shape=(4, 4, 1))
  images = (np.random.default_rng(0).random((6, 4, 4, 1)) > 0.5).astype(
      np.uint8)
  x = tf.cast(images, tf.float32)
  grid = np.linspace(-12., 12., 20001, dtype=np.float32)[:, None, None]
  points = tf.broadcast_to(grid, [20001, 6, 1])
  log_likelihood, log_prior = model._log_likelihood_and_prior(x, points)
  log_joint = (log_likelihood + log_prior).numpy().astype(np.float64)
  exact = np.log(np.trapezoid(np.exp(log_joint), grid[:, 0, 0], axis=0))

  loc, log_scale, flow_params = model.posterior_parameters(x)
  z, log_q = model._sample_posterior(loc, log_scale, flow_params, points)
  log_likelihood, log_prior = model._log_likelihood_and_prior(x, z)
  log_weights = (log_likelihood + log_prior - log_q).numpy().astype(np.float64)
  standard_normal = np.exp(-0.5 * grid[:, :, 0]**2) / np.sqrt(2. * np.pi)
  np.testing.assert_allclose(
      np.log(np.trapezoid(np.exp(log_weights) * standard_normal,
                          grid[:, 0, 0], axis=0)), exact, atol=1e-5)

  estimate = importance_log_likelihood(model, images, num_samples=200_000,
                                       progress=False)
  np.testing.assert_allclose(estimate, exact, atol=0.02)


def test_save_load_round_trip_gives_the_same_elbo(tmp_path):
  model = _small_model("planar")
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  model.fit(_synthetic_digits(40), batch_size=20, epochs=1, verbose=0)
  images = _synthetic_digits(6, seed=3)
  path = tmp_path / "vae.keras"
  model.save(path)
  restored = keras.models.load_model(path)
  assert isinstance(restored, FlowVAE) and restored.flow == "planar"
  np.testing.assert_array_equal(model.elbo(images, seed=7),
                                restored.elbo(images, seed=7))
  for a, b in zip(model.trainable_variables, restored.trainable_variables,
                  strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flow", family_names())
def test_every_example_starts_from_the_same_near_identity_flow(flow):
  model = _small_model(flow, latent_dim=6)
  images = _synthetic_digits(5, seed=2)
  _, _, flow_params = model.posterior_parameters(images)
  np.testing.assert_array_equal(flow_params, tf.broadcast_to(
      flow_params[:1], tf.shape(flow_params)))
  z0 = tf.random.stateless_normal([5, 6], seed=[1, 2])
  z, log_det = model._flow_forward(flow_params, z0)
  if flow == "radial":  # beta = -alpha + softplus(0) = 0: the identity
    np.testing.assert_allclose(z, z0, atol=1e-6)
  else:  # shears: planar z + v tanh(w^T z), ||v|| ~ 0.1 sqrt(D); Sylvester
    # z + Q R1 tanh(R2 Q^T z) with strictly upper R1, entries ~ 0.1 / sqrt(M)
    assert np.all(np.linalg.norm(z - z0, axis=-1) <
                  model.num_flows * 0.2 * np.sqrt(6)), z - z0
  np.testing.assert_allclose(log_det, 0., atol=1e-5)


def test_flow_head_lr_multiplier_scales_how_fast_the_flow_moves():
  """One Adam step from the same weights (zero flow kernel, so both models
  compute the same loss): Adam moves every kernel weight by
  `learning_rate`, so the kernel the head computes with, read off its
  outputs, moves `multiplier` times as far. (Adam's epsilon is made
  negligible: this small model's kernel gradients are about 1e-7, the
  default epsilon.)"""
  images = _synthetic_digits(20, seed=3)
  moves = {}
  for multiplier in (1., 0.1):
    model = _small_model("planar", flow_head_lr_multiplier=multiplier)
    model.set_weights(_small_model("planar").get_weights())
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-20),
                  jit_compile=False)
    width = model.flow_head.kernel.shape[0]
    probes = np.concatenate([np.eye(width), np.zeros([1, width])])

    def effective_kernel(head=model.flow_head):
      outputs = head(probes).numpy()
      return outputs[:-1] - outputs[-1]

    before = effective_kernel()
    model.fit(images, batch_size=20, epochs=1, verbose=0, shuffle=False)
    moves[multiplier] = effective_kernel() - before
  assert np.all(moves[1.] != 0.)
  np.testing.assert_allclose(np.abs(moves[0.1]), 0.1 * np.abs(moves[1.]),
                             rtol=1e-3)


def test_models_saved_before_the_lr_multiplier_load_with_a_plain_head():
  config = _small_model("planar", flow_head_lr_multiplier=0.5).get_config()
  assert config.pop("flow_head_lr_multiplier") == 0.5
  assert FlowVAE.from_config(config).flow_head_lr_multiplier == 1.


def test_save_load_round_trip_keeps_compilation(tmp_path):
  """The loaded model is compiled as the saved one (FlowVAE's own `compile`
  is not one Keras calls on loading by itself) and trains on from the saved
  optimizer state."""
  model = _small_model("planar")
  model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
  model.fit(_synthetic_digits(40), batch_size=20, epochs=1, verbose=0)
  path = tmp_path / "vae.keras"
  model.save(path)
  restored = keras.models.load_model(path)
  assert restored.get_compile_config()["jit_compile"] is False
  assert int(restored.optimizer.iterations.numpy()) == 2
  for a, b in zip(model.optimizer.variables, restored.optimizer.variables,
                  strict=True):
    np.testing.assert_array_equal(a, b)
  images = _synthetic_digits(20, seed=4)
  model.fit(images, batch_size=20, epochs=1, verbose=0, shuffle=False)
  restored.fit(images, batch_size=20, epochs=1, verbose=0, shuffle=False)
  for a, b in zip(model.trainable_variables, restored.trainable_variables,
                  strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6)


# The Sylvester families' XLA steps take 16-38 s each to compile on 2 cores:
# they run in the slow suite (CI runs both).
@pytest.mark.parametrize("flow", [
    pytest.param(flow, marks=[pytest.mark.slow] * flow.startswith("sylvester"))
    for flow in family_names() + ("none",)])
def test_xla_training_step_is_the_graph_step(flow):
  """`jit_compile=True` compiles the step's arithmetic only: the same noise
  (drawn outside XLA, whose stateless random numbers differ from
  TensorFlow's), so the same weights after training up to rounding."""
  images = _synthetic_digits(64, seed=5)
  weights, logs = {}, {}
  for jit_compile in (False, True):
    keras.utils.set_random_seed(0)
    model = _small_model(flow)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  jit_compile=jit_compile)
    history = model.fit(images, batch_size=16, epochs=2, verbose=0,
                        shuffle=False)
    weights[jit_compile] = [v.numpy() for v in model.trainable_variables]
    logs[jit_compile] = history.history
  for a, b in zip(weights[False], weights[True], strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4)
  for name in ("loss", "elbo", "kl", "beta"):
    np.testing.assert_allclose(logs[False][name], logs[True][name],
                               rtol=1e-4, atol=1e-3)


class _BatchEnds(keras.callbacks.Callback):
  """The `batch` of every `on_train_batch_end` call."""

  def __init__(self):
    super().__init__()
    self.batches = []

  def on_train_batch_end(self, batch, logs=None):
    self.batches.append(batch)


@pytest.mark.parametrize("steps_per_execution", [4, 3])
def test_steps_per_execution_trains_the_same_steps(steps_per_execution):
  """Keras' `steps_per_execution` runs groups of steps per call: the same
  steps, noise and weights as one step per call (the noise's seed is the
  optimizer's step, not the call), callbacks once per group. With 3, each
  epoch's 4 batches run as a group of 3 and one of 1 (the data ends it)."""
  images = _synthetic_digits(64, seed=6)
  weights, logs, batch_ends = {}, {}, {}
  for group in (1, steps_per_execution):
    keras.utils.set_random_seed(0)
    model = _small_model("planar")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  steps_per_execution=group)
    batch_ends[group] = _BatchEnds()
    history = model.fit(data.image_dataset(images, 16), epochs=2, verbose=0,
                        callbacks=[batch_ends[group]])
    assert int(model.optimizer.iterations.numpy()) == 8
    weights[group] = [v.numpy() for v in model.trainable_variables]
    logs[group] = history.history
  for a, b in zip(weights[1], weights[steps_per_execution], strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for name in ("loss", "elbo", "kl", "beta"):
    np.testing.assert_allclose(logs[1][name], logs[steps_per_execution][name],
                               rtol=1e-5, atol=1e-5)
  assert batch_ends[1].batches == [0, 1, 2, 3] * 2
  assert batch_ends[steps_per_execution].batches == (
      [3] * 2 if steps_per_execution == 4 else [2, 5] * 2)


def test_steps_per_epoch_that_keras_would_round_up_is_refused():
  model = _small_model("planar")
  model.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=4)
  repeated = data.image_dataset(_synthetic_digits(32), 16).repeat()
  with pytest.raises(ValueError, match=r"steps_per_epoch=6 is not a multiple "
                                       r"of compile\(steps_per_execution=4\)"
                                       r".*8 steps"):
    model.fit(repeated, steps_per_epoch=6, epochs=1, verbose=0)
  with pytest.raises(ValueError, match="validation_steps=3"):
    model.fit(repeated, steps_per_epoch=4, validation_data=repeated,
              validation_steps=3, epochs=1, verbose=0)
  assert int(model.optimizer.iterations.numpy()) == 0
  model.fit(repeated, steps_per_epoch=8, epochs=2, verbose=0)
  assert int(model.optimizer.iterations.numpy()) == 16


def test_xla_training_step_still_checks_its_images():
  """XLA drops `tf.debugging.Assert`; the checks run before the XLA part."""
  model = _small_model("planar")
  model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
  images = np.full((8, 28, 28, 1), 0.5, np.float32)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="FlowVAE expects binary images"):
    model.fit(images, batch_size=8, epochs=1, verbose=0)


def test_encode_decode_sample_shapes():
  model = _small_model("radial")
  mean, latents = model.encode(_synthetic_digits(3))
  assert mean.shape == latents.shape == (3, 4)
  probs = model.decode(latents)
  assert probs.shape == (3, 28, 28, 1)
  assert np.all((probs.numpy() >= 0) & (probs.numpy() <= 1))
  assert model.sample(5, seed=1).shape == (5, 28, 28, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"flow": "maf"}, "flow must be one of"),
    ({"latent_dim": 0}, "latent_dim must be >= 1"),
    ({"hidden_units": ()}, "hidden_units"),
    ({"num_flows": 0}, "num_flows must be >= 1"),
    ({"initial_beta": 0.}, "initial_beta"),
    ({"flow_head_lr_multiplier": 0.}, "flow_head_lr_multiplier"),
    ({"flow_head_lr_multiplier": math.inf}, "flow_head_lr_multiplier"),
    ({"dropout": 1.}, "dropout must be in"),
    ({"dropout": -0.1}, "dropout must be in"),
])
def test_constructor_fails_fast(kwargs, message):
  with pytest.raises(ValueError, match=message):
    FlowVAE(**kwargs)


def test_wrong_image_shape_is_named():
  model = _small_model()
  with pytest.raises(ValueError, match=r"images must have shape \[N, 28, 28, 1\]"):
    model.elbo(np.zeros((2, 784), np.float32))
  with pytest.raises(TypeError, match="dtype string"):
    model.elbo(tf.fill([1, 28, 28, 1], "a"))


def test_importance_log_likelihood_rejects_empty_input():
  with pytest.raises(ValueError, match="empty"):
    importance_log_likelihood(_small_model(), np.zeros((0, 28, 28, 1)))
  assert math.isfinite(float(importance_log_likelihood(
      _small_model(), _synthetic_digits(1), num_samples=3,
      progress=False)[0]))


# Dropout ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_drops_its_rate_of_units_and_rescales_the_rest(rate, dtype):
  noise = tf.random.stateless_normal([400, 500], seed=[1, 2])
  dropped = _dropout(tf.ones([400, 500], dtype), noise, rate).numpy()
  assert dropped.dtype == dtype.as_numpy_dtype
  # 200,000 units: the fraction's standard deviation is under 0.0012.
  assert abs(np.mean(dropped == 0) - rate) < 0.005
  np.testing.assert_allclose(dropped[dropped != 0], 1. / (1. - rate),
                             rtol=1e-3)


def test_no_dropout_draws_the_noise_it_always_did():
  images = _synthetic_digits(4)
  plain, with_dropout = _small_model(), _small_model(dropout=0.3)
  assert plain.step_noise(images, 0).shape == (4, 4)
  noise = with_dropout.step_noise(images, 0)
  # z_0's noise, then one noise per hidden unit of the encoder and decoder.
  assert noise.shape == (4, 4 + 2 * 64)


def test_dropout_acts_in_training_only():
  images = tf.cast(_synthetic_digits(16), tf.float32)
  model = _small_model(dropout=0.5)
  twin = _small_model()  # the same weights, no dropout
  twin.set_weights(model.get_weights())
  for m in (model, twin):
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
  noise = model.step_noise(images, 3)
  train_loss, _ = model.objective(images, noise, training=True)
  eval_loss, _ = model.objective(images, noise, training=False)
  twin_loss, _ = twin.objective(images, noise[:, :4], training=False)
  twin_train_loss, _ = twin.objective(images, noise[:, :4], training=True)
  np.testing.assert_allclose(eval_loss, twin_loss, rtol=1e-6)
  # Half the hidden units gone moves the free energy by far more than
  # rounding (measured: 0.012 nats on these untrained weights, whose logits
  # are small; float32 rounding of the ~540-nat mean is under 1e-4).
  assert abs(float(train_loss) - float(twin_train_loss)) > 2e-3
  np.testing.assert_allclose(model.elbo(images, seed=4),
                             twin.elbo(images, seed=4), rtol=1e-6)
  np.testing.assert_allclose(
      model.log_importance_weights(images, 3, seed=4),
      twin.log_importance_weights(images, 3, seed=4), rtol=1e-6)
  np.testing.assert_allclose(model.decode(tf.zeros([2, 4])),
                             twin.decode(tf.zeros([2, 4])), rtol=1e-6)


def test_dropout_training_is_stateless_in_the_step():
  """The masks are part of the step's noise, drawn outside XLA from the
  step number: the XLA and graph steps train the same weights, and Keras'
  seed generator plays no part."""
  images = _synthetic_digits(64, seed=5)
  weights = {}
  for jit_compile, keras_seed in ((False, 0), (True, 1)):
    keras.utils.set_random_seed(keras_seed)
    model = _small_model(dropout=0.3, seed=0)
    if keras_seed:  # the same initial weights as the first model's
      model.set_weights(initial)
    else:
      initial = model.get_weights()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  jit_compile=jit_compile)
    model.fit(images, batch_size=16, epochs=2, verbose=0, shuffle=False)
    weights[jit_compile] = [v.numpy() for v in model.trainable_variables]
  for a, b in zip(weights[False], weights[True], strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_save_load_keeps_dropout_and_older_models_load_without(tmp_path):
  model = _small_model(dropout=0.2)
  path = tmp_path / "vae.keras"
  model.save(path)
  assert keras.models.load_model(path).dropout == 0.2
  config = model.get_config()
  del config["dropout"]  # as saved before the option existed
  assert FlowVAE.from_config(config).dropout == 0.
