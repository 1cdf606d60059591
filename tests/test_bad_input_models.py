"""GlowModel, its layers and FlowVAE fed wrong data: a clear error that
names the problem, or a finite, correct result; never a silent NaN."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import data
from tfp_flows.layers import GaussianMixtureLayer
from tfp_flows.models import FlowVAE, GlowModel


@pytest.fixture(scope="module")
def glow():
  rng = np.random.default_rng(0)
  model = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                    hidden_channels=4)
  model.initialize(rng.integers(0, 256, (16, 8, 8, 1)).astype(np.uint8))
  return model


@pytest.fixture(scope="module")
def vae():
  return FlowVAE(latent_dim=2, flow="planar", num_flows=2, hidden_units=(8,),
                 image_shape=(8, 8, 1))


def _pixels(dtype, value=3):
  return np.full((2, 8, 8, 1), value, dtype)


# GlowModel -----------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (_pixels(np.float32, 300.), r"pixel values in \[0, 255\]; got \[300.0"),
    (_pixels(np.float32, -1.), r"pixel values in \[0, 255\]; got \[-1.0"),
    (_pixels(np.float32, np.nan), r"pixel values in \[0, 255\]; got \[nan"),
    (_pixels(np.float64, np.inf), r"pixel values in \[0, 255\]; got \[inf"),
    (_pixels(np.int32, 256), r"pixel values in \[0, 255\]; got \[256"),
    (np.zeros((2, 8, 8), np.uint8), r"shape \[N, 8, 8, 1\]; got \(2, 8, 8\)"),
    (np.zeros((2, 16, 16, 1), np.uint8), r"shape \[N, 8, 8, 1\]"),
], ids=["above_255", "negative", "nan", "inf", "int_256", "rank_3", "size"])
def test_glow_rejects_what_is_not_an_8_bit_image(glow, bad, message):
  for method in (glow.log_prob, glow.encode):
    with pytest.raises(ValueError, match=message):
      method(bad)


def test_glow_rejects_non_numeric_pixels(glow):
  with pytest.raises(TypeError, match="8-bit pixel values"):
    glow.log_prob(np.full((1, 8, 8, 1), True))


def test_glow_takes_8_bit_values_in_any_numeric_dtype(glow):
  images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 1))
  expected = glow.log_prob(images.astype(np.uint8)).numpy()
  for dtype in (np.int32, np.int64, np.float32, np.float64):
    np.testing.assert_allclose(glow.log_prob(images.astype(dtype)).numpy(),
                               expected, rtol=1e-6)


def test_glow_empty_batch_and_batch_of_one(glow):
  assert glow.log_prob(np.zeros((0, 8, 8, 1), np.uint8)).shape == (0,)
  one = glow.log_prob(np.full((1, 8, 8, 1), 128, np.uint8)).numpy()
  assert one.shape == (1,) and np.isfinite(one).all()
  with pytest.raises(ValueError, match="at least one image"):
    GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
              hidden_channels=4).initialize(np.zeros((0, 8, 8, 1), np.uint8))
  # ActNorm initialized from a single digit is finite too.
  single = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                     hidden_channels=4)
  single.initialize(np.random.default_rng(2).integers(
      0, 256, (1, 8, 8, 1)).astype(np.uint8))
  assert all(np.all(np.isfinite(w.numpy())) for w in single.weights)


def test_glow_decode_and_sample_reject_bad_latents_and_counts(glow):
  with pytest.raises(ValueError, match=r"latents must have shape \[N, 64\]"):
    glow.decode(np.zeros((2, 63), np.float32))
  with pytest.raises(ValueError, match="latents must be finite; got \\[nan"):
    glow.decode(np.full((2, 64), np.nan, np.float32))
  with pytest.raises(ValueError, match="num_samples must be >= 0"):
    glow.sample(-1)
  assert glow.sample(0).shape == (0, 8, 8, 1)


def test_glow_fit_on_out_of_range_data_stops_with_the_reason():
  model = GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                    hidden_channels=4)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  images = np.random.default_rng(3).uniform(0, 255, (32, 8, 8, 1))
  images[20] = 1000.  # in the second batch, after ActNorm saw the first
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"pixel values in \[0, 255\]; got"):
    model.fit(data.image_dataset(images.astype(np.float32), 16), epochs=1,
              verbose=0)
  assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


# FlowVAE -------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (_pixels(np.float32, 0.5), r"binary images .*; got \[0.5"),
    (_pixels(np.uint8, 255), r"binary images .*; got \[255\b"),
    (_pixels(np.int32, 2), r"binary images .*; got \[2\b"),
    (_pixels(np.int64, -1), r"binary images .*; got \[-1\b"),
    (_pixels(np.float32, np.nan), r"binary images .*; got \[nan"),
    (_pixels(np.float32, -np.inf), r"binary images .*; got \[-inf"),
    (np.zeros((2, 64), np.float32), r"shape \[N, 8, 8, 1\]; got \(2, 64\)"),
], ids=["grey", "uint8_255", "int32_2", "int64_negative", "nan", "inf",
        "flat"])
def test_flow_vae_rejects_what_is_not_a_binary_image(vae, bad, message):
  for method in (vae.elbo, vae.encode, vae.posterior,
                 lambda x: vae.log_importance_weights(x, 3)):
    with pytest.raises(ValueError, match=message):
      method(bad)


def test_flow_vae_rejects_non_numeric_pixels(vae):
  with pytest.raises(TypeError, match="integer or float 0/1"):
    vae.elbo(np.full((1, 8, 8, 1), "1"))


def test_flow_vae_takes_bool_images(vae):
  images = np.random.default_rng(5).uniform(size=(3, 8, 8, 1)) < 0.3
  np.testing.assert_array_equal(vae.elbo(images).numpy(),
                                vae.elbo(images.astype(np.uint8)).numpy())


def test_flow_vae_empty_batch_and_batch_of_one(vae):
  assert vae.elbo(np.zeros((0, 8, 8, 1), np.uint8)).shape == (0,)
  one = vae.elbo(np.ones((1, 8, 8, 1), np.uint8)).numpy()
  assert one.shape == (1,) and np.isfinite(one).all()
  mean, latents = vae.encode(np.ones((1, 8, 8, 1), np.uint8))
  assert mean.shape == latents.shape == (1, 2)


def test_flow_vae_decode_and_sample_reject_bad_latents_and_counts(vae):
  with pytest.raises(ValueError, match=r"latents must have shape \[N, 2\]"):
    vae.decode(np.zeros((2, 3), np.float32))
  with pytest.raises(ValueError, match="latents must be finite"):
    vae.decode(np.array([[0., np.inf]], np.float32))
  with pytest.raises(ValueError, match="num_samples must be >= 0"):
    vae.sample(-2)


@pytest.mark.parametrize("bad", [
    np.float32(0.5), np.uint8(255), np.int32(-1)], ids=lambda v: v.dtype.name)
def test_flow_vae_fit_on_non_binary_data_stops_with_the_reason(bad):
  # In `fit` the check is a graph's `Assert` (each dtype its own test).
  model = FlowVAE(latent_dim=2, flow="radial", num_flows=1, hidden_units=(8,),
                  image_shape=(8, 8, 1))
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  images = (np.random.default_rng(4).uniform(size=(32, 8, 8, 1)) < 0.3
            ).astype(bad.dtype)
  images[17, 3, 4, 0] = bad
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf"binary images .*; got.*\[{bad}"):
    model.fit(data.image_dataset(images, 16), epochs=1, verbose=0)
  # The bad image is in the second batch: the first step was applied.
  assert int(model.optimizer.iterations.numpy()) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(flow="maf"), "flow must be one of"),
    (dict(latent_dim=0), "latent_dim must be >= 1"),
    (dict(num_flows=0), "num_flows must be >= 1"),
    (dict(hidden_units=()), "hidden_units a non-empty"),
    (dict(initial_beta=0.), "0 < initial_beta <= 1"),
])
def test_flow_vae_constructor_names_the_bad_argument(kwargs, message):
  with pytest.raises(ValueError, match=message):
    FlowVAE(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_levels=0), "num_levels and hidden_channels"),
    (dict(hidden_channels=0), "num_levels and hidden_channels"),
    (dict(num_steps=0), "num_steps must be an int >= 1 or a sequence"),
    (dict(num_steps=True), "num_steps must be an int >= 1 or a sequence"),
    (dict(num_levels=2, num_steps=(8,)), "sequence of num_levels = 2"),
    (dict(num_levels=2, num_steps=(8, 8, 8)), "sequence of num_levels = 2"),
    (dict(num_steps=(8, 0)), "got \\(8, 0\\)"),
    (dict(num_steps=(8, 2.5)), "num_steps must be"),
    (dict(image_shape=(30, 30, 1), padding=0),
     "divisible by 2\\*\\*num_levels"),
    (dict(image_shape=(27, 27, 1)), "no border does that"),
    (dict(padding=-2), "padding must be an int >= 0 or None"),
    (dict(top_mixture_components=2.5), "top_mixture_components must be"),
])
def test_glow_constructor_names_the_bad_argument(kwargs, message):
  with pytest.raises(ValueError, match=message):
    GlowModel(**kwargs)


@pytest.mark.parametrize("num_components", [0, True, 2.0, "3", None])
def test_gaussian_mixture_layer_names_a_bad_component_count(num_components):
  with pytest.raises(ValueError, match="num_components must be an int >= 1"):
    GaussianMixtureLayer(num_components, event_size=4)
