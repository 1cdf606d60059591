"""`importance_log_likelihood` on bad input: an error naming the argument,
what was expected and what came (never a traceback from inside the traced
model), or a finite, consistent estimate."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.evaluation import importance_log_likelihood
from tfp_flows.models import FlowVAE

NUM_SAMPLES = 8


@pytest.fixture(scope="module")
def model():
  return FlowVAE(latent_dim=2, num_flows=1, hidden_units=(8,),
                 image_shape=(8, 8, 1))


@pytest.fixture(scope="module")
def images():
  return (np.random.default_rng(0).uniform(size=(3, 8, 8, 1)) < 0.3).astype(
      np.uint8)


def _log_p(model, images, num_samples=NUM_SAMPLES, **kwargs):
  return importance_log_likelihood(model, images, num_samples, progress=False,
                                   **kwargs)


@pytest.mark.parametrize("argument,value,error,match", [
    ("num_samples", 0, ValueError, "num_samples must be >= 1; got 0"),
    ("num_samples", -5, ValueError, "num_samples must be >= 1; got -5"),
    ("num_samples", 2.5, TypeError,
     r"num_samples must be an int >= 1; got 2.5 \(float\)"),
    ("num_samples", None, TypeError, "num_samples must be an int >= 1; got None"),
    ("num_samples", True, TypeError, "num_samples must be an int >= 1; got True"),
    ("batch_size", 0, ValueError, "batch_size must be >= 1; got 0"),
    ("batch_size", -1, ValueError, "batch_size must be >= 1; got -1"),
    ("max_rows", 0, ValueError, "max_rows must be >= 1; got 0"),
])
def test_bad_counts_name_the_argument(model, images, argument, value, error,
                                      match):
  kwargs = {"num_samples": NUM_SAMPLES, argument: value}
  with pytest.raises(error, match="importance_log_likelihood: " + match):
    importance_log_likelihood(model, images, progress=False, **kwargs)


def test_empty_and_scalar_images(model, images):
  with pytest.raises(ValueError, match=r"`images` is empty \(shape \(0, 8, 8, 1\)\)"):
    _log_p(model, images[:0])
  with pytest.raises(ValueError, match=r"images must have shape \[N, ...\]; "
                                       r"got a scalar"):
    _log_p(model, np.float32(1.))


@pytest.mark.parametrize("shape", [(3, 28, 28, 1), (3, 64), (8, 8, 1)],
                         ids=["wrong_size", "flat", "no_batch_dim"])
def test_wrong_shape_names_the_expected_shape(model, shape):
  """These used to surface as a ValueError wrapped in the tf.function's
  'in user code' traceback."""
  with pytest.raises(ValueError, match=(
      r"model takes images of shape \[N, 8, 8, 1\]; got shape "
      + tf.TensorShape(shape).as_list().__repr__()
      .replace("[", r"\(").replace("]", r",?\)"))):
    _log_p(model, np.zeros(shape, np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_images_are_rejected_with_their_indices(model, images, bad):
  values = images.astype(np.float32)
  values[1, 3, 4, 0] = bad
  with pytest.raises(ValueError, match=r"images hold NaN or inf \(image "
                                       r"indices \[1\]\)"):
    _log_p(model, values)


def test_batch_of_one_is_finite_and_consistent(model, images):
  """One image alone gives what it gets as the first batch of size one."""
  single = _log_p(model, images[:1])
  assert single.shape == (1,) and single.dtype == np.float64
  assert np.isfinite(single).all()
  in_batches = _log_p(model, images, batch_size=1)
  np.testing.assert_allclose(single, in_batches[:1], rtol=1e-6)
  # A tensor, a list and float 0/1 values give the same numbers.
  np.testing.assert_allclose(_log_p(model, tf.constant(images[:1])), single,
                             rtol=1e-6)
  np.testing.assert_allclose(_log_p(model, images[:1].tolist()), single,
                             rtol=1e-6)
  np.testing.assert_allclose(_log_p(model, images[:1].astype(np.float32)),
                             single, rtol=1e-6)


def test_model_without_importance_weights():
  with pytest.raises(TypeError, match="model must have a log_importance_weights"
                                      r".*got object"):
    _log_p(object(), np.zeros((2, 8, 8, 1)))


class _CheckingModel:
  """A model whose run-time input check fails inside the traced function,
  as FlowVAE's 0/1 check does."""

  image_shape = (2,)

  def log_importance_weights(self, images, num_samples, seed=0):
    images = tf.cast(images, tf.float32)
    with tf.control_dependencies([tf.debugging.Assert(
        tf.reduce_all(images >= 0.), ["pixels must be >= 0; got", images])]):
      return tf.zeros([num_samples, tf.shape(images)[0]]) + tf.reduce_sum(
          images, axis=-1)


def test_model_run_time_rejection_names_the_rows():
  values = np.array([[0., 1.], [1., 1.], [0., -1.], [1., 0.]], np.float32)
  with pytest.raises(ValueError, match=(
      r"the model rejected images\[2:4\]: assertion failed: "
      r"\[pixels must be >= 0; got\]")):
    _log_p(_CheckingModel(), values, batch_size=2)
  # The same model on valid rows: log-mean-exp of constant weights (float32).
  np.testing.assert_allclose(_log_p(_CheckingModel(), values[:2]), [1., 2.],
                             rtol=1e-6)


@pytest.mark.parametrize("scale", [255, 0.5], ids=["uint8_255", "half"])
def test_flow_vae_non_binary_pixels(model, images, scale):
  """FlowVAE's own run-time check, reported with the rows it came from."""
  values = images * scale
  with pytest.raises(ValueError, match=(
      r"the model rejected images\[0:3\]: .*FlowVAE expects binary images")):
    _log_p(model, values)
