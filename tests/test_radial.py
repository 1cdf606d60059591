"""Radial-specific behaviour: constraints, parametrization, per-example norms."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import Radial, radial_params_from_unconstrained


def test_norm_is_per_example_not_over_the_batch():
  """Each example moves by its own distance to z0 (a bug elsewhere takes
  one norm over the whole batch)."""
  radial = Radial(z0=[0., 0.], alpha=1., beta=2.)
  x = np.array([[1., 0.], [0., 3.]])
  expected = x * (1. + 2. / (1. + np.array([[1.], [3.]])))
  np.testing.assert_allclose(radial.forward(x), expected, rtol=1e-6)
  # A single example gives the same answer alone or in a batch.
  np.testing.assert_allclose(radial.forward(x[:1]), expected[:1], rtol=1e-6)


def test_unconstrained_parametrization_is_always_valid():
  raw = tf.constant(np.linspace(-30., 30., 61))
  alpha, beta = radial_params_from_unconstrained(raw, raw[::-1])
  assert np.all(alpha.numpy() > 0.)
  assert np.all(beta.numpy() >= -alpha.numpy())
  radial = Radial.from_unconstrained([0.5, -0.5], 0.3, -2., validate_args=True)
  x = tf.constant([[1., 2.], [0.5, -0.4]])
  np.testing.assert_allclose(radial.inverse(tf.identity(radial.forward(x))), x,
                             rtol=1e-5)


@pytest.mark.parametrize("alpha,beta", [(0., 1.), (-1., 1.), (1., -1.5)])
def test_constructor_rejects_invalid_constants(alpha, beta):
  with pytest.raises(ValueError, match="alpha|beta"):
    Radial(z0=[0., 0.], alpha=alpha, beta=beta)


def test_validate_args_checks_variables_at_run_time():
  alpha, beta = tf.Variable(1.), tf.Variable(0.5)
  radial = Radial(z0=[0., 0.], alpha=alpha, beta=beta, validate_args=True)
  radial.forward(tf.ones([1, 2]))
  beta.assign(-2.)
  with pytest.raises(tf.errors.InvalidArgumentError, match="beta"):
    radial.forward(tf.ones([1, 2]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="last dimension"):
    Radial(z0=[0., 0.], alpha=1., beta=0., validate_args=True).forward(
        tf.ones([1, 3]))


def test_at_the_bound_only_the_centre_is_singular():
  """beta = -alpha contracts z0's neighbourhood to a point: log|det| -> -inf
  at z0 only, finite everywhere else, and the inverse maps z0 to z0."""
  radial = Radial(z0=np.array([1., -1.]), alpha=np.float64(2.),
                  beta=np.float64(-2.))
  x = tf.constant([[1., -1.], [1.5, -1.], [3., 2.]], tf.float64)
  fldj = radial.forward_log_det_jacobian(x, event_ndims=1).numpy()
  assert fldj[0] == -np.inf and np.all(np.isfinite(fldj[1:]))
  np.testing.assert_array_equal(radial.inverse(tf.constant([[1., -1.]], tf.float64)),
                                [[1., -1.]])


def test_from_unconstrained_keeps_tracking_variables():
  raw_alpha, raw_beta = tf.Variable(0.2), tf.Variable(-1.)
  z0 = tf.Variable([0., 1.])
  radial = Radial.from_unconstrained(z0, raw_alpha, raw_beta)
  assert {id(v) for v in radial.trainable_variables} == {
      id(raw_alpha), id(raw_beta), id(z0)}
  x = tf.constant([[0.5, 0.5]])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(radial.forward_log_det_jacobian(x, event_ndims=1))
  grads = tape.gradient(loss, [raw_alpha, raw_beta])
  assert all(g is not None and np.isfinite(g.numpy()) for g in grads)
  y_before = radial.forward(x).numpy()
  raw_beta.assign(3.)
  assert not np.allclose(radial.forward(tf.identity(x)).numpy(), y_before)
