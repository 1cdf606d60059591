"""GlowModel: invertibility, exact log-dets, ActNorm, save/load, training."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import keras

from image_checks import assert_equal_up_to_rounding
from tfp_flows import data
from tfp_flows.bijectors import AffineCoupling
from tfp_flows.layers import AffineCouplingLayer, InvertibleConv1x1Layer
from tfp_flows.layers import glow as glow_layers
from tfp_flows.models import GlowModel

tfb, tfd = tfp.bijectors, tfp.distributions


def _digits(shared_data_dir, n, size=28):
  """Real digits from ../shared/data/mnist, or blurred blobs made here."""
  if shared_data_dir is not None and size == 28:
    return data.load_mnist_idx(shared_data_dir / "mnist",
                               validation_size=0, test_size=0)["train"][:n]
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:size, :size]
  centres = rng.uniform(size * 0.3, size * 0.7, size=(n, 2, 1, 1))
  blobs = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2)
                 / (2 * (size / 6) ** 2))
  return (255 * blobs).astype(np.uint8)[..., None]


def _perturbed(model, images, scale=0.05, seed=0):
  """A model whose couplings and priors are not the identity (zero-init
  last layers)."""
  model.initialize(images)
  rng = np.random.default_rng(seed)
  for variable in model.trainable_variables:
    variable.assign(variable.numpy() + scale * rng.normal(
        size=variable.shape).astype(variable.dtype))
  return model


#: Every architecture option, each with a class-conditional variant where
#: it exists: the model tests below run them all.
OPTIONS = {
    "plain": dict(learned_prior=False, hidden_initializer="glorot_uniform",
                  preprocessing="centre"),
    "learned_prior": dict(learned_prior=True, hidden_initializer="he_normal"),
    "additive": dict(coupling="additive"),
    "conditional": dict(num_classes=3, classification_weight=0.1),
    "conditional_flow": dict(num_classes=3, classification_weight=0.1,
                             conditional_flow=True),
    "logit": dict(preprocessing="logit"),
    # A zero border of 2 (4 x 4 -> 8 x 8, 8 x 8 -> 12 x 12): the flow is
    # over the padded images.
    "padded": dict(padding=2),
    "top_mixture": dict(top_mixture_components=3),
}


def _labels_for(model, n, seed=0):
  if not model.num_classes:
    return None
  return np.random.default_rng(seed).integers(0, model.num_classes, n)


def test_images_to_latents_to_images_round_trip(shared_data_dir):
  images = _digits(shared_data_dir, 16)
  # The default architecture: 3 levels on the digits in a 32 x 32 frame.
  model = _perturbed(GlowModel(num_steps=2, hidden_channels=16), images)
  latents = model.encode(images)
  assert latents.shape == (16, 32 * 32)
  np.testing.assert_array_equal(model.decode(latents).numpy(), images)
  # In float, through the bijector itself (and not TFP's cache).
  x = tf.random.uniform([4, 32, 32, 1], seed=1)
  x_again = model.flow.forward(tf.identity(model.flow.inverse(x)))
  np.testing.assert_allclose(x_again.numpy(), x.numpy(), atol=1e-4)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS)
def test_log_det_equals_autodiff_jacobian_of_a_small_glow(options):
  # In float64 and with seeded initial weights: perturbations of 0.3 made
  # Jacobians with condition numbers up to 1e24 for some initial weights,
  # whose autodiff determinants were off by 0.7 nats even in float64; at
  # 0.15 they stay below 1e3 for every option.
  keras.utils.set_random_seed(0)
  model = GlowModel(image_shape=(4, 4, 1), num_levels=2, num_steps=2,
                    hidden_channels=8, dtype="float64", **options)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(32, 4, 4, 1)).astype(np.uint8)
  labels = _labels_for(model, 3)
  _perturbed(model, images if labels is None else
             (images, _labels_for(model, 32)), scale=0.15)
  # The flow's own input: padded images with `padding`.
  x = tf.constant(rng.uniform(size=(3, *model.flow_image_shape)))
  flow = model.flow_for(labels)
  with tf.GradientTape() as tape:
    tape.watch(x)
    latents = flow.inverse(x)
  size = model.event_size
  jacobian = tape.batch_jacobian(latents, x).numpy().reshape(3, size, size)
  assert np.linalg.cond(jacobian).max() < 1e6  # a trustworthy reference
  _, autodiff = np.linalg.slogdet(jacobian)
  ildj = flow.inverse_log_det_jacobian(tf.identity(x), event_ndims=3).numpy()
  np.testing.assert_allclose(ildj, autodiff, rtol=1e-10, atol=1e-10)
  assert np.abs(autodiff).max() > 0.5  # the check is not of an identity map


def test_per_level_depths_build_those_steps_with_an_exact_log_det(tmp_path):
  keras.utils.set_random_seed(0)  # a well-conditioned Jacobian, as above
  model = GlowModel(image_shape=(4, 4, 1), num_levels=2, num_steps=(1, 3),
                    hidden_channels=8, dtype="float64")
  assert [len(level.steps) for level in model.architecture.levels] == [1, 3]
  assert len(model.couplings) == len(model.convolutions) == 4
  assert model.get_config()["num_steps"] == [1, 3]
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, size=(32, 4, 4, 1)).astype(np.uint8)
  _perturbed(model, images, scale=0.15)
  x = tf.constant(rng.uniform(size=(3, 4, 4, 1)))
  with tf.GradientTape() as tape:
    tape.watch(x)
    latents = model.flow.inverse(x)
  jacobian = tape.batch_jacobian(latents, x).numpy().reshape(3, 16, 16)
  assert np.linalg.cond(jacobian).max() < 1e6
  _, autodiff = np.linalg.slogdet(jacobian)
  ildj = model.flow.inverse_log_det_jacobian(tf.identity(x), event_ndims=3)
  np.testing.assert_allclose(ildj.numpy(), autodiff, rtol=1e-8, atol=1e-8)
  path = tmp_path / "glow.keras"
  model.save(path)
  restored = keras.models.load_model(path)
  assert [len(level.steps) for level in restored.architecture.levels] == [1, 3]
  np.testing.assert_array_equal(restored.log_prob(images).numpy(),
                                model.log_prob(images).numpy())


def test_equal_per_level_depths_are_the_single_depth_model():
  # Same layers, names and initial rotations, so files saved with one K load.
  single = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=2,
                     hidden_channels=4)
  per_level = GlowModel(image_shape=(8, 8, 1), num_levels=2,
                        num_steps=[2, 2], hidden_channels=4)
  assert per_level.get_config()["num_steps"] == 2
  assert ([tuple(w.shape) for w in single.weights]
          == [tuple(w.shape) for w in per_level.weights])
  for a, b in zip(single.convolutions, per_level.convolutions):
    for u, v in zip(a.weights, b.weights):
      np.testing.assert_array_equal(u.numpy(), v.numpy())


def test_actnorm_initialization_normalizes_its_batch_once():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(64, 8, 8, 1)).astype(np.uint8)
  # Centred pixels here; test_glow_options has the logit's.
  model = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=2,
                    hidden_channels=8, preprocessing="centre")
  model.initialize(images)
  # Walk the data-to-latent direction and look at every ActNorm's output:
  # the input of the 1x1 convolution after it.
  x = (images.astype(np.float32) + 0.5) / 256. - 0.5
  seen = 0
  for part, part_input in model.architecture.walk(x):
    if isinstance(part, InvertibleConv1x1Layer):
      mean, variance = tf.nn.moments(part_input, axes=[0, 1, 2])
      np.testing.assert_allclose(mean, 0., atol=1e-4)
      np.testing.assert_allclose(variance, 1., atol=1e-3)
      seen += 1
  assert seen == len(model.actnorms) == 4
  before = [v.numpy().copy() for v in model.weights]
  model.initialize(images[::-1] // 2)
  model.log_prob(images // 3)
  for old, new in zip(before, model.weights):
    np.testing.assert_array_equal(old, new.numpy())


def test_log_prob_initializes_on_the_first_batch():
  model = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                    hidden_channels=4)
  assert not model.is_initialized
  model.log_prob(np.full((4, 8, 8, 1), 100, np.uint8) + np.arange(
      4, dtype=np.uint8)[:, None, None, None])
  assert model.is_initialized
  uninitialized = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                            hidden_channels=4)
  with pytest.raises(tf.errors.InvalidArgumentError, match="initialize"):
    tf.function(uninitialized.log_prob)(np.zeros((2, 8, 8, 1), np.uint8))


#: Trainable weights beyond the steps': the split prior's convolution
#: (kernel, bias) at the one split, the top prior's parameters, and a
#: conditional top prior's per-class parameters and classifier (kernel, bias).
PRIOR_WEIGHTS = {"plain": 0, "learned_prior": 2 + 1, "additive": 2 + 1,
                 "conditional": 2 + 1 + 3, "logit": 2 + 1,
                 # + the split prior's per-class offset, and a per-class
                 # vector in each of the 2 x 3 coupling networks.
                 "conditional_flow": 2 + 1 + 3 + 1 + 2 * 3,
                 "padded": 2 + 1, "top_mixture": 2 + 1}


@pytest.mark.parametrize("name", OPTIONS)
def test_trainable_variables_cover_every_flow_parameter(name):
  model = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=3,
                    hidden_channels=8, **OPTIONS[name])
  images = np.random.default_rng(2).integers(0, 256, (8, 8, 8, 1), np.uint8)
  labels = _labels_for(model, 8)
  batch = images if labels is None else (images, labels)
  model.initialize(batch)
  # Per step: ActNorm 2, 1x1 conv 3 (L, U, log|diag|), coupling 3 convs x 2;
  # a top mixture's logits, means and log standard deviations.
  assert len(model.trainable_variables) == (
      2 * 3 * (2 + 3 + 6) + PRIOR_WEIGHTS[name]
      + (3 if model.top_mixture else 0))
  with tf.GradientTape() as tape:
    loss, _ = model.objective(model.check_batch(batch),
                              tf.fill([8, *model.flow_image_shape], 0.5),
                              training=True)
  gradients = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in gradients)


def test_each_coupling_network_runs_once_per_log_prob(monkeypatch):
  calls = []
  original = AffineCoupling._shift_and_log_scale
  monkeypatch.setattr(
      AffineCoupling, "_shift_and_log_scale",
      lambda self, x: calls.append(type(self).__name__) or original(self, x))
  model = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=3,
                    hidden_channels=8)
  images = np.random.default_rng(3).integers(0, 256, (4, 8, 8, 1), np.uint8)
  model.initialize(images)
  calls.clear()
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(model.log_prob(images))
  tape.gradient(loss, model.trainable_variables)
  assert calls.count("AffineCoupling") == len(model.couplings) == 6
  assert calls.count("SplitPrior") == 1  # one split


@pytest.mark.parametrize("policy", ["float32", "float64", "mixed_float16"])
@pytest.mark.parametrize("num_classes", [None, 3])
def test_coupling_network_as_computed_is_its_keras_layers(policy, num_classes):
  # The hidden 1x1 convolution runs as a matmul of the Conv2D's weights
  # (glow._pointwise_conv_as_matmul), the last 3x3 one as matrix products
  # (glow._conv_as_matmuls): the same values and gradients, for the input
  # and every weight, as calling the Keras layers in turn.
  layer = AffineCouplingLayer(hidden_channels=8, num_classes=num_classes,
                              dtype=policy)
  layer.build((2, 4, 4, 6))
  rng = np.random.default_rng(0)
  for weight in layer.weights:
    weight.assign(rng.normal(size=weight.shape).astype(weight.dtype))
  x_a = tf.constant(rng.normal(size=(2, 4, 4, 3)), layer.compute_dtype)
  labels = tf.constant([0, 2])

  def through_keras_layers():
    first, pointwise, last = layer.network.layers
    hidden = first(x_a)
    if num_classes:
      hidden += tf.cast(tf.gather(layer.class_embedding, labels)[:, None,
                                                                  None, :],
                        layer.compute_dtype)
    return tf.cast(last(pointwise(hidden)), layer.variable_dtype)

  def as_computed():
    if not num_classes:
      return layer._shift_and_log_scale(x_a)
    return layer._shift_and_log_scale(
        x_a, embedding=tf.gather(layer.class_embedding, labels))

  values, gradients = [], []
  # A linear loss: its gradients do not depend on the outputs' rounding,
  # which differs in 16 bits between the two ways of summing.
  probe = tf.constant(rng.normal(size=(2, 4, 4, 6)), layer.variable_dtype)
  for network in (through_keras_layers, as_computed):
    with tf.GradientTape() as tape:
      tape.watch(x_a)
      output = network()
      loss = tf.reduce_sum(probe * output)
    values.append(output.numpy())
    gradients.append(tape.gradient(loss, [x_a] + layer.trainable_weights))
  tolerance = {"float64": 1e-12, "float32": 1e-5, "mixed_float16": 1e-2}[
      policy]
  np.testing.assert_allclose(values[1], values[0], rtol=tolerance,
                             atol=tolerance * np.abs(values[0]).max())
  for got, want in zip(gradients[1], gradients[0], strict=True):
    # (The class embedding's gradients are IndexedSlices of a gather.)
    want = np.asarray(tf.convert_to_tensor(want), np.float64)
    got = np.asarray(tf.convert_to_tensor(got), np.float64)
    np.testing.assert_allclose(got, want,
                               rtol=tolerance,
                               atol=tolerance * np.abs(want).max())
    assert np.abs(want).max() > 0


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=str)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_few_channel_convolution_is_conv2d(dtype, kernel_size, mode):
  """`_conv_same_as_matmuls` against `tf.nn.conv2d`: values, both
  gradients, and a second-order gradient, on a non-square image."""
  rng = np.random.default_rng(kernel_size)
  x = tf.constant(rng.normal(size=(2, 5, 7, 6)), dtype)
  kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 6, 3)),
                       dtype)
  weights = tf.constant(rng.normal(size=(2, 5, 7, 3)), dtype)

  def outputs(conv, x, kernel):
    with tf.GradientTape() as outer:
      outer.watch(kernel)
      with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = conv(x, kernel)
        loss = tf.reduce_sum(weights * tf.sin(y))
      dx, dkernel = tape.gradient(loss, [x, kernel])
      second = tf.reduce_sum(tf.square(dx))
    return y, dx, dkernel, outer.gradient(second, kernel)

  native = lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")
  if mode == "eager":
    got = outputs(glow_layers._conv_same_as_matmuls, x, kernel)
  else:
    got = tf.function(lambda x, k: outputs(glow_layers._conv_same_as_matmuls,
                                           x, k),
                      jit_compile=mode == "xla")(x, kernel)
  want = outputs(native, x, kernel)
  tolerance = 1e-5 if dtype == tf.float32 else 1e-12
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=tolerance,
                               atol=tolerance * np.abs(w).max())


def test_save_and_load_give_the_same_log_prob(tmp_path, shared_data_dir):
  images = _digits(shared_data_dir, 8)
  model = _perturbed(GlowModel(num_steps=2, hidden_channels=8), images)
  path = tmp_path / "glow.keras"
  model.save(path)
  restored = keras.models.load_model(path)
  assert restored.is_initialized
  np.testing.assert_array_equal(restored.log_prob(images).numpy(),
                                model.log_prob(images).numpy())


def test_short_fit_on_real_digits_lowers_bits_per_dim(shared_data_dir):
  images = _digits(shared_data_dir, 512)
  held_out = _digits(shared_data_dir, 640)[512:]
  model = GlowModel(num_steps=2, hidden_channels=32)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  model.initialize(images[:64])
  before = float(np.mean(model.bits_per_dim(model.log_prob(held_out))))
  history = model.fit(data.image_dataset(images, 32, shuffle=True), epochs=4,
                      verbose=0)
  after = float(np.mean(model.bits_per_dim(model.log_prob(held_out))))
  assert history.history["bits_per_dim"][-1] < history.history["bits_per_dim"][0]
  assert after < before - 0.3, (before, after)


def test_sampling_at_temperature_zero_decodes_the_zero_latent():
  # N(0, I) latents (a top mixture's T = 0 is its means: test_glow_options).
  model = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=2,
                    hidden_channels=8, top_mixture_components=0)
  _perturbed(model, np.random.default_rng(4).integers(0, 256, (16, 8, 8, 1),
                                                      np.uint8))
  samples = model.sample(3, temperature=0., seed=5).numpy()
  zero = model.decode(tf.zeros([1, 64])).numpy()
  assert samples.dtype == np.uint8
  assert_equal_up_to_rounding(samples, np.repeat(zero, 3, axis=0))
  assert model.sample(2, temperature=1.).shape == (2, 8, 8, 1)


def test_bits_per_dim_is_nats_over_d_log_2():
  model = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                    hidden_channels=4)
  assert float(model.bits_per_dim(tf.constant(-64 * np.log(2.)))) == pytest.approx(1.)


def test_constructor_rejects_shapes_the_squeezes_cannot_halve():
  with pytest.raises(ValueError, match=r"divisible by 2\*\*num_levels = 8 "
                                       r"after padding; .*padding=0"):
    GlowModel(image_shape=(28, 28, 1), num_levels=3, padding=0)
  with pytest.raises(ValueError, match="no border does that"):
    GlowModel(image_shape=(27, 27, 1), num_levels=1)
  with pytest.raises(ValueError, match="shape"):
    GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
              hidden_channels=4).log_prob(np.zeros((2, 8, 8), np.uint8))


def test_the_default_distribution_samples_and_scores_through_tfp(
    shared_data_dir):
  """At the defaults the base is TFP's `Blockwise` of N(0, I) for the split
  exits and the top mixture, and the flow is of the 32 x 32 frame: TFP's
  sample-and-log-prob agrees with `log_prob` through the inverse (the
  cache defeated by `tf.identity`), and with the model's `log_prob` of
  the digits, whose frame is zero."""
  images = _digits(shared_data_dir, 8)
  model = _perturbed(GlowModel(num_steps=1, hidden_channels=8), images)
  assert isinstance(model.base_distribution(), tfd.Blockwise)
  distribution = model.distribution
  samples, log_prob = distribution.experimental_sample_and_log_prob(
      3, seed=tfp.random.sanitize_seed(2))
  assert samples.shape == (3, 32, 32, 1)
  np.testing.assert_allclose(
      distribution.log_prob(tf.identity(samples)).numpy(), log_prob.numpy(),
      rtol=1e-4, atol=1e-2)
  noise = tf.random.stateless_uniform([8, 32, 32, 1], seed=[0, 0])
  framed = tf.pad(tf.cast(images, tf.float32), [[0, 0], [2, 2], [2, 2],
                                                [0, 0]])
  np.testing.assert_allclose(
      distribution.log_prob((framed + noise) / 256.).numpy()
      - 1024 * np.log(256.), model.log_prob(images).numpy(), rtol=1e-6)


def test_trained_flow_works_in_user_built_tfp_objects(shared_data_dir):
  """`model.flow` is an ordinary bijector: a user's own base distribution,
  `tfb.Chain` and `tfb.Invert` around it give the model's numbers."""
  images = _digits(shared_data_dir, 8)
  # Two levels, no border, standard normal latents: the flow is of the
  # 784 pixels and the model's base is N(0, I), which the user rebuilds.
  model = _perturbed(GlowModel(num_levels=2, top_mixture_components=0,
                               num_steps=2, hidden_channels=16), images)
  flow = model.flow
  base = tfd.Sample(tfd.Normal(0., 1.), sample_shape=[784])
  user_made = tfd.TransformedDistribution(base, flow)
  # The model's 8-bit likelihood is this density at the dequantized images,
  # less 784 log 256 for the bins.
  noise = tf.random.stateless_uniform(images.shape, seed=[0, 0])
  x = (tf.cast(images, tf.float32) + noise) / 256.
  np.testing.assert_allclose(
      user_made.log_prob(x).numpy() - 784 * np.log(256.),
      model.log_prob(images).numpy(), rtol=1e-6)

  # In pixel units: a Chain with a scale multiplies the density by 256^-784.
  pixels = tfd.TransformedDistribution(base, tfb.Chain([tfb.Scale(256.), flow]))
  np.testing.assert_allclose(pixels.log_prob(256. * x).numpy(),
                             user_made.log_prob(x).numpy()
                             - 784 * np.log(256.), rtol=1e-6)

  # Invert gives the encoder, and a distribution over latents whose density
  # is the change of variables in the other direction.
  centres = (tf.cast(images, tf.float32) + 0.5) / 256.
  encoder = tfb.Invert(flow)
  np.testing.assert_allclose(encoder.forward(centres).numpy(),
                             model.encode(images).numpy(), atol=1e-5)
  latents = tfd.TransformedDistribution(user_made, encoder)
  z = model.encode(images)
  np.testing.assert_allclose(latents.log_prob(z).numpy(),
                             base.log_prob(z).numpy(), rtol=1e-4, atol=1e-2)

  samples, log_prob_forward = user_made.experimental_sample_and_log_prob(
      2, seed=tfp.random.sanitize_seed(1))
  assert samples.shape == (2, 28, 28, 1)
  # Through the couplings' inverse direction (tf.identity defeats TFP's
  # cache, which would return the sampled latents), against the log-dets
  # of the forward pass that drew the samples.
  np.testing.assert_allclose(user_made.log_prob(tf.identity(samples)),
                             log_prob_forward, rtol=1e-4)
