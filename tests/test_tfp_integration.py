"""Planar and Radial where TFP takes a bijector: TransformedDistribution,
Chain, Invert, tf.function and XLA."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import keras

from tfp_flows.bijectors import Planar, Radial

tfb = tfp.bijectors
tfd = tfp.distributions


def _planar_radial_chain(dtype=np.float64):
  # tfb.Chain applies its list right to left: planar, radial, then planar.
  return tfb.Chain([
      Planar(u=np.array([1.5, -0.5], dtype), w=np.array([2., 1.], dtype),
             b=dtype(0.3)),
      Radial(z0=np.array([0.5, -0.5], dtype), alpha=dtype(0.8),
             beta=dtype(1.5)),
      Planar(u=np.array([-1., 2.], dtype), w=np.array([-0.5, 1.5], dtype),
             b=dtype(-0.2)),
  ])


def test_transformed_density_integrates_to_one():
  """∫ q(y) dy over a 2-D grid, q = Chain(Planar, Radial, Planar)_# N(0, I)."""
  flow = _planar_radial_chain()
  dist = tfd.TransformedDistribution(
      tfd.MultivariateNormalDiag(loc=tf.zeros(2, tf.float64)), flow)
  half_width, n = 12., 801
  grid = np.linspace(-half_width, half_width, n)
  xx, yy = np.meshgrid(grid, grid)
  points = np.stack([xx.ravel(), yy.ravel()], -1)
  density = np.exp(dist.log_prob(points).numpy())
  cell = (grid[1] - grid[0]) ** 2
  assert np.all(np.isfinite(density))
  assert np.sum(density) * cell == pytest.approx(1., abs=1e-2)
  # The quadrature grid holds the mass: samples fall inside it.
  samples = dist.sample(5000, seed=1).numpy()
  assert np.mean(np.all(np.abs(samples) < half_width, -1)) > 0.999


@pytest.mark.parametrize("make", [
    lambda: Planar(u=[0.5, -1.], w=[1., 2.], b=0.1),
    lambda: Radial(z0=[0.2, 0.1], alpha=0.5, beta=2.),
    lambda: tfb.Invert(Planar(u=[0.5, -1.], w=[1., 2.], b=0.1)),
    lambda: tfb.Chain([Radial(z0=[0., 1.], alpha=1., beta=-0.5),
                       Planar(u=[2., 0.], w=[0.3, -1.], b=0.)]),
], ids=["planar", "radial", "invert_planar", "chain"])
def test_log_prob_and_sample_under_tf_function_and_xla(make):
  bijector = make()
  dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)),
                                     bijector)
  x = tf.constant([[0.3, -0.2], [1.5, 0.7], [-2., 1.]])
  eager = dist.log_prob(x).numpy()

  def log_prob_and_sample(x):
    return dist.log_prob(x), dist.sample(3, seed=(1, 2))

  for jit_compile in (False, True):
    fn = tf.function(log_prob_and_sample, jit_compile=jit_compile)
    log_prob, samples = fn(x)
    np.testing.assert_allclose(log_prob.numpy(), eager, rtol=1e-4, atol=1e-4)
    assert samples.shape == (3, 2)
    assert np.all(np.isfinite(samples.numpy()))


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_all_four_methods_compile_with_xla(kind):
  if kind == "planar":
    bijector = Planar(u=[0.5, -1., 2.], w=[1., 2., -1.], b=0.1)
  else:
    bijector = Radial(z0=[0.2, 0.1, 0.], alpha=0.5, beta=2.)
  x = tf.random.stateless_normal([16, 3], seed=(3, 4))

  @tf.function(jit_compile=True)
  def all_methods(x):
    y = bijector.forward(x)
    return (y, bijector.inverse(tf.identity(y)),
            bijector.forward_log_det_jacobian(x, event_ndims=1),
            bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=1))

  y, x_again, fldj, ildj = all_methods(x)
  np.testing.assert_allclose(x_again, x, atol=1e-4)
  np.testing.assert_allclose(-ildj, fldj, atol=1e-4)
  np.testing.assert_allclose(y, bijector.forward(x), rtol=1e-5, atol=1e-6)


def test_amortized_parameters_in_a_transformed_distribution():
  """An encoder-style batch of flow parameters: one flow per example."""
  n, d = 4, 3
  rng = np.random.default_rng(0)
  flow = tfb.Chain([
      Radial.from_unconstrained(rng.normal(size=(n, d)), rng.normal(size=n),
                                rng.normal(size=n)),
      Planar(rng.normal(size=(n, d)), rng.normal(size=(n, d)),
             rng.normal(size=n)),
  ])
  base = tfd.MultivariateNormalDiag(tf.zeros([n, d], tf.float64))
  q = tfd.TransformedDistribution(base, flow)
  assert q.batch_shape == [n] and q.event_shape == [d]
  z, log_q_forward = q.experimental_sample_and_log_prob(7, seed=(5, 6))
  assert z.shape == (7, n, d)
  # Through both inverses (tf.identity defeats TFP's cache, which would
  # return the sampled base point), against the forward log-dets.
  log_q = q.log_prob(tf.identity(z))
  assert log_q.shape == (7, n)
  np.testing.assert_allclose(log_q, log_q_forward, rtol=1e-10, atol=1e-10)


def test_gradients_flow_to_variables_through_log_prob():
  """Maximum likelihood through the numerical inverse trains a Planar flow."""
  u, w, b = tf.Variable([0.1, 0.1]), tf.Variable([0.5, -0.3]), tf.Variable(0.)
  dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)),
                                     Planar(u, w, b))
  data = tf.random.stateless_normal([512, 2], seed=(7, 8)) * [2., 0.5] + [1., 0.]
  optimizer = keras.optimizers.Adam(0.05)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(dist.log_prob(data))
    optimizer.apply_gradients(zip(tape.gradient(loss, [u, w, b]), [u, w, b]))
    return loss

  first = step().numpy()
  for _ in range(100):
    last = step().numpy()
  assert np.isfinite(last) and last < first - 0.1
