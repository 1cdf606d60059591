"""Planar-specific behaviour: the u_hat constraint, inverse gradients, errors."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows.bijectors import Planar


def test_u_hat_divides_by_squared_norm_of_w():
  """w^T u_hat == m(w^T u) = softplus(w^T u) - 1 exactly; dividing by ||w||
  (a common bug) would miss it whenever ||w|| != 1."""
  rng = np.random.default_rng(0)
  for w_scale in (1e-2, 0.5, 3., 10.):
    u = rng.normal(size=(20, 5))
    w = w_scale * rng.normal(size=(20, 5))
    u_hat = Planar(u, w, np.zeros(20)).u_hat().numpy()
    wu = np.sum(w * u, -1)
    np.testing.assert_allclose(np.sum(w * u_hat, -1),
                               np.logaddexp(0., wu) - 1., rtol=1e-10,
                               atol=1e-12)


def test_u_hat_leaves_u_alone_when_already_invertible():
  """u_hat - u is along w: the component of u orthogonal to w is kept."""
  u = np.array([0.3, 2.0])
  w = np.array([1.0, 0.0])
  u_hat = Planar(u, w, 0.).u_hat().numpy()
  assert u_hat[1] == pytest.approx(2.0)
  assert u_hat[0] == pytest.approx(np.logaddexp(0., 0.3) - 1.)


def test_zero_w_is_a_translation():
  planar = Planar([1., 2.], [0., 0.], 0.5)
  x = np.array([[0.1, -0.4]])
  np.testing.assert_allclose(planar.forward(x), x + np.tanh(0.5) * np.array([1., 2.]),
                             rtol=1e-6)
  assert planar.forward_log_det_jacobian(x, event_ndims=1).numpy() == pytest.approx(0.)
  np.testing.assert_allclose(planar.inverse(planar.forward(x) + 0.), x, atol=1e-6)


def test_inverse_gradients_match_finite_differences():
  """The implicit-function gradient of the inverse w.r.t. y, u, w and b."""
  rng = np.random.default_rng(1)
  d = 3
  u, w = rng.normal(size=d), rng.normal(size=d)
  b = np.float64(0.4)
  y = rng.normal(size=(4, d))

  def inverse_sum(u, w, b, y):
    x = Planar(u, w, b).inverse(y)
    return tf.reduce_sum(x * tf.constant([1., -2., 0.5], tf.float64))

  args = [tf.constant(a) for a in (u, w, b, y)]
  with tf.GradientTape() as tape:
    tape.watch(args)
    value = inverse_sum(*args)
  grads = tape.gradient(value, args)
  step = 1e-6
  for i, arg in enumerate(args):
    flat = arg.numpy().reshape(-1)
    numeric = np.zeros_like(flat)
    for j in range(flat.size):
      plus, minus = flat.copy(), flat.copy()
      plus[j] += step
      minus[j] -= step
      shifted = lambda v: [tf.constant(v.reshape(arg.shape)) if k == i else a
                           for k, a in enumerate(args)]
      numeric[j] = (inverse_sum(*shifted(plus)) - inverse_sum(*shifted(minus))
                    ).numpy() / (2 * step)
    np.testing.assert_allclose(grads[i].numpy().reshape(-1), numeric,
                               rtol=1e-5, atol=1e-7)


def test_variables_are_tracked_and_trained():
  u, w, b = tf.Variable([0.5, -0.2]), tf.Variable([1., 1.]), tf.Variable(0.1)
  planar = Planar(u, w, b)
  assert {id(v) for v in planar.trainable_variables} == {id(u), id(w), id(b)}
  x = tf.constant([[0.3, 0.7]])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(planar.inverse(x)) + tf.reduce_sum(
        planar.forward_log_det_jacobian(x, event_ndims=1))
  assert all(g is not None for g in tape.gradient(loss, [u, w, b]))
  # A changed variable changes the flow: nothing was captured as a constant.
  y_before = planar.forward(x).numpy()
  u.assign([2., 0.])
  assert not np.allclose(planar.forward(tf.identity(x)).numpy(), y_before)


def test_constructor_fails_fast_on_bad_shapes_and_dtypes():
  with pytest.raises(ValueError, match="same last dimension"):
    Planar(u=[1., 2.], w=[1., 2., 3.], b=0.)
  with pytest.raises(ValueError, match="must have shape"):
    Planar(u=1., w=[1.], b=0.)
  with pytest.raises(TypeError):
    Planar(u=np.ones(2, np.float32), w=np.ones(2, np.float64), b=0.)


def test_validate_args_checks_the_input_event_size():
  planar = Planar(u=[1., 2.], w=[0.5, 0.5], b=0., validate_args=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match="last dimension"):
    planar.forward(tf.ones([4, 3]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c", [0.5, 1.83, 7., 40.])
def test_inverse_where_tanh_saturates(c, dtype):
  """Roots on the edge of the bracket: for |w^T y + b| >> c the root of
  h + c tanh h = s sits where tanh h rounds to +-1, at the bracket's bound
  |s| - c, whose objective's sign is then rounding (the Sylvester inverse
  returned the far end there until its bracket was widened). The backward
  error stays at rounding level."""
  # w = [1, 0] and m(w^T u) = c: w^T u_hat = c.
  flow = Planar(u=np.array([np.log(np.expm1(1. + c)), 0.3], dtype),
                w=np.array([1., 0.], dtype), b=dtype(0.))
  s = np.linspace(-200., 200., 801).astype(dtype)
  y = np.stack([s, np.zeros_like(s)], axis=-1)
  x = flow.inverse(tf.identity(tf.constant(y)))
  residual = np.abs(flow.forward(tf.identity(x)).numpy() - y).max(-1)
  assert np.all(residual / (1. + np.abs(y).max(-1))
                <= 8. * np.finfo(dtype).eps)
