"""Glow's options (learned priors, additive coupling, class-conditional
priors), its training recipe (warm-up; the optional moving average) and the data
it trains on (labels, shifted digits)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from image_checks import equal_up_to_rounding
from tfp_flows import data, optimizers
from tfp_flows.callbacks import ema_weights
from tfp_flows.models import GLOW_RECIPE, GlowModel, PLAIN_GLOW

from test_glow import OPTIONS, _labels_for, _perturbed

SMALL = dict(image_shape=(8, 8, 1), num_levels=2, num_steps=2,
             hidden_channels=8)


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1),
                                              np.uint8)


def _model(name, n=16, **kwargs):
  model = GlowModel(**SMALL, **OPTIONS[name], **kwargs)
  images, labels = _images(n), _labels_for(model, n)
  _perturbed(model, images if labels is None else (images, labels), 0.1)
  return model, images, labels


@pytest.mark.parametrize("name", OPTIONS)
def test_encode_decode_round_trip_is_exact_on_8bit_images(name):
  model, images, labels = _model(name)
  latents = model.encode(images, labels)
  np.testing.assert_array_equal(model.decode(latents, labels).numpy(), images)


def _padded(model, images):
  border = (model.padding,) * 2
  return np.pad(images, ((0, 0), border, border, (0, 0)))


def _standard_normal_log_prob(z):
  return -0.5 * np.sum(z**2, -1) - 0.5 * z.shape[-1] * np.log(2 * np.pi)


@pytest.mark.parametrize("name", OPTIONS)
def test_log_prob_is_the_base_density_of_the_latents_plus_the_log_det(name):
  """`distribution_for(labels).log_prob` equals the base density of
  `encode`'s latents plus the flow's log-det, computed here by hand: the
  learned priors are inside the flow and every latent is standard normal,
  except with a top mixture, whose top latents' density is the mixture's,
  by numpy (log-sum-exp over the components) from the layer's weights."""
  model, images, labels = _model(name)
  x = tf.constant((_padded(model, images) + 0.5) / 256., tf.float32)
  flow = model.flow_for(labels)
  latents = flow.inverse(x)
  z = latents.numpy().astype(np.float64)
  top = model.top_mixture.event_size if model.top_mixture else 0
  base = _standard_normal_log_prob(z[:, :z.shape[1] - top])
  if top:
    logits, means, log_stds = (w.numpy().astype(np.float64) for w in (
        model.top_mixture.logits, model.top_mixture.means,
        model.top_mixture.log_stds))
    standardized = (z[:, None, -top:] - means) / np.exp(log_stds)
    per_component = (logits - np.logaddexp.reduce(logits)
                     + _standard_normal_log_prob(standardized)
                     - log_stds.sum(-1))
    base += np.logaddexp.reduce(per_component, axis=1)
  by_hand = base + flow.inverse_log_det_jacobian(
      tf.identity(x), event_ndims=3).numpy()
  # Absolute as well as relative: a sum of O(100) float32 terms (errors
  # up to 5e-5 nats) can itself be near 0.
  np.testing.assert_allclose(
      model.distribution_for(labels).log_prob(x).numpy(), by_hand,
      rtol=1e-5, atol=5e-4)
  np.testing.assert_allclose(model.encode(images, labels).numpy(),
                             latents.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", OPTIONS)
def test_save_and_load_keep_every_option_and_the_log_prob(name, tmp_path):
  model, images, labels = _model(name)
  model.save(tmp_path / "glow.keras")
  restored = keras.models.load_model(tmp_path / "glow.keras")
  for option in ("coupling", "hidden_initializer", "learned_prior",
                 "num_classes", "classification_weight", "preprocessing",
                 "conditional_flow", "padding", "top_mixture_components"):
    assert getattr(restored, option) == getattr(model, option)
  np.testing.assert_array_equal(restored.log_prob(images, labels).numpy(),
                                model.log_prob(images, labels).numpy())


def test_config_without_the_new_options_builds_the_plain_glow():
  """`.keras` files saved before the options existed were plain Glows."""
  config = GlowModel(**SMALL).get_config()
  for option in PLAIN_GLOW:
    del config[option]
  restored = GlowModel.from_config(config)
  assert not restored.learned_prior and restored.priors == []
  assert restored.coupling == "affine"
  assert restored.preprocessing == "centre"


def test_actnorm_initialization_sees_the_preprocessed_images():
  """With the logit preprocessing, the first ActNorm normalizes the logits
  (not the centred pixels): its output on the initializing batch is
  zero-mean, unit-variance per channel."""
  model = GlowModel(**SMALL, preprocessing="logit")
  images = _images(64, seed=3)
  model.initialize(images)
  x = tf.constant((images + 0.5) / 256., tf.float32)
  logits = model._preprocessing_bijector().forward(x)
  np.testing.assert_allclose(
      logits.numpy(), np.log((0.05 + 0.9 * x) / (0.95 - 0.9 * x)),
      rtol=1e-5, atol=1e-5)
  part, part_input = next(
      (p, i) for p, i in model.architecture.walk(logits)
      if p is model.convolutions[0])
  mean, variance = tf.nn.moments(part_input, axes=[0, 1, 2])
  np.testing.assert_allclose(mean, 0., atol=1e-4)
  np.testing.assert_allclose(variance, 1., atol=1e-3)


def test_the_learned_priors_start_as_the_identity():
  learned = GlowModel(**SMALL, learned_prior=True)
  learned.initialize(_images(8))
  names = [type(p).__name__ for p in learned.priors]
  assert names == ["SplitPriorLayer", "TopPriorLayer"]
  # Zero-initialized: N(0, I) at the start, the prior maps the identity.
  for prior, level in zip(learned.priors, learned.architecture.levels):
    z = tf.random.normal([2, *level.output_shape], seed=2)
    np.testing.assert_array_equal(prior.bijector().forward(z).numpy(),
                                  z.numpy())


def test_conditional_labels_change_the_density_and_the_samples():
  model, images, labels = _model("conditional")
  log_p = model.log_prob(images, labels).numpy()
  other = model.log_prob(images, (labels + 1) % 3).numpy()
  assert np.abs(log_p - other).max() > 1e-3
  zero = np.zeros((3, model.event_size), np.float32)
  by_label = model.decode(zero, [0, 1, 2]).numpy()
  assert not np.array_equal(by_label[0], by_label[1])
  # An int label is broadcast to every sample.
  np.testing.assert_array_equal(
      model.sample(2, 0., labels=1).numpy(),
      model.decode(zero[:2], [1, 1]).numpy())
  # The distribution for a label per image scores each image.
  x = (images + 0.5) / 256.
  assert model.distribution_for(labels).log_prob(x).shape == (len(labels),)


def test_conditional_flow_puts_the_labels_into_every_coupling_and_split():
  """With `conditional_flow` every coupling network and the split prior
  depend on the label (zero-initialized, so the untrained model equals the
  top-prior-only one); without it, only the top prior does."""
  images = _images(4)
  x = tf.random.normal([4, 4, 4, 4], seed=5)
  for conditional_flow in (False, True):
    model = GlowModel(**SMALL, num_classes=3,
                      conditional_flow=conditional_flow)
    top_only = GlowModel(**SMALL, num_classes=3)
    model.initialize((images, [0, 1, 2, 0]))
    top_only.initialize((images, [0, 1, 2, 0]))
    np.testing.assert_allclose(model.log_prob(images, [0, 1, 2, 0]),
                               top_only.log_prob(images, [0, 1, 2, 0]),
                               rtol=1e-6)
    _perturbed(model, (images, [0, 1, 2, 0]), 0.1)
    first_level = [model.couplings[0], model.priors[0]]
    for layer in first_level:
      by_label = [layer.bijector(tf.fill([4], label)).forward(x)
                  for label in (0, 1)]
      differs = np.abs(by_label[0] - by_label[1]).max() > 1e-4
      assert differs == conditional_flow, layer.name


def test_classification_loss_is_weighted_into_the_objective():
  model, images, labels = _model("conditional")
  noise = tf.fill(images.shape, 0.5)
  loss, values = model.objective((images, tf.constant(labels, tf.int32)),
                                 noise, training=True)
  nll = -model._nats_of_8bit(model.distribution_for(labels).log_prob(
      (images + 0.5) / 256.)).numpy()
  np.testing.assert_allclose(values["loss"], nll + 0.1 * values[
      "classification_loss"], rtol=1e-5)
  np.testing.assert_allclose(loss, np.mean(values["loss"]), rtol=1e-6)
  # Perturbed, the classifier is not uniform: not log(3) for every image.
  assert np.abs(values["classification_loss"] - np.log(3.)).max() > 1e-3


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: m.log_prob(x), r"class-conditional \(num_classes=3\); "
                                    r"pass labels"),
    (lambda m, x, y: m.sample(2), r"GlowModel.decode: this Glow is "
                                  r"class-conditional"),
    (lambda m, x, y: m.flow, r"GlowModel.flow_for: this Glow is "
                             r"class-conditional"),
    (lambda m, x, y: m.log_prob(x, y.astype(np.float32)),
     r"labels must be integers in \[0, 3\); got dtype float32"),
    (lambda m, x, y: m.log_prob(x, y + 3), r"labels must be in \[0, 3\)"),
    (lambda m, x, y: m.log_prob(x, y[:-1]), r"one entry per image"),
    (lambda m, x, y: m.encode(x, y[None]), r"labels must have shape \[N\]"),
    (lambda m, x, y: m.fit(x, epochs=1, verbose=0),
     r"trains on \(images, labels\) batches"),
], ids=["log_prob", "sample", "flow", "float_labels", "range", "count", "rank",
        "fit"])
def test_conditional_glow_without_proper_labels_says_what_it_needs(call,
                                                                   match):
  model, images, labels = _model("conditional")
  model.compile()
  with pytest.raises(ValueError if "dtype" not in match else TypeError,
                     match=match):
    call(model, images, labels)


def test_unconditional_glow_refuses_labels():
  model, images, _ = _model("learned_prior")
  with pytest.raises(ValueError, match="unconditional .* takes no labels"):
    model.log_prob(images, np.zeros(len(images), np.int32))


@pytest.mark.parametrize("kwargs,match", [
    (dict(preprocessing="logits"), r"preprocessing must be one of "
                                   r"\['centre', 'logit'\]; got 'logits'"),
    (dict(coupling="affine_"), r"coupling must be one of \['additive', "
                               r"'affine'\]; got 'affine_'"),
    (dict(num_classes=1), r"num_classes must be an int >= 2 or None; got 1"),
    (dict(num_classes=2.5), r"num_classes must be an int >= 2"),
    (dict(num_classes=10, learned_prior=False), r"needs learned_prior=True"),
    (dict(classification_weight=0.1), r"> 0 only with num_classes"),
    (dict(num_classes=10, classification_weight=-1.), r"must be >= 0"),
    (dict(conditional_flow=True), r"conditional_flow .* needs num_classes"),
    (dict(padding=-1), r"padding must be an int >= 0 or None; got -1"),
    (dict(padding=1.5), r"padding must be an int >= 0 or None; got 1.5"),
    (dict(padding=True), r"padding must be an int >= 0 or None; got True"),
    (dict(padding=2.0), r"padding must be an int >= 0 or None; got 2.0"),
    (dict(padding="2"), r"padding must be an int >= 0 or None; got '2'"),
    (dict(padding=1), r"divisible by 2\*\*num_levels = 4 after padding"),
    (dict(top_mixture_components=-1), r"top_mixture_components must be an "
                                      r"int >= 0 or None; got -1"),
    (dict(top_mixture_components=True), r"top_mixture_components must be"),
    (dict(top_mixture_components=2, num_classes=3),
     r"already one component per class"),
])
def test_constructor_rejects_inconsistent_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    GlowModel(**SMALL, **kwargs)


def test_counts_may_be_numpy_ints():
  """A count read from an array or a config parsed by NumPy is an
  `np.int64`, not an `int`: accepted, and stored as a Python int."""
  model = GlowModel(**{**SMALL, "num_steps": (np.int64(2), np.int32(1))},
                    padding=np.int64(0), top_mixture_components=np.int32(3))
  assert (model.padding, model.top_mixture_components) == (0, 3)
  assert type(model.top_mixture_components) is int
  conditional = GlowModel(**SMALL, num_classes=np.int64(4))
  assert conditional.num_classes == 4


def test_marginal_log_prob_is_the_mixture_over_labels():
  """log (1/K) sum_y p(x | y) with one noise draw per image, against the
  per-label log_prob with that same noise (log_prob's fixed seed)."""
  model = GlowModel(**SMALL, num_classes=3)
  images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), np.uint8)
  model.initialize((images, np.array([0, 1, 2, 0, 1])))
  for layer in model.priors:  # break the zero initialization's symmetry
    for weight in layer.weights:
      weight.assign(0.3 * tf.random.stateless_normal(weight.shape, [1, 2]))
  per_label = np.stack([model.log_prob(images, np.full(5, y)).numpy()
                        for y in range(3)])
  expected = np.logaddexp.reduce(per_label.astype(np.float64), 0) - np.log(3.)
  assert np.ptp(per_label, axis=0).min() > 1e-3  # the labels do matter
  np.testing.assert_allclose(model.marginal_log_prob(images).numpy(),
                             expected, rtol=1e-5)
  with pytest.raises(ValueError, match="unconditional"):
    GlowModel(**SMALL).marginal_log_prob(images)


@pytest.mark.parametrize("conditional_flow", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_marginal_log_prob_agrees_eager_under_tf_function_and_xla(
    dtype, conditional_flow):
  model = GlowModel(**SMALL, num_classes=3, dtype=dtype,
                    conditional_flow=conditional_flow)
  images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1), np.uint8)
  model.initialize((images, np.array([0, 1, 2, 0])))
  if conditional_flow:  # per-class weights away from their zero start
    _perturbed(model, (images, np.array([0, 1, 2, 0])), 0.1)
  eager = model.marginal_log_prob(images).numpy()
  assert eager.dtype == np.dtype(dtype) and np.all(np.isfinite(eager))
  rtol = 1e-5 if dtype == "float32" else 1e-10
  np.testing.assert_allclose(
      tf.function(model.marginal_log_prob)(tf.constant(images)).numpy(),
      eager, rtol=rtol)
  # XLA draws other stateless uniforms than the kernels (log_prob's too):
  # there the mixture is checked against XLA's own per-label log_prob.
  marginal = tf.function(model.marginal_log_prob, jit_compile=True)
  log_prob = tf.function(model.log_prob, jit_compile=True)
  per_label = np.stack([log_prob(tf.constant(images),
                                 tf.fill([4], y)).numpy() for y in range(3)])
  np.testing.assert_allclose(
      marginal(tf.constant(images)).numpy(),
      np.logaddexp.reduce(per_label.astype(np.float64), 0) - np.log(3.),
      rtol=rtol)


def test_classification_weight_defaults_to_openai_glows_on_our_scale():
  """openai/glow's `weight_y` 0.01 multiplies bits per image against a loss
  in bits per subpixel: on nats per image that is 0.01 * D, and only a
  class-conditional model has a classifier to weigh."""
  assert GlowModel(**SMALL).classification_weight == 0.
  conditional = GlowModel(**SMALL, num_classes=3)
  assert conditional.classification_weight == pytest.approx(0.01 * 8 * 8)
  # D is what the flow sees: with a zero border, the frame's.
  assert GlowModel(**SMALL, num_classes=3, padding=2).classification_weight == (
      pytest.approx(0.01 * 12 * 12))
  assert GlowModel(**SMALL, num_classes=3,
                   classification_weight=0.).classification_weight == 0.
  # A saved conditional model keeps the weight it was trained with.
  config = conditional.get_config()
  config["classification_weight"] = 0.
  assert GlowModel.from_config(config).classification_weight == 0.


# Padding and the top mixture --------------------------------------------------


def _padded_and_framed(**kwargs):
  """A Glow of 8 x 8 images with a zero border of 2, and one built for the
  12 x 12 frame itself, with the same (perturbed) weights."""
  padded = GlowModel(**SMALL, padding=2, **kwargs)
  _perturbed(padded, _images(16), 0.1)
  framed = GlowModel(**{**SMALL, "image_shape": (12, 12, 1)}, padding=0,
                     **kwargs)
  framed.set_weights(padded.get_weights())
  return padded, framed


@pytest.mark.parametrize("top_mixture_components", [None, 3])
def test_a_padded_glow_is_the_glow_of_the_zero_bordered_images(
    top_mixture_components):
  """Padding is exactly a Glow of the images in a zero frame: the frame's
  model gives the padded model's log-likelihood, latents and (cropped)
  samples; only bits/dim differ, over the images' 64 dimensions, not the
  frame's 144 (an upper bound on the images' own cost)."""
  padded, framed = _padded_and_framed(
      top_mixture_components=top_mixture_components)
  images = _images(6, seed=3)
  framed_images = _padded(padded, images)
  assert padded.flow_image_shape == (12, 12, 1) and padded.event_size == 144
  assert padded.image_dims == 64
  log_prob = padded.log_prob(images).numpy()
  np.testing.assert_array_equal(log_prob, framed.log_prob(framed_images))
  np.testing.assert_allclose(
      padded.bits_per_dim(log_prob),
      framed.bits_per_dim(log_prob) * 144 / 64, rtol=1e-6)
  latents = padded.encode(images)
  np.testing.assert_array_equal(latents, framed.encode(framed_images))
  np.testing.assert_array_equal(padded.decode(latents), images)
  samples = padded.sample(5, 0.7, seed=4).numpy()
  assert samples.shape == (5, 8, 8, 1)
  np.testing.assert_array_equal(
      samples, framed.sample(5, 0.7, seed=4).numpy()[:, 2:10, 2:10])
  # The flow and the distribution are over the frame.
  assert padded.distribution.sample(2, seed=[1, 2]).shape == (2, 12, 12, 1)


def test_padding_none_picks_the_least_border_the_levels_need():
  assert GlowModel(num_levels=3, num_steps=1, hidden_channels=4).padding == 2
  assert GlowModel(num_levels=2, num_steps=1, hidden_channels=4).padding == 0
  assert GlowModel(image_shape=(26, 26, 1), num_levels=3, num_steps=1,
                   hidden_channels=4).flow_image_shape == (32, 32, 1)


def test_a_padded_glow_trains_and_scores_its_digits_not_the_frame():
  model = GlowModel(**SMALL, padding=2)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  history = model.fit(data.image_dataset(_images(64), 16), epochs=2,
                      verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  # The logged bits/dim is the loss (nats per image) over the images' D.
  np.testing.assert_allclose(history.history["bits_per_dim"],
                             np.array(history.history["loss"])
                             / (64 * np.log(2.)), rtol=1e-5)


def test_top_mixture_samples_follow_the_mixture_at_temperature_one():
  model = GlowModel(**SMALL, top_mixture_components=3)
  mixture = model.top_mixture
  rng = np.random.default_rng(5)
  mixture.logits.assign([0., 1., -1.])
  mixture.means.assign(rng.normal(size=mixture.means.shape) * 2.)
  mixture.log_stds.assign(rng.normal(size=mixture.log_stds.shape) * 0.3)
  draws = mixture.sample(40000, 1., seed=tf.constant([3, 4], tf.int64))
  distribution = mixture.distribution()
  mean, std = distribution.mean().numpy(), distribution.stddev().numpy()
  # Within 5 standard errors, every coordinate.
  np.testing.assert_array_less(np.abs(draws.numpy().mean(0) - mean),
                               5 * std / np.sqrt(40000))
  np.testing.assert_allclose(draws.numpy().std(0), std, rtol=0.03)
  # The samples' density under the mixture is the mixture's entropy's.
  entropy = -np.mean(distribution.log_prob(draws).numpy())
  assert np.isfinite(entropy)
  # Temperature 0: every draw is one of the component means.
  zero = mixture.sample(50, 0., seed=tf.constant([3, 5], tf.int64)).numpy()
  distances = np.abs(zero[:, None] - mixture.means.numpy()[None]).max(-1)
  np.testing.assert_array_equal(distances.min(1), 0.)
  assert len(set(distances.argmin(1))) == 3  # all components drawn


def test_top_mixture_sample_at_temperature_zero_decodes_component_means():
  model = GlowModel(**SMALL, top_mixture_components=2)
  _perturbed(model, _images(16), 0.1)
  top = model.top_mixture.event_size
  means = model.top_mixture.means.numpy()
  decoded = [model.decode(np.concatenate(
      [np.zeros((1, model.event_size - top), np.float32), mean[None]], 1))
             .numpy() for mean in means]
  assert not equal_up_to_rounding(*decoded)  # so the check below can fail
  for sample in model.sample(6, 0., seed=1).numpy():
    assert any(equal_up_to_rounding(sample, d[0]) for d in decoded)
  # A seed gives the same samples again; the mixture layer draws with it.
  np.testing.assert_array_equal(model.sample(4, 0.7, seed=2),
                                model.sample(4, 0.7, seed=2))
  # `sample` decodes `sample_latents`, which users (and the overflow
  # benchmark) can take apart.
  latents = model.sample_latents(4, 0.7, seed=2)
  assert latents.shape == (4, model.event_size)
  np.testing.assert_array_equal(model.decode(latents),
                                model.sample(4, 0.7, seed=2))


# The training recipe ---------------------------------------------------------


def test_linear_warmup_then_constant_or_cosine():
  warmup = optimizers.LinearWarmup(1e-3, 4)
  np.testing.assert_allclose([float(warmup(s)) for s in range(6)],
                             [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3],
                             rtol=1e-6)
  cosine = optimizers.LinearWarmup(1e-3, 2, decay_steps=4)
  np.testing.assert_allclose(
      [float(cosine(s)) for s in (1, 2, 4, 6, 9)],
      [1e-3, 1e-3, 5e-4, 0., 0.], atol=1e-9)
  again = optimizers.LinearWarmup.from_config(cosine.get_config())
  assert float(again(4)) == float(cosine(4))
  with pytest.raises(ValueError, match="learning_rate must be > 0"):
    optimizers.LinearWarmup(0., 4)
  with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
    optimizers.LinearWarmup(1e-3, -1)


def test_compile_without_an_optimizer_gives_the_measured_recipe():
  model = GlowModel(**SMALL)
  model.compile()
  optimizer = model.optimizer
  assert isinstance(optimizer, keras.optimizers.Adam)
  assert GLOW_RECIPE["ema_momentum"] is None and not optimizer.use_ema
  schedule = optimizer._learning_rate  # the schedule object itself
  assert isinstance(schedule, optimizers.LinearWarmup)
  assert schedule.warmup_steps == GLOW_RECIPE["warmup_steps"]
  assert schedule.learning_rate == GLOW_RECIPE["learning_rate"]
  assert optimizer.beta_2 == GLOW_RECIPE["beta_2"] == 0.99


def test_fit_validates_with_the_moving_average_and_leaves_it_in_the_model():
  images = _images(64)
  validation = _images(32, seed=1)
  model = GlowModel(**SMALL)
  model.compile(optimizer=optimizers.adam_with_warmup_and_ema(
      1e-2, warmup_steps=2, ema_momentum=0.5))
  seen = []

  class ScoreBoth(keras.callbacks.Callback):
    """After each epoch's validation: the loss of the training weights and
    of their moving average."""

    def on_epoch_end(self, epoch, logs=None):
      def loss():
        return self.model.evaluate(validation, batch_size=16, verbose=0,
                                   return_dict=True)["loss"]
      training_weights = loss()
      with ema_weights(self.model):
        average = loss()
      seen.append((logs["val_loss"], training_weights, average))

  model.fit(images, batch_size=16, epochs=2, verbose=0,
            validation_data=(validation,), callbacks=[ScoreBoth()])
  for logged, training_weights, average in seen:
    np.testing.assert_allclose(logged, average, rtol=1e-5)
    # Ten times the tolerance above: the two are told apart.
    assert abs(logged - training_weights) > 1e-4 * abs(logged)
  # After fit the weights are the average (Keras writes it in).
  after = model.evaluate(validation, batch_size=16, verbose=0,
                         return_dict=True)
  np.testing.assert_allclose(after["loss"], seen[-1][2], rtol=1e-5)


# Data -------------------------------------------------------------------------


def test_shifted_digits_are_translations_with_zero_fill():
  rng = np.random.default_rng(0)
  images = np.zeros((32, 8, 8, 1), np.uint8)
  images[:, 3:5, 3:5] = rng.integers(1, 256, (32, 2, 2, 1))
  labels = np.arange(32, dtype=np.int32)
  batches = list(data.image_dataset(images, 8, shuffle=True, labels=labels,
                                    max_shift=2))
  shifts = set()
  for shifted, batch_labels in batches:
    for image, label in zip(shifted.numpy(), batch_labels.numpy()):
      original = images[label]
      found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
               if np.array_equal(np.roll(original, (dy, dx), (0, 1)), image)]
      assert found, "not a shift of its own digit"
      shifts.add(found[0])
  assert len(shifts) > 5  # shifts vary


def test_labels_of_the_shared_digits_are_their_own(shared_data_dir):
  if shared_data_dir is None:
    pytest.skip("needs ../shared/data/mnist")
  with_labels = data.load_mnist_idx(shared_data_dir / "mnist", 1000, 1000,
                                    with_labels=True)
  plain = data.load_mnist_idx(shared_data_dir / "mnist", 1000, 1000)
  for split in plain:
    images, labels = with_labels[split]
    np.testing.assert_array_equal(images, plain[split])
    assert labels.dtype == np.int32 and labels.shape == (len(images),)
    assert set(np.unique(labels)) <= set(range(10))
  # Every class is there in training.
  assert len(np.unique(with_labels["train"][1])) == 10
