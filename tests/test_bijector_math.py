"""The mathematical contract shared by Planar and Radial, over the issue's matrix.

D in {1, 2, 10, 40}, float32 and float64, ordinary and extreme parameters.
References are the autodiff Jacobian and the extended-precision NumPy flows
in `reference_flows.py`.
"""

import zlib

import numpy as np
import pytest
import tensorflow as tf

import reference_flows
from flow_cases import (ALL_CASES, DTYPES, EVENT_SIZES, ORDINARY, case_params,
                        make_bijector_from)

BATCH = 64
TOLERANCE = {np.float32: 1e-4, np.float64: 1e-11}


def _rng(*key):
  """A generator seeded by the test's parameters (hash() is salted per run)."""
  return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _rel_err(a, b):
  """max |a - b| / (1 + |b|), elementwise, in extended precision."""
  a, b = np.asarray(a, np.longdouble), np.asarray(b, np.longdouble)
  return float(np.max(np.abs(a - b) / (1. + np.abs(b))))


def _inputs(rng, d, dtype, n=BATCH, scale=2.):
  return (scale * rng.normal(size=(n, d))).astype(dtype)


def _upcast(params):
  return [p.astype(np.float64) for p in params]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_inverse_is_backward_stable(kind, case, d, dtype):
  """|f(f^-1(y)) - y| / (1 + |y|) <= 1e-4 (float32), 1e-11 (float64).

  Where the forward map amplifies the rounding of its input beyond that
  bound (||w|| = 1e-4 makes ||u_hat|| ~ 1e4; alpha = 1e-3, beta = 1e2 scales
  by 1e5 near z0), no answer representable in `dtype` meets it: there the
  inverse must do as well as the exact preimage correctly rounded to `dtype`
  (computed in extended precision), within a factor of 2.
  """
  rng = _rng(kind, case, d)
  params = case_params(kind, case, d, dtype, rng)
  bijector = make_bijector_from(kind, params)
  y = _inputs(rng, d, dtype)
  x = bijector.inverse(y)
  assert np.all(np.isfinite(x))
  # tf.identity: a fresh tensor, so forward() cannot return the cached y.
  err = _rel_err(bijector.forward(tf.identity(x)), y)
  tol = TOLERANCE[dtype]
  if (kind, case) in ORDINARY:
    assert err <= tol
  else:
    best_x = reference_flows.INVERSE[kind](params, y).astype(dtype)
    floor = _rel_err(bijector.forward(best_x), y)
    assert err <= max(tol, 2. * floor), f"err={err:.3g}, floor={floor:.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_forward_and_inverse_match_reference(kind, case, d, dtype):
  """Both directions agree with the independent extended-precision reference."""
  rng = _rng(kind, case, d, "reference")
  params = case_params(kind, case, d, dtype, rng)
  bijector = make_bijector_from(kind, params)
  x = _inputs(rng, d, dtype)
  y_ref = reference_flows.FORWARD[kind](params, x)
  eps = np.finfo(dtype).eps
  # Forward: the first-order bound of a backward-stable evaluation, errors of
  # a few eps relative in x and in every parameter, propagated through the
  # map (`_condition`), plus a few eps of the output. Measured: at most 12
  # eps (1 + |y| + condition) over every case, dtype and D
  # (benchmarks/bijector_error_bounds.py); 32 allowed.
  y = bijector.forward(x).numpy()
  bound = 32 * eps * (1. + np.abs(y_ref) + _condition(kind, params, x))
  error = np.abs(np.asarray(y, np.longdouble) - y_ref)
  assert np.all(error <= bound), float(np.max(error / bound))
  if (kind, case) in ORDINARY:
    x_again = bijector.inverse(tf.constant(y_ref.astype(dtype)))
    assert _rel_err(x_again, reference_flows.INVERSE[kind](
        params, y_ref.astype(dtype))) <= (1e-4 if dtype == np.float32 else 1e-10)


def _condition(kind, params, x):
  """`sum_v |dy_i / dv| |v|` over every entry `v` of `x` and of the
  parameters, per output `y_i` `[N, D]` (float64 autodiff): how much
  relative perturbations of the inputs and parameters move each output.
  Each row gets its own copy of the parameters (a batch of bijectors), so
  the gradient of column `i` of `y` holds every row's `dy_i / dv`."""
  n, d = x.shape
  values = [tf.constant(x, tf.float64)] + [
      tf.constant(np.broadcast_to(p, (n,) + p.shape).reshape(n, -1))
      for p in _upcast(params)]
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(values)
    rows = [tf.reshape(v, (n,) + p.shape)
            for v, p in zip(values[1:], params, strict=True)]
    y = make_bijector_from(kind, rows).forward(values[0])
  condition = np.zeros((n, d))
  for i in range(d):
    column = tf.one_hot(tf.fill([n], i), d, dtype=tf.float64)
    gradients = tape.gradient(y, values, output_gradients=column)
    condition[:, i] = sum(np.sum(np.abs(g.numpy() * v.numpy()), axis=-1)
                          for g, v in zip(gradients, values, strict=True))
  return condition


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("kind,case", ORDINARY)
def test_round_trip_at_ordinary_parameters(kind, case, d, dtype):
  """|f^-1(f(x)) - x| / (1 + |x|) <= 1e-10 (float64), 1e-3 (float32)."""
  rng = _rng(kind, case, d, "round trip")
  bijector = make_bijector_from(kind, case_params(kind, case, d, dtype, rng))
  x = _inputs(rng, d, dtype)
  x_again = bijector.inverse(tf.identity(bijector.forward(x)))
  assert _rel_err(x_again, x) <= (1e-3 if dtype == np.float32 else 1e-10)


def _float64_log_det_and_gradients(kind, params, x):
  """log|det J| from the float64 autodiff Jacobian, and its input gradient."""
  bijector = make_bijector_from(kind, _upcast(params))
  x = tf.constant(x, tf.float64)
  with tf.GradientTape() as outer:
    outer.watch(x)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = bijector.forward(x)
    jacobian = tape.batch_jacobian(y, x)
    sign, log_abs_det = tf.linalg.slogdet(jacobian)
  assert np.all(sign.numpy() != 0)
  return log_abs_det.numpy(), outer.gradient(log_abs_det, x).numpy()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_log_det_matches_autodiff_jacobian(kind, case, d, dtype):
  """fldj(x) == log|det| of the autodiff Jacobian, and the paper's formula
  in extended precision, to what the dtype allows.

  The log-det cannot be more accurate than its input allows: near the planar
  flow's singular set (w^T u_hat -> -1, h -> 0) its derivative is large, and
  a dot product has a componentwise backward error of D eps |x|; the
  tolerance adds that first-order bound to D + 4 rounding errors of the
  result (radial's (D - 1) log(1 + beta h) term). Measured against the
  extended-precision formula: at most 25 eps (1 + |log det|) beyond the
  propagated bound (radial, D = 40; benchmarks/bijector_error_bounds.py);
  2 (D + 4) allowed.
  """
  rng = _rng(kind, case, d, "jacobian")
  params = case_params(kind, case, d, dtype, rng)
  bijector = make_bijector_from(kind, params)
  x = _inputs(rng, d, dtype, n=16)
  fldj = bijector.forward_log_det_jacobian(x, event_ndims=1).numpy()
  autodiff, grad = _float64_log_det_and_gradients(kind, params, x)
  exact = np.asarray(reference_flows.LOG_DET[kind](params, x), np.longdouble)
  eps = np.finfo(dtype).eps
  propagated = (d + 2) * eps * np.sum(np.abs(grad) * (np.abs(x) + 1.), -1)
  bound = 2 * (d + 4) * eps * (1. + np.abs(exact)) + propagated
  error = np.abs(np.asarray(fldj, np.longdouble) - exact)
  assert np.all(error <= bound), float(np.max(error / bound))
  # The autodiff Jacobian (float64, so only to float64's own accuracy)
  # checks the formula itself.
  np.testing.assert_allclose(autodiff, np.asarray(exact, np.float64),
                             rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_inverse_log_det_is_minus_forward_log_det(kind, case, d):
  """fldj(x) == -ildj(f(x)), through the inverse (no cached x), float64."""
  rng = _rng(kind, case, d, "ildj")
  bijector = make_bijector_from(kind, case_params(kind, case, d, np.float64, rng))
  x = _inputs(rng, d, np.float64, n=16)
  fldj = bijector.forward_log_det_jacobian(x, event_ndims=1).numpy()
  y = tf.identity(bijector.forward(x))
  ildj = bijector.inverse_log_det_jacobian(y, event_ndims=1).numpy()
  np.testing.assert_allclose(-ildj, fldj, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("kind,case", ORDINARY)
def test_inverse_log_det_float32(kind, case, d):
  rng = _rng(kind, case, d, "ildj32")
  bijector = make_bijector_from(kind, case_params(kind, case, d, np.float32, rng))
  x = _inputs(rng, d, np.float32, n=16)
  fldj = bijector.forward_log_det_jacobian(x, event_ndims=1).numpy()
  y = tf.identity(bijector.forward(x))
  ildj = bijector.inverse_log_det_jacobian(y, event_ndims=1).numpy()
  np.testing.assert_allclose(-ildj, fldj, rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_finite_on_many_inputs_with_finite_gradients(kind, case, dtype):
  """10^4 random inputs: every output and every parameter gradient finite."""
  d = 10
  rng = _rng(kind, case, "finite")
  params = [tf.Variable(p) for p in case_params(kind, case, d, dtype, rng)]
  bijector = make_bijector_from(kind, params)
  x = _inputs(rng, d, dtype, n=10_000, scale=3.)
  with tf.GradientTape() as tape:
    y = bijector.forward(x)
    fldj = bijector.forward_log_det_jacobian(x, event_ndims=1)
    x_inv = bijector.inverse(tf.constant(x))
    ildj = bijector.inverse_log_det_jacobian(tf.constant(x), event_ndims=1)
    total = sum(tf.reduce_mean(t) for t in (y, fldj, x_inv, ildj))
  for t in (y, fldj, x_inv, ildj):
    assert np.all(np.isfinite(t.numpy()))
  grads = tape.gradient(total, params)
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_batch_shaped_parameters_act_per_example(kind, case):
  """One parameter set per example equals applying each set to its example."""
  n, d = 5, 3
  rng = _rng(kind, case, "batch")
  params = case_params(kind, case, d, np.float64, rng, batch_shape=(n,))
  bijector = make_bijector_from(kind, params)
  assert bijector.experimental_batch_shape() == [n]
  x = _inputs(rng, d, np.float64, n=n)
  y = bijector.forward(x).numpy()
  fldj = bijector.forward_log_det_jacobian(x, event_ndims=1).numpy()
  x_inv = bijector.inverse(tf.constant(y)).numpy()
  for i in range(n):
    single = make_bijector_from(kind, [p[i] for p in params])
    np.testing.assert_allclose(y[i], single.forward(x[i]), rtol=1e-12)
    np.testing.assert_allclose(
        fldj[i], single.forward_log_det_jacobian(x[i], event_ndims=1),
        rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x_inv[i], single.inverse(tf.constant(y[i])),
                               rtol=1e-9, atol=1e-12)
  # TFP batch slicing follows _parameter_properties.
  sliced = bijector[1:3]
  assert sliced.experimental_batch_shape() == [2]
  np.testing.assert_allclose(sliced.forward(x[1:3]), y[1:3], rtol=1e-12)


@pytest.mark.parametrize("kind", ["planar", "radial"])
def test_shared_parameters_broadcast_over_the_batch(kind):
  """One parameter set for all examples; extra sample dimensions broadcast."""
  rng = _rng(kind, "shared")
  params = case_params(kind, "ordinary", 4, np.float64, rng)
  bijector = make_bijector_from(kind, params)
  x = _inputs(rng, 4, np.float64, n=6).reshape(2, 3, 4)
  y = bijector.forward(x).numpy()
  assert y.shape == (2, 3, 4)
  assert bijector.forward_log_det_jacobian(x, event_ndims=1).shape == (2, 3)
  np.testing.assert_allclose(
      y, reference_flows.FORWARD[kind](params, x).astype(np.float64), rtol=1e-12)
