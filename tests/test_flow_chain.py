"""`FlowFamily.forward_and_log_det` (the training path of FlowVAE and the
2-D fits) against the chain of `Planar` / `Radial` / `Sylvester` bijectors
it stands for."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import family_names, get_family

import reference_flows

tfb = tfp.bijectors

DIM, NUM_FLOWS, BATCH, SAMPLES = 5, 6, 4, 3


def _params(flow, scale):
  rng = np.random.default_rng(7)
  return tf.constant(scale * rng.normal(
      size=(BATCH, NUM_FLOWS, get_family(flow).param_size(DIM))), tf.float32)


def _chain_forward_and_log_det(bijectors, z):
  """What a `TransformedDistribution` of the chain computes, step by step."""
  chain = tfb.Chain(list(reversed(bijectors)))
  return chain.forward(z), chain.forward_log_det_jacobian(z, event_ndims=1)


@pytest.mark.parametrize("flow", family_names())
@pytest.mark.parametrize("scale", [0.1, 3.])
def test_values_and_gradients_match_the_bijector_chain(flow, scale):
  params = _params(flow, scale)
  # Samples of a per-example flow: z [S, N, D] against parameters [N, K, P].
  z = tf.constant(np.random.default_rng(8).normal(
      size=(SAMPLES, BATCH, DIM)), tf.float32)

  def through(path):
    with tf.GradientTape() as tape:
      tape.watch([params, z])
      if path == "fast":
        y, log_det = get_family(flow).forward_and_log_det(params, DIM, z)
      else:
        y, log_det = _chain_forward_and_log_det(
            get_family(flow).bijectors(params, DIM), z)
      objective = tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(log_det)
    return (y, log_det) + tuple(tape.gradient(objective, [params, z]))

  fast, chain = through("fast"), through("chain")
  assert fast[0].shape == (SAMPLES, BATCH, DIM)
  assert fast[1].shape == (SAMPLES, BATCH)
  # Float32 rounding, relative to the largest value. Sylvester steps at
  # scale 3 (off-diagonal entries ~3, Jacobians of norm ~8) amplify it
  # through the K = 6 steps: measured 2.1e-4 (Householder), where the same
  # comparison in float64 agrees to 4e-13, so the paths are the same maths.
  tolerance = 5e-4 if flow.startswith("sylvester") and scale > 1. else 1e-5
  for got, want in zip(fast, chain):
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=tolerance * max(1., np.abs(want).max()))


@pytest.mark.parametrize("flow", family_names())
def test_log_det_is_the_autodiff_jacobian(flow):
  params = _params(flow, 1.)[0]  # one shared flow
  z = tf.constant(np.random.default_rng(9).normal(size=(3, DIM)), tf.float64)
  params = tf.cast(params, tf.float64)
  with tf.GradientTape() as tape:
    tape.watch(z)
    y, log_det = get_family(flow).forward_and_log_det(params, DIM, z)
  jacobian = tape.batch_jacobian(y, z)
  _, want = np.linalg.slogdet(jacobian.numpy())
  np.testing.assert_allclose(log_det, want, rtol=1e-10)


def test_rejects_parameters_of_the_wrong_size():
  with pytest.raises(ValueError, match=r"\[\.\.\., K, 11\]"):
    get_family("planar").forward_and_log_det(tf.zeros([2, 3, 10]), DIM,
                                             tf.zeros([2, DIM]))


@pytest.mark.parametrize("flow", ["planar", "radial"])
def test_unknown_number_of_steps_is_refused_with_its_shape(flow):
  # Traced with K unknown, the steps cannot be unrolled: say so, not a
  # TypeError from deep inside.
  family = get_family(flow)

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, family.param_size(DIM)])])
  def forward(params):
    return family.forward_and_log_det(params, DIM, tf.zeros([2, DIM]))

  with pytest.raises(ValueError, match=r"static number of steps K.*None"):
    forward.get_concrete_function()


def test_unknown_family_names_the_known_ones():
  with pytest.raises(ValueError,
                     match=r"one of \('planar', 'radial', 'sylvester_"):
    get_family("sylvester")


def _reference_step_params(flow, step):
  """The bijector parameters of one step's raw vector `[..., P]`, unpacked
  and constrained by the paper's formulas (not the package's)."""
  if flow == "planar":
    return step[..., :DIM], step[..., DIM:2 * DIM], step[..., 2 * DIM]
  alpha, beta = reference_flows.radial_from_unconstrained(step[..., DIM],
                                                          step[..., DIM + 1])
  return step[..., :DIM], alpha, beta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flow", ["planar", "radial"])
def test_values_match_the_extended_precision_reference(flow, dtype):
  """Against the paper's formulas in long double (tests/reference_flows.py):
  the vectorized path and the bijector chain could share a wrong formula,
  this reference could not."""
  params = _params(flow, 1.).numpy().astype(dtype)
  z = np.random.default_rng(10).normal(size=(SAMPLES, BATCH, DIM)).astype(
      dtype)
  y, log_det = get_family(flow).forward_and_log_det(
      tf.constant(params), DIM, tf.constant(z))
  want_z, want_log_det = z.astype(np.longdouble), 0.
  for k in range(NUM_FLOWS):
    step = _reference_step_params(flow, params[:, k, :].astype(np.longdouble))
    want_log_det = want_log_det + reference_flows.LOG_DET[flow](step, want_z)
    want_z = reference_flows.FORWARD[flow](step, want_z)
  # Measured: 2e-7 (float32) and 3e-16 (float64) of the largest value,
  # rounding through K = 6 steps with O(1) Jacobians; about 10x margin.
  tolerance = 2e-6 if dtype == np.float32 else 1e-14
  for got, want in ((y, want_z), (log_det, want_log_det)):
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0,
                               atol=tolerance * max(1., np.abs(want).max()))
