"""Glow's options (learned priors, additive coupling, class-conditional
priors), its training recipe (warm-up; the optional moving average) and the data
it trains on (labels, shifted digits)."""

import numpy as np
import pytest
import tensorflow as tf
import keras

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


@pytest.mark.parametrize("name", OPTIONS)
def test_log_prob_is_the_distribution_of_the_standard_normal_base(name):
  """`log_prob` (through `distribution_for`) equals N(0, I) of `encode`'s
  latents plus the flow's log-det, computed here by hand: the learned
  priors are inside the flow, the base stays standard normal."""
  model, images, labels = _model(name)
  x = tf.constant((images + 0.5) / 256., tf.float32)
  flow = model.flow_for(labels)
  latents = flow.inverse(x)
  by_hand = (-0.5 * tf.reduce_sum(latents**2, -1) - 0.5 * model.event_size
             * np.log(2 * np.pi)
             + flow.inverse_log_det_jacobian(tf.identity(x), event_ndims=3))
  np.testing.assert_allclose(
      model.distribution_for(labels).log_prob(x).numpy(), by_hand.numpy(),
      rtol=1e-5)
  np.testing.assert_allclose(model.encode(images, labels).numpy(),
                             latents.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", OPTIONS)
def test_save_and_load_keep_every_option_and_the_log_prob(name, tmp_path):
  model, images, labels = _model(name)
  model.save(tmp_path / "glow.keras")
  restored = keras.models.load_model(tmp_path / "glow.keras")
  for option in ("coupling", "hidden_initializer", "learned_prior",
                 "num_classes", "classification_weight", "preprocessing",
                 "conditional_flow"):
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
])
def test_constructor_rejects_inconsistent_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    GlowModel(**SMALL, **kwargs)


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
  assert GlowModel(**SMALL, num_classes=3,
                   classification_weight=0.).classification_weight == 0.
  # A saved conditional model keeps the weight it was trained with.
  config = conditional.get_config()
  config["classification_weight"] = 0.
  assert GlowModel.from_config(config).classification_weight == 0.


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
