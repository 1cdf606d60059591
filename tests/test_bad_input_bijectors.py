"""Planar and Radial on bad input: clear errors, or finite and correct results.

Errors are checked statically (shapes, dtypes; free at run time) and name
the argument, the expected and the received. Parameter values are checked
only under `validate_args=True` (TFP's convention). Extreme but valid
parameters and inputs in float32 must give finite outputs and finite
gradients w.r.t. both the input and every parameter.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from flow_cases import ALL_CASES, case_params, make_bijector_from
from tfp_flows.bijectors import Planar, Radial

tfb, tfd = tfp.bijectors, tfp.distributions
F32 = np.float32


def _planar(**kwargs):
  return Planar([1., 0.], [0.5, 0.5], 0., **kwargs)


def _radial(**kwargs):
  return Radial([0., 0.], 1., 0.5, **kwargs)


MAKERS = {"planar": _planar, "radial": _radial}
PARAM_OF_D = {"planar": "w", "radial": "z0"}
METHODS = {
    "forward": lambda b, x: b.forward(x),
    "inverse": lambda b, x: b.inverse(x),
    "fldj": lambda b, x: b.forward_log_det_jacobian(x, event_ndims=1),
    "ildj": lambda b, x: b.inverse_log_det_jacobian(x, event_ndims=1),
}


# Static errors ---------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("shape", [(4, 3), (4, 1)], ids=["D3", "D1"])
def test_event_size_mismatch_names_the_input_and_the_parameter(kind, method,
                                                               shape):
  """x of size 1 used to broadcast silently to D = 2, size 3 to fail inside
  a TensorFlow op."""
  arg = "x" if method in ("forward", "fldj") else "y"
  with pytest.raises(ValueError, match=(
      rf"{kind.title()}: `{arg}` has event size {shape[1]} .* but "
      rf"`{PARAM_OF_D[kind]}` has size 2")):
    METHODS[method](MAKERS[kind](), tf.ones(shape))


@pytest.mark.parametrize("kind", MAKERS)
def test_event_size_mismatch_inside_chain_and_distribution(kind):
  """TFP's wrappers reach the same check."""
  bijector = MAKERS[kind]()
  with pytest.raises(ValueError, match="event size 3"):
    tfb.Chain([bijector, tfb.Identity()]).forward(tf.ones([2, 3]))
  q = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)),
                                  bijector)
  with pytest.raises(ValueError, match="event size 3"):
    q.log_prob(tf.ones([2, 3]))


@pytest.mark.parametrize("kind", MAKERS)
def test_scalar_input_is_rejected(kind):
  with pytest.raises(ValueError, match="must have shape \\[..., D\\] with D = 2"):
    MAKERS[kind]().forward(tf.constant(1.))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("x_dtype", [tf.int32, tf.float64, tf.float16])
def test_input_dtype_mismatch_says_what_to_cast(kind, method, x_dtype):
  name = {"fldj": "forward_log_det_jacobian",
          "ildj": "inverse_log_det_jacobian"}.get(method, method)
  with pytest.raises(TypeError, match=(
      rf"{kind.title()}\.{name}: `[xy]` has dtype {x_dtype.name} but the "
      rf"flow's parameters are float32; cast it with tf.cast")):
    METHODS[method](MAKERS[kind](), tf.ones([2, 2], x_dtype))


def test_float64_parameters_with_float32_input():
  planar = Planar(np.array([1., 0.]), np.array([.5, .5]), np.float64(0.))
  with pytest.raises(TypeError, match="dtype float32 but the flow's "
                                      "parameters are float64"):
    planar.forward(tf.ones([1, 2]))
  # NumPy and Python inputs are converted, as TFP does for any bijector.
  assert planar.forward(np.ones([1, 2], np.float32)).dtype == tf.float64
  assert _radial().forward([[1, 2]]).dtype == tf.float32


@pytest.mark.parametrize("make,match", [
    (lambda: Planar(np.array([1, 0]), np.array([1, 1]), 0),
     "Planar: parameters must be floating point .* u: int64, w: int64, b: int"),
    (lambda: Radial(tf.constant([0, 0]), 1, 0),
     "Radial: parameters must be floating point .* z0: int32"),
    (lambda: Radial.from_unconstrained(tf.constant([0, 0]), 1, 0),
     "Radial.from_unconstrained: parameters must be floating point"),
], ids=["planar", "radial", "radial_from_unconstrained"])
def test_integer_parameters_are_rejected(make, match):
  with pytest.raises(TypeError, match=match):
    make()


def test_python_int_parameters_become_float32():
  assert Planar([1, 0], [1, 1], 0).dtype == tf.float32
  assert Radial.from_unconstrained([0., 0.], 1, 0).dtype == tf.float32


@pytest.mark.parametrize("make,match", [
    (lambda: Planar(np.ones([3, 2], F32), np.ones([3, 2], F32),
                    np.zeros(4, F32)),
     r"Planar: the parameters' batch shapes do not broadcast: u \(3,\), "
     r"w \(3,\), b \(4,\)"),
    (lambda: Radial(np.ones([3, 2], F32), np.ones(4, F32), np.ones(4, F32)),
     r"Radial: the parameters' batch shapes do not broadcast: z0 \(3,\), "
     r"alpha \(4,\)"),
    (lambda: Radial.from_unconstrained([0., 0.], np.zeros(3, F32),
                                       np.zeros(4, F32)),
     r"Radial.from_unconstrained: the parameters' batch shapes do not "
     r"broadcast: raw_alpha \(3,\), raw_beta \(4,\)"),
], ids=["planar", "radial", "radial_from_unconstrained"])
def test_parameter_batch_shapes_must_broadcast(make, match):
  with pytest.raises(ValueError, match=match):
    make()


@pytest.mark.parametrize("kind", MAKERS)
def test_input_batch_must_broadcast_with_parameter_batch(kind):
  """Three flows (one per example) and four examples."""
  bijector = (Planar(np.ones([3, 2], F32), np.ones([3, 2], F32),
                     np.zeros(3, F32)) if kind == "planar" else
              Radial(np.zeros([3, 2], F32), np.ones(3, F32), np.ones(3, F32)))
  with pytest.raises(ValueError, match=(
      r"`x` has batch shape \(4,\) .* does not broadcast with the "
      r"parameters' batch shape \(3,\)")):
    bijector.forward(tf.ones([4, 2]))


def test_from_unconstrained_broadcasts_raw_alpha_and_raw_beta():
  """beta depends on both raw values: a per-example raw_alpha with a shared
  raw_beta used to fail with 'Actual shape ((2,)) is incompatible with
  deferred shape (())'."""
  radial = Radial.from_unconstrained([0., 0.], np.array([0., 1.], F32), 0.)
  x = np.array([[1., 2.], [-1., .5]], F32)
  for i in range(2):
    single = Radial.from_unconstrained([0., 0.], F32([0., 1.][i]), 0.)
    np.testing.assert_allclose(radial.forward(x)[i], single.forward(x[i]),
                               rtol=1e-6)


# Non-finite parameters ---------------------------------------------------------


NON_FINITE_PARAMS = [
    ("planar", "u", lambda v: Planar([v, 0.], [1., 1.], 0., validate_args=True)),
    ("planar", "w", lambda v: Planar([1., 0.], [1., v], 0., validate_args=True)),
    ("planar", "b", lambda v: Planar([1., 0.], [1., 1.], v, validate_args=True)),
    ("radial", "z0", lambda v: Radial([v, 0.], 1., 0., validate_args=True)),
    ("radial", "alpha", lambda v: Radial([0., 0.], v, 0., validate_args=True)),
    ("radial", "beta", lambda v: Radial([0., 0.], 1., v, validate_args=True)),
]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind,name,make", NON_FINITE_PARAMS,
                         ids=[f"{k}-{n}" for k, n, _ in NON_FINITE_PARAMS])
def test_validate_args_rejects_non_finite_constant_parameters(kind, name, make,
                                                              value):
  with pytest.raises(ValueError, match=rf"`{name}` must be finite"):
    make(value)


@pytest.mark.parametrize("kind,index,name", [
    ("planar", 0, "u"), ("planar", 1, "w"), ("planar", 2, "b"),
    ("radial", 0, "z0"), ("radial", 1, "alpha"), ("radial", 2, "beta")])
def test_validate_args_rejects_non_finite_variables_at_use(kind, index, name):
  """A variable that turns NaN during training is caught at the next use,
  reported as non-finite (not as, say, alpha <= 0)."""
  params = [tf.Variable(p) for p in (
      ([1., 0.], [1., 1.], 0.) if kind == "planar" else ([0., 0.], 1., 0.))]
  bijector = (Planar if kind == "planar" else Radial)(*params,
                                                      validate_args=True)
  bijector.forward(tf.ones([1, 2]))
  params[index].assign(np.full(params[index].shape, np.nan, F32))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf"`{name}` must be finite"):
    bijector.forward(tf.ones([1, 2]))


def test_validate_args_from_unconstrained_reports_nan_as_nan():
  raw_alpha = tf.Variable(0.)
  radial = Radial.from_unconstrained([0., 0.], raw_alpha, 0.,
                                     validate_args=True)
  raw_alpha.assign(np.nan)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="`alpha` must be finite"):
    radial.forward(tf.ones([1, 2]))


def test_radial_constant_alpha_beta_are_checked_even_without_validate_args():
  """As for alpha <= 0, constants cost nothing to check when built."""
  with pytest.raises(ValueError, match="`alpha` must be finite; got nan"):
    Radial([0., 0.], np.nan, 0.)
  with pytest.raises(ValueError, match="`beta` must be finite; got inf"):
    Radial([0., 0.], 1., np.inf)


@pytest.mark.parametrize("kind", MAKERS)
def test_without_validate_args_non_finite_parameters_propagate(kind):
  """TFP's convention, documented: no run-time checks, NaN in, NaN out."""
  bijector = (Planar([np.nan, 0.], [1., 1.], 0.) if kind == "planar"
              else Radial([np.nan, 0.], 1., 0.))
  assert np.isnan(bijector.forward(tf.ones([2, 2])).numpy()).any()


# Non-finite inputs, empty and single batches ---------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", MAKERS)
def test_non_finite_row_does_not_poison_the_others(kind, bad):
  rng = np.random.default_rng(0)
  good = rng.normal(size=(5, 2)).astype(F32)
  x = good.copy()
  x[2, 0] = bad
  bijector = MAKERS[kind]()
  for name, method in METHODS.items():
    x_var = tf.Variable(x)
    with tf.GradientTape() as tape:
      out = method(bijector, x_var)
      # Sum over the good rows only: their gradient must not see row 2.
      total = tf.reduce_sum(tf.gather(out, [0, 1, 3, 4]))
    expected = method(bijector, tf.constant(good)).numpy()
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(out.numpy()[keep], expected[keep], rtol=1e-6,
                               err_msg=name)
    grad = tape.gradient(total, x_var).numpy()
    assert np.all(np.isfinite(grad[keep])), name


@pytest.mark.parametrize("kind", MAKERS)
def test_empty_batch_and_batch_of_one(kind):
  bijector = MAKERS[kind]()
  x = np.random.default_rng(1).normal(size=(3, 2)).astype(F32)
  for name, method in METHODS.items():
    empty = method(bijector, tf.zeros([0, 2]))
    assert empty.shape[0] == 0, name
    one = method(bijector, tf.constant(x[1:2]))
    assert one.shape[0] == 1, name
    np.testing.assert_allclose(one, method(bijector, tf.constant(x))[1:2],
                               rtol=1e-6, err_msg=name)
  # An empty batch also trains: zero, not NaN, gradients.
  params = [tf.Variable(p) for p in (
      ([1., 0.], [.5, .5], 0.) if kind == "planar" else ([0., 0.], 1., .5))]
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(
        (Planar if kind == "planar" else Radial)(*params)
        .forward_log_det_jacobian(tf.zeros([0, 2]), event_ndims=1))
  for grad in tape.gradient(loss, params):
    assert grad is not None and np.all(grad.numpy() == 0.)


# Extremes in float32: finite values and gradients ----------------------------


def _values_and_gradients(make, params, x):
  """Each of forward, inverse and both log-dets, with its gradient w.r.t.
  the input and every parameter (one tape per quantity, so a NaN cannot
  hide in a sum)."""
  params = [tf.Variable(np.asarray(p, F32)) for p in params]
  x = tf.Variable(np.asarray(x, F32))
  results = {}
  for name, method in METHODS.items():
    with tf.GradientTape() as tape:
      out = method(make(*params), tf.identity(x))
      total = tf.reduce_sum(out)
    results[name] = (out.numpy(), [None if g is None else g.numpy()
                                   for g in tape.gradient(total, [x] + params)])
  return results


def _assert_finite(results):
  for name, (value, grads) in results.items():
    assert np.all(np.isfinite(value)), f"{name}: {value}"
    for i, grad in enumerate(grads):
      assert grad is not None and np.all(np.isfinite(grad)), (
          f"d {name} / d {'x' if i == 0 else f'param {i}'}: {grad}")


RNG = np.random.default_rng(7)
D = 3
W_DIR = RNG.normal(size=D)
W_DIR /= np.linalg.norm(W_DIR)
U_DIR = RNG.normal(size=D)
U_DIR /= np.linalg.norm(U_DIR)
Z0 = RNG.normal(size=D)
# Random points, and one on the hyperplane w^T x + b = 0 (b = 0) or at z0.
X_PLANAR = np.concatenate([3. * RNG.normal(size=(6, D)), np.zeros((1, D))])
X_RADIAL = np.concatenate([Z0 + 3. * RNG.normal(size=(6, D)), Z0[None]])

PLANAR_EXTREMES = {
    # ||w|| tiny: u_hat ~ 1 / ||w||; the gradient of 1 / ||w||^2 was formed
    # through ||w||^-4 and overflowed below ||w|| ~ 1e-10.
    "w_norm_1e-10": ([U_DIR, 1e-10 * W_DIR, 0.], X_PLANAR),
    "w_norm_1e-15": ([U_DIR, 1e-15 * W_DIR, 0.], X_PLANAR),
    "w_norm_1e8": ([U_DIR, 1e8 * W_DIR, 0.], X_PLANAR),
    # w^T u << 0: w^T u_hat -> -1, the invertibility limit; 1 + w^T u_hat
    # underflows for w^T u < -88 and the log-det at h = 0 was -inf (NaN
    # gradients from w^T u = -30 on).
    "wTu_-30": ([-15. * W_DIR, 2. * W_DIR, 0.], X_PLANAR),
    "wTu_-100": ([-50. * W_DIR, 2. * W_DIR, 0.], X_PLANAR),
    "wTu_-1e4": ([-5e3 * W_DIR, 2. * W_DIR, 0.], X_PLANAR),
    "wTu_1e8": ([5e7 * W_DIR, 2. * W_DIR, 0.], X_PLANAR),
    "b_1e30": ([U_DIR, W_DIR, 1e30], X_PLANAR),
    "b_-1e30": ([U_DIR, W_DIR, -1e30], X_PLANAR),
    "x_1e30": ([U_DIR, W_DIR, .1], 1e30 * X_PLANAR),
}
RADIAL_EXTREMES = {
    "alpha_1e-8": ([Z0, 1e-8, 1.], X_RADIAL),
    "alpha_1e-8_beta_near_bound": ([Z0, 1e-8, -1e-8 * (1. - 1e-3)], X_RADIAL),
    "alpha_1e15": ([Z0, 1e15, 1.], X_RADIAL),
    "alpha_1e15_beta_near_bound": ([Z0, 1e15, -1e15 * (1. - 1e-3)], X_RADIAL),
    "beta_1e20": ([Z0, 1., 1e20], X_RADIAL),
    # beta = -alpha is allowed; only x = z0 itself is singular.
    "beta_at_bound_off_z0": ([Z0, 2., -2.], X_RADIAL[:-1]),
    # ||x - z0||^2 overflowed float32 from ||x - z0|| ~ 1e19: NaN.
    "x_1e19_from_z0": ([Z0, 1., .5], Z0 + 1e19 * (X_RADIAL - Z0)),
    "x_1e30_from_z0": ([Z0, 1., .5], Z0 + 1e30 * (X_RADIAL - Z0)),
    "x_1e30_from_z0_beta_at_bound": ([Z0, 1., -1.],
                                     Z0 + 1e30 * (X_RADIAL[:-1] - Z0)),
}


@pytest.mark.parametrize("case", PLANAR_EXTREMES)
def test_planar_extremes_float32_finite_with_gradients(case):
  params, x = PLANAR_EXTREMES[case]
  _assert_finite(_values_and_gradients(Planar, params, x))


@pytest.mark.parametrize("case", RADIAL_EXTREMES)
def test_radial_extremes_float32_finite_with_gradients(case):
  params, x = RADIAL_EXTREMES[case]
  _assert_finite(_values_and_gradients(Radial, params, x))


@pytest.mark.parametrize("w_dot_u", [-30., -100., -1e4])
def test_planar_log_det_on_the_hyperplane_near_the_invertibility_limit(w_dot_u):
  """At h = w^T x + b = 0, log|det J| = log(1 + w^T u_hat) =
  log softplus(w^T u) ~ w^T u: finite in float32, not log(0) = -inf."""
  planar = Planar(F32(w_dot_u / 2.) * W_DIR.astype(F32), 2. * W_DIR.astype(F32),
                  F32(0.))
  fldj = planar.forward_log_det_jacobian(tf.zeros([1, D]), event_ndims=1)
  # log log1p(e^x) = x - e^x / 2 + O(e^2x); e^x underflows float64 too.
  expected = w_dot_u - 0.5 * np.exp(w_dot_u)
  np.testing.assert_allclose(fldj.numpy(), [expected], rtol=1e-5)


def test_radial_far_input_matches_float64():
  """Far from z0 the flow is a translation-free rescaling by ~1; float32
  used to return NaN from ||x - z0||^2 = inf."""
  x = Z0 + 1e25 * (X_RADIAL[:3] - Z0)
  params64 = [Z0, 1., .5]
  radial32 = Radial(*[np.asarray(p, F32) for p in params64])
  radial64 = Radial(*[np.asarray(p, np.float64) for p in params64])
  np.testing.assert_allclose(radial32.forward(x.astype(F32)),
                             radial64.forward(x), rtol=1e-6)
  np.testing.assert_allclose(
      radial32.forward_log_det_jacobian(x.astype(F32), event_ndims=1),
      radial64.forward_log_det_jacobian(x, event_ndims=1), atol=1e-6)
  np.testing.assert_allclose(radial32.inverse(tf.constant(x, tf.float32)),
                             radial64.inverse(tf.constant(x)), rtol=1e-6)


@pytest.mark.parametrize("kind,case", ALL_CASES)
def test_input_gradients_finite_at_the_shared_cases_float32(kind, case):
  """flow_cases' ordinary and extreme parameters: test_bijector_math checks
  parameter gradients there; this adds gradients w.r.t. the input, for each
  quantity separately."""
  rng = np.random.default_rng(11)
  params = case_params(kind, case, 10, F32, rng)
  x = (3. * rng.normal(size=(64, 10))).astype(F32)
  _assert_finite(_values_and_gradients(
      lambda *p: make_bijector_from(kind, p), params, x))
