"""The Sylvester bijector and its Q constructions against independent
references: the flow and the determinant of its full Jacobian in long double
(no Sylvester determinant identity), autodiff Jacobians, round trips with
TFP's cache defeated, implicit inverse gradients against finite differences,
the polar factor by SVD. Every dtype and execution mode of the bijector and
of the three registered families is in `test_dtype_matrix.py`; the families'
vectorized path against their chain of bijectors in `test_flow_chain.py`."""

import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import (Sylvester, get_family, householder_product,
                                 orthonormalize, sylvester_family)

tfb, tfd = tfp.bijectors, tfp.distributions
LD = np.longdouble

Q_KINDS = ("householder", "orthogonal_full", "orthogonal_half", "reversal")
CASES = ("ordinary", "near_singular", "strong")
EVENT_SIZES = (1, 3, 10, 40)
DTYPES = (np.float32, np.float64)
BATCH = 16


def _rng(*key):
  return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _polar(a):
  u, _, vt = np.linalg.svd(a, full_matrices=False)
  return u @ vt


def _q(kind, d, rng, batch_shape=()):
  """`Q` `[..., D, M]` with orthonormal columns, made in float64."""
  if kind == "householder":
    q = np.broadcast_to(np.eye(d), batch_shape + (d, d)).copy()
    for _ in range(3):
      v = rng.normal(size=batch_shape + (d, 1))
      q = q - 2. * v @ (np.swapaxes(v, -1, -2) @ q) / np.sum(
          v * v, axis=(-2, -1), keepdims=True)
    return q
  if kind == "reversal":
    return np.broadcast_to(np.eye(d)[::-1], batch_shape + (d, d)).copy()
  m = d if kind == "orthogonal_full" else max(1, d // 2)
  return _polar(rng.normal(size=batch_shape + (d, m)))


def _params(kind, case, d, dtype, rng, batch_shape=()):
  """`(q, r1, r2, b)`: ordinary triangles (`R_ii = tanh(N(0, 1))`), nearly
  singular ones (`R1_ii R2_ii = -1 + 1e-3`), strong ones (`c_i` up to 30,
  off-diagonal entries of size 3)."""
  q = _q(kind, d, rng, batch_shape)
  m = q.shape[-1]
  shape = batch_shape + (m, m)
  off = np.triu(rng.normal(size=shape), 1) / np.sqrt(m)
  r1_diag = np.tanh(rng.normal(size=batch_shape + (m,)))
  r2_diag = np.tanh(rng.normal(size=batch_shape + (m,)))
  if case == "near_singular":
    r1_diag = np.full(batch_shape + (m,), 0.5)
    r2_diag = (-1. + 1e-3) / r1_diag
  elif case == "strong":
    off = 3. * off
    r1_diag = rng.uniform(1., 6., size=batch_shape + (m,))
    r2_diag = rng.uniform(1., 5., size=batch_shape + (m,))
  r1 = off + _diag(r1_diag)
  r2 = np.triu(rng.normal(size=shape), 1) / np.sqrt(m) + _diag(r2_diag)
  # A strictly lower part that the bijector must ignore.
  r2 = r2 + np.tril(rng.normal(size=shape), -1)
  b = rng.normal(size=batch_shape + (m,))
  return [np.asarray(p, dtype) for p in (q, r1, r2, b)]


def _diag(v):
  return v[..., :, None] * np.eye(v.shape[-1])


def _reference_forward_and_log_det(params, z, full_determinant=True):
  """`z + Q R1 tanh(R2 Q^T z + b)` and `log|det|` of its full `D x D`
  Jacobian by Gaussian elimination, all in long double; with
  `full_determinant=False`, `log|det|` by the Sylvester identity
  (`det(I + Q A Q^T) = det(I + A)`, `A` triangular) instead, for Jacobians
  too ill-conditioned for elimination."""
  q, r1, r2, b = (np.asarray(p, LD) for p in params)
  # The flow as meant, with Q orthonormal to long-double precision: the
  # determinant of a non-normal Jacobian is sensitive enough that Q's
  # float64 rounding moves it by more than float64's rounding.
  eye = np.eye(q.shape[-1], dtype=LD)
  for _ in range(3):
    q = q @ (1.5 * eye - 0.5 * np.swapaxes(q, -1, -2) @ q)
  r1, r2 = np.triu(r1), np.triu(r2)
  z = np.asarray(z, LD)
  a = np.einsum("...ij,...j->...i", r2,
                np.einsum("...di,...d->...i", q, z)) + b
  y = z + np.einsum("...di,...i->...d", q,
                    np.einsum("...ij,...j->...i", r1, np.tanh(a)))
  sech_sq = 1 / np.cosh(a) ** 2
  if not full_determinant:
    diagonal = np.diagonal(r1, axis1=-2, axis2=-1) * np.diagonal(
        r2, axis1=-2, axis2=-1)
    return y, np.sum(np.log(np.abs(1 + diagonal * sech_sq)), axis=-1)
  jacobian = np.eye(z.shape[-1], dtype=LD) + np.einsum(
      "...di,...ij,...je->...de", q, r1 * sech_sq[..., None, :],
      np.einsum("...ij,...ej->...ie", r2, q))
  return y, _log_abs_det(jacobian)


def _log_abs_det(matrix):
  """log|det| of `[..., D, D]` long-double matrices, partial pivoting."""
  a = np.array(matrix, LD)
  d = a.shape[-1]
  log_det = np.zeros(a.shape[:-2], LD)
  for i in range(d):
    pivot = np.argmax(np.abs(a[..., i:, i]), axis=-1) + i
    index = np.broadcast_to(pivot[..., None, None], a.shape[:-2] + (1, d))
    rows = np.take_along_axis(a, index, axis=-2)
    a_i = np.array(a[..., i:i + 1, :])
    np.put_along_axis(a, index, a_i, axis=-2)
    a[..., i:i + 1, :] = rows
    log_det += np.log(np.abs(a[..., i, i]))
    factor = a[..., i + 1:, i] / a[..., i, i][..., None]
    a[..., i + 1:, :] -= factor[..., None] * a[..., i:i + 1, :]
  return log_det


def _rel_err(got, want):
  got, want = np.asarray(got, LD), np.asarray(want, LD)
  return float(np.max(np.abs(got - want) / (1 + np.abs(want))))


TOLERANCE = {np.float32: 1e-4, np.float64: 1e-11}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("d", EVENT_SIZES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", Q_KINDS)
def test_forward_and_log_det_match_extended_precision(kind, case, d, dtype):
  rng = _rng(kind, case, d)
  params = _params(kind, case, d, dtype, rng)
  x = rng.normal(size=(BATCH, d)).astype(dtype)
  flow = Sylvester(*params)
  # Elimination's error grows with cond(J), here up to ~(1 / (1 + c))^D:
  # past D = 10 the nearly singular case takes the identity's determinant.
  want_y, want_log_det = _reference_forward_and_log_det(
      params, x, full_determinant=case != "near_singular" or d <= 10)
  # The forward pass multiplies by R entries of size up to ~10 (strong):
  # rounding grows with them and with D.
  scale = 1. + max(np.abs(p).max() for p in params[1:3]) * np.sqrt(d)
  assert _rel_err(flow.forward(x), want_y) <= TOLERANCE[dtype] * scale
  assert _rel_err(flow.forward_log_det_jacobian(x, event_ndims=1),
                  want_log_det) <= TOLERANCE[dtype] * scale


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("kind", Q_KINDS)
def test_log_det_matches_autodiff_jacobian(kind, dtype):
  rng = _rng(kind, "autodiff")
  params = _params(kind, "ordinary", 6, dtype, rng)
  x = tf.constant(rng.normal(size=(BATCH, 6)), dtype)
  flow = Sylvester(*params)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = flow.forward(x)
  _, want = np.linalg.slogdet(np.asarray(tape.batch_jacobian(y, x),
                                         np.float64))
  np.testing.assert_allclose(flow.forward_log_det_jacobian(x, event_ndims=1),
                             want, rtol=0, atol=TOLERANCE[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
# D = 40 solves 40 scalar roots one after another, eagerly: 4-5 s a case, so
# those 24 run in the slow suite (CI runs both).
@pytest.mark.parametrize("d", [pytest.param(d, marks=[pytest.mark.slow] *
                                            (d == max(EVENT_SIZES)))
                               for d in EVENT_SIZES])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", Q_KINDS)
def test_inverse_is_backward_stable_and_round_trips(kind, case, d, dtype):
  """|f(f^-1(y)) - y| / (1 + |y|) within the dtype's tolerance (scaled by
  how much f amplifies rounding), and f^-1(f(x)) = x where f is well
  conditioned; `tf.identity` defeats TFP's cache."""
  rng = _rng(kind, case, d, "inverse")
  params = _params(kind, case, d, dtype, rng)
  flow = Sylvester(*params)
  y = (2. * rng.normal(size=(BATCH, d))).astype(dtype)
  x = flow.inverse(tf.identity(y))
  assert np.all(np.isfinite(x))
  scale = 1. + max(np.abs(p).max() for p in params[1:3]) ** 2 * d
  assert _rel_err(flow.forward(tf.identity(x)), y) <= TOLERANCE[dtype] * scale
  if case == "ordinary":
    x0 = rng.normal(size=(BATCH, d)).astype(dtype)
    x_back = flow.inverse(tf.identity(flow.forward(x0)))
    assert _rel_err(x_back, x0) <= TOLERANCE[dtype] * 10


@pytest.mark.parametrize("kind", Q_KINDS)
def test_inverse_log_det_is_minus_forward_log_det(kind):
  rng = _rng(kind, "ildj")
  params = _params(kind, "ordinary", 5, np.float64, rng)
  flow = Sylvester(*params)
  y = rng.normal(size=(BATCH, 5))
  x = flow.inverse(tf.identity(y))
  np.testing.assert_allclose(
      flow.inverse_log_det_jacobian(tf.identity(y), event_ndims=1),
      -flow.forward_log_det_jacobian(tf.identity(x), event_ndims=1),
      rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", Q_KINDS)
def test_inverse_gradients_are_the_implicit_ones(kind):
  """d f^-1(y) / dy = J(x)^-1 (autodiff of the forward pass), and the
  gradients for R1, R2 and b match central finite differences of the
  inverse (float64)."""
  rng = _rng(kind, "implicit")
  d = 4
  q, r1, r2, b = (tf.constant(p) for p in _params(kind, "ordinary", d,
                                                   np.float64, rng))
  y = tf.constant(rng.normal(size=(3, d)))
  weights = tf.constant(rng.normal(size=(3, d)))
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([y, r1, r2, b])
    x = Sylvester(q, r1, r2, b).inverse(y)
    objective = tf.reduce_sum(weights * x)
  with tf.GradientTape() as forward_tape:
    x_const = tf.identity(x)
    forward_tape.watch(x_const)
    y_again = Sylvester(q, r1, r2, b).forward(x_const)
  np.testing.assert_allclose(
      tape.batch_jacobian(x, y),
      np.linalg.inv(forward_tape.batch_jacobian(y_again, x_const)),
      rtol=0, atol=1e-10)
  gradients = tape.gradient(objective, [r1, r2, b])
  step = 1e-6
  for index, param in enumerate((r1, r2, b)):
    flat = param.numpy().reshape(-1)
    entry = int(np.argmax(np.abs(np.triu(param.numpy()).reshape(-1)))
                if param.shape.rank == 2 else 0)
    def inverse_at(delta):
      values = flat.copy()
      values[entry] += delta
      args = [q, r1, r2, b]
      args[index + 1] = tf.constant(values.reshape(param.shape))
      return float(tf.reduce_sum(weights * Sylvester(*args).inverse(y)))
    want = (inverse_at(step) - inverse_at(-step)) / (2 * step)
    got = gradients[index].numpy().reshape(-1)[entry]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_batch_shaped_parameters_act_per_example():
  rng = _rng("batch")
  params = _params("householder", "ordinary", 4, np.float64, rng,
                   batch_shape=(3,))
  x = rng.normal(size=(3, 4))
  flow = Sylvester(*params)
  y = flow.forward(x)
  x_back = flow.inverse(tf.identity(y))
  log_det = flow.forward_log_det_jacobian(x, event_ndims=1)
  for i in range(3):
    single = Sylvester(*[p[i] for p in params])
    np.testing.assert_allclose(y[i], single.forward(x[i]), rtol=1e-12)
    np.testing.assert_allclose(log_det[i], single.forward_log_det_jacobian(
        x[i], event_ndims=1), rtol=1e-12)
  np.testing.assert_allclose(x_back, x, rtol=1e-10, atol=1e-10)
  # Shared parameters broadcast over a batch of inputs.
  shared = Sylvester(*[p[0] for p in params])
  assert shared.forward(x).shape == (3, 4)
  assert shared.inverse(tf.identity(x)).shape == (3, 4)


def test_transformed_distribution_integrates_to_one_in_two_dimensions():
  """The density of a Sylvester flow of a normal, on a grid, sums to 1."""
  rng = _rng("density")
  params = _params("orthogonal_full", "strong", 2, np.float64, rng)
  dist = tfd.TransformedDistribution(
      tfd.MultivariateNormalDiag(loc=tf.zeros(2, tf.float64)),
      Sylvester(*params))
  grid = np.linspace(-25., 25., 501)
  points = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
  mass = np.exp(dist.log_prob(points)).sum() * (grid[1] - grid[0]) ** 2
  np.testing.assert_allclose(mass, 1., atol=2e-3)


# Q constructions ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=str)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_orthonormalize_is_the_polar_factor(dtype, jit_compile):
  rng = _rng("polar")
  raw = rng.normal(size=(5, 7, 3))
  raw[0, :, 2] = raw[0, :, 1] + 1e-3 * raw[0, :, 2]  # nearly rank deficient
  got = tf.function(orthonormalize, jit_compile=jit_compile)(
      tf.constant(raw, dtype))
  tolerance = 1e-5 if dtype == tf.float32 else 1e-12
  np.testing.assert_allclose(got, _polar(raw), rtol=0, atol=tolerance * 100)
  gram = np.einsum("...di,...dj->...ij", got.numpy(), got.numpy())
  np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), gram.shape),
                             rtol=0, atol=tolerance * 10)


def _unrolled_bjorck(raw, iterations=60):
  """The paper's iteration unrolled a fixed number of times, differentiated
  by autodiff through every step: the reference for `orthonormalize`'s
  analytic gradient (converged to float64 rounding for these inputs)."""
  a = raw / tf.norm(raw, axis=[-2, -1], keepdims=True)
  eye = tf.eye(raw.shape[-1], dtype=raw.dtype)
  for _ in range(iterations):
    a = a + 0.5 * tf.linalg.matmul(
        a, eye - tf.linalg.matmul(a, a, transpose_a=True))
  return a


def polar_gradient_error(dtype, mode):
  """`orthonormalize`'s gradient in `dtype` and `mode` ("eager", "function",
  "xla") against autodiff of the unrolled iteration in float64: the largest
  difference relative to the largest entry (benchmarks/
  polar_gradient_error.py prints it for every dtype and mode)."""
  rng = _rng("polar gradient " + mode)
  raw = rng.normal(size=(3, 2, 7, 4))  # batch [3, 2], D = 7, M = 4
  raw[0, 0, :, 3] = raw[0, 0, :, 2] + 0.05 * raw[0, 0, :, 3]  # ill-conditioned
  weights = rng.normal(size=raw.shape)

  def gradient(orthonormalize_fn, raw):
    with tf.GradientTape() as tape:
      tape.watch(raw)
      objective = tf.reduce_sum(tf.cast(weights, raw.dtype)
                                * orthonormalize_fn(raw))
    return tape.gradient(objective, raw)

  got_fn = (lambda raw: gradient(orthonormalize, raw)) if mode == "eager" \
      else tf.function(lambda raw: gradient(orthonormalize, raw),
                       jit_compile=mode == "xla")
  got = np.asarray(got_fn(tf.constant(raw, dtype)), np.float64)
  want = gradient(_unrolled_bjorck, tf.constant(raw, tf.float64)).numpy()
  return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=str)
@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_orthonormalize_gradient_is_the_unrolled_iterations(dtype, mode):
  # Measured (benchmarks/polar_gradient_error.py): float32 0.7-1.5e-6
  # (rounding, amplified by the ill-conditioned matrix's 1 / smallest
  # singular value), float64 under 1e-14 in every mode. Under XLA, float64
  # was 1e-8 before the gradient's refinement step (XLA's eigh is a Jacobi
  # iteration that stops early), so this tolerance is what checks that
  # step. About 100x margin.
  tolerance = 1e-4 if dtype == tf.float32 else 1e-12
  assert polar_gradient_error(dtype, mode) <= tolerance


def test_orthonormalize_gradient_matches_finite_differences():
  rng = _rng("polar gradient")
  raw = tf.constant(rng.normal(size=(4, 2)))
  weights = tf.constant(rng.normal(size=(4, 2)))
  with tf.GradientTape() as tape:
    tape.watch(raw)
    objective = tf.reduce_sum(weights * orthonormalize(raw))
  gradient = tape.gradient(objective, raw).numpy()
  step = 1e-6
  for i, j in [(0, 0), (3, 1), (2, 0)]:
    delta = np.zeros((4, 2))
    delta[i, j] = step
    want = (float(tf.reduce_sum(weights * orthonormalize(raw + delta)))
            - float(tf.reduce_sum(weights * orthonormalize(raw - delta)))) / (
                2 * step)
    np.testing.assert_allclose(gradient[i, j], want, rtol=1e-6, atol=1e-9)


def test_householder_product_is_the_product_of_reflections():
  rng = _rng("householder")
  vectors = rng.normal(size=(2, 3, 5))
  vectors[1, 1] = 0.  # a zero normal is no reflection
  want = np.broadcast_to(np.eye(5), (2, 5, 5)).copy()
  for j in range(3):
    for n in range(2):
      v = vectors[n, j][:, None]
      reflection = (np.eye(5) - 2 * v @ v.T / (v.T @ v) if np.any(v)
                    else np.eye(5))
      want[n] = want[n] @ reflection
  got = householder_product(tf.constant(vectors))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
  x = rng.normal(size=(2, 5, 4))
  np.testing.assert_allclose(householder_product(tf.constant(vectors), x),
                             want @ x, rtol=0, atol=1e-12)


# The families --------------------------------------------------------------

FAMILIES = ("sylvester_householder", "sylvester_orthogonal",
            "sylvester_triangular")


@pytest.mark.parametrize("family", FAMILIES)
def test_family_bijectors_have_valid_parameters(family):
  """Any raw vector gives orthonormal `Q` and `R1_ii R2_ii > -1`: the
  bijectors pass `validate_args`, whose checks are the flow's conditions."""
  family = get_family(family)
  dim = 6
  params = tf.constant(3. * _rng(family.name).normal(
      size=(4, 3, family.param_size(dim))))
  for bijector in family.bijectors(params, dim):
    checked = Sylvester(bijector.q, bijector.r1, bijector.r2, bijector.b,
                        validate_args=True)
    assert np.all(np.isfinite(checked.forward(tf.ones([4, dim], tf.float64))))


@pytest.mark.parametrize("family", FAMILIES)
def test_near_identity_is_a_volume_preserving_shear_with_live_gradients(
    family):
  family = get_family(family)
  dim, num_flows = 8, 3
  params = tf.Variable(family.near_identity(num_flows, dim, seed=0))
  z = tf.constant(_rng("shear").normal(size=(32, dim)), tf.float32)
  with tf.GradientTape() as tape:
    y, log_det = family.forward_and_log_det(params, dim, z)
    objective = tf.reduce_sum(tf.sin(3. * y))
  np.testing.assert_array_equal(log_det, 0.)
  moved = np.abs(y - z).max()
  assert 0. < moved < 1.
  gradient = tape.gradient(objective, params).numpy()
  # Every block of a step's parameters gets a gradient (F: R1's and R2's
  # off-diagonal entries and R1's diagonal; R2's diagonal; b; Q's values):
  # unlike R1 = 0, this start is no stationary point of any of them.
  m = dim  # M = D for these three families at their defaults (M = 8 = D)
  blocks = np.split(gradient, [m * m, m * m + m, m * m + 2 * m], axis=-1)
  for block in blocks:
    if block.size:
      assert np.count_nonzero(block) > 0.5 * block.size


def test_triangular_steps_alternate_their_permutation():
  family = get_family("sylvester_triangular")
  params = tf.zeros([2, family.param_size(3)])
  first, second = family.bijectors(params, 3)
  np.testing.assert_array_equal(first.q, np.eye(3))
  np.testing.assert_array_equal(second.q, np.eye(3)[::-1])


def test_sylvester_family_fails_fast():
  with pytest.raises(ValueError, match="q_map must be one of"):
    sylvester_family("givens", "x")
  with pytest.raises(ValueError, match="num_reflections"):
    sylvester_family("householder", "x", num_reflections=0)
  # M is at most D: 4 (4 + 2) reals for R1, R2, b and 4 x 4 for Q.
  assert sylvester_family("orthogonal", "x", num_vectors=9).param_size(4) == (
      4 * 6 + 16)


# Bad input -----------------------------------------------------------------


@pytest.mark.parametrize("shapes, message", [
    (((3, 2), (2, 2), (3, 3), (2,)), "must agree on M"),
    (((3, 2), (2, 2), (2, 2), (3,)), "must agree on M"),
    (((2, 3), (3, 3), (3, 3), (3,)), "at most D orthonormal columns"),
    (((3,), (2, 2), (2, 2), (2,)), "`q` must have rank >= 2"),
    (((3, 2), (2, 2), (2, 2), ()), "`b` must have rank >= 1"),
    (((4, 3, 2), (2, 2), (5, 2, 2), (2,)), "batch shapes do not broadcast"),
])
def test_shape_errors_name_the_parameters(shapes, message):
  with pytest.raises(ValueError, match=message):
    Sylvester(*[np.zeros(s, np.float32) for s in shapes])


def test_integer_parameters_are_rejected():
  with pytest.raises(TypeError, match="floating point"):
    Sylvester(np.eye(2, dtype=np.int32), np.eye(2, dtype=np.int32),
              np.eye(2, dtype=np.int32), np.zeros(2, np.int32))


def test_input_of_the_wrong_size_or_dtype_is_named():
  flow = Sylvester(*_params("householder", "ordinary", 3, np.float32,
                            _rng("bad input")))
  with pytest.raises(ValueError, match="event size 4"):
    flow.forward(tf.zeros([2, 4]))
  with pytest.raises(TypeError, match="tf.cast"):
    flow.inverse(tf.zeros([2, 3], tf.float64))


@pytest.mark.parametrize("bad, message", [
    ("non_invertible", "R1_ii R2_ii must be > -1"),
    ("not_orthonormal", "columns of `q` must be orthonormal"),
    ("nan", "must be finite"),
])
def test_validate_args_rejects_invalid_values(bad, message):
  q, r1, r2, b = _params("orthogonal_half", "ordinary", 4, np.float32,
                         _rng("validate"))
  if bad == "non_invertible":
    r1[0, 0], r2[0, 0] = 2., -0.5
  elif bad == "not_orthonormal":
    q = 1.1 * q
  else:
    b[0] = np.nan
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                     match=message):
    flow = Sylvester(q, r1, r2, b, validate_args=True)
    flow.forward(tf.zeros([1, 4]))
  # Variables are checked at use.
  variables = [tf.Variable(p) for p in (q, r1, r2, b)]
  flow = Sylvester(*variables, validate_args=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    flow.forward(tf.zeros([1, 4]))


def test_inverse_needs_a_static_number_of_hidden_units():
  @tf.function(input_signature=[tf.TensorSpec([3, None]),
                                tf.TensorSpec([None, None]),
                                tf.TensorSpec([None]), tf.TensorSpec([2, 3])])
  def inverse(q, r, b, y):
    return Sylvester(q, r, r, b).inverse(y)

  with pytest.raises(ValueError, match="number M of columns of `q`"):
    inverse.get_concrete_function()
