"""Glow's bijectors on their own: ActNorm, InvertibleConv1x1, AffineCoupling
(affine and additive), SplitPrior.

Round trips (TFP's cache defeated), log-dets against the autodiff Jacobian,
shapes, `tf.function` and XLA, parameter gradients, and clear errors on bad
input, in float32 and float64. The coupling's network is a plain TF function
(3x3 conv, tanh, 1x1 conv) whose weights have the test's dtype.
`tests/test_glow.py` tests the same bijectors as GlowModel builds them from
Keras weights.
"""

import functools
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import (ActNorm, AffineCoupling, InvertibleConv1x1,
                                 SplitPrior)

tfb, tfd = tfp.bijectors, tfp.distributions

KINDS = ("actnorm", "conv1x1", "coupling", "additive_coupling", "split_prior")
DTYPES = (np.float32, np.float64)
IMAGE = (2, 2, 4)  # H, W, C: an event of 16 values, a 16 x 16 Jacobian
# |a - b| / (1 + |b|) of a round trip; every map here has cond <= ~10.
ROUND_TRIP_TOL = {np.float32: 1e-5, np.float64: 1e-12}
# Log-dets of 16-value events, |log det| of order 1.
LOG_DET_TOL = {np.float32: 1e-5, np.float64: 1e-10}
METHODS = {
    "forward": lambda b, x: b.forward(x),
    "inverse": lambda b, x: b.inverse(x),
    "fldj": lambda b, x: b.forward_log_det_jacobian(x, event_ndims=3),
    "ildj": lambda b, x: b.inverse_log_det_jacobian(x, event_ndims=3),
}


def _rng(*key):
  """A generator seeded by the test's parameters (hash() is salted per run)."""
  return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _rel_err(a, b):
  """max |a - b| / (1 + |b|), in extended precision."""
  a, b = np.asarray(a, np.longdouble), np.asarray(b, np.longdouble)
  return float(np.max(np.abs(a - b) / (1. + np.abs(b))))


def _conv_net(x_a, kernel, bias, out_kernel, out_bias):
  """The coupling network: `[..., H, W, C_a] -> [..., H, W, 2 * (C // 2)]`.
  The 3x3 convolution makes every output pixel depend on its neighbours, so
  the coupling's Jacobian is not just block-diagonal per pixel."""
  flat = tf.reshape(x_a, [-1] + x_a.shape[-3:].as_list())
  hidden = tf.tanh(tf.nn.conv2d(flat, kernel, 1, "SAME") + bias)
  out = tf.nn.conv2d(hidden, out_kernel, 1, "SAME") + out_bias
  return tf.reshape(out, x_a.shape[:-1].concatenate(out.shape[-1:]))


def _params(kind, dtype, rng, channels=IMAGE[-1]):
  """A bijector's parameters, NumPy arrays of `dtype` (the permutation int32),
  far enough from the identity that every check sees a non-trivial map."""
  if kind == "actnorm":
    return {"shift": rng.normal(size=channels).astype(dtype),
            "log_scale": (0.5 * rng.normal(size=channels)).astype(dtype)}
  if kind == "conv1x1":
    # A rotation times a diagonal scaling: log|det| != 0, cond <= e.
    rotation, _ = np.linalg.qr(rng.normal(size=(channels, channels)))
    weights = rotation * np.exp(rng.uniform(-0.5, 0.5, size=channels))
    lower_upper, permutation = tf.linalg.lu(tf.constant(weights))
    return {"lower_upper": lower_upper.numpy().astype(dtype),
            "permutation": permutation.numpy().astype(np.int32)}
  # The couplings' and the split prior's networks: `C - C // 2` channels in,
  # a shift (additive) or two values (shift and scale) per other channel out.
  c_a, c_b, hidden = channels - channels // 2, channels // 2, 3
  out = c_b if kind == "additive_coupling" else 2 * c_b
  return {
      "kernel": (0.5 * rng.normal(size=(3, 3, c_a, hidden))).astype(dtype),
      "bias": (0.1 * rng.normal(size=hidden)).astype(dtype),
      "out_kernel": (0.5 * rng.normal(size=(1, 1, hidden, out))
                     ).astype(dtype),
      "out_bias": (0.5 * rng.normal(size=out)).astype(dtype)}


def _build(kind, params):
  """The bijector from `_params` (arrays, tensors or variables)."""
  if kind == "actnorm":
    return ActNorm(params["shift"], params["log_scale"])
  if kind == "conv1x1":
    return InvertibleConv1x1(params["lower_upper"], params["permutation"])
  network = functools.partial(_conv_net, **params)
  if kind == "split_prior":
    return SplitPrior(network)
  return AffineCoupling(network, additive=kind == "additive_coupling")


def _make(kind, dtype, *key, channels=IMAGE[-1]):
  return _build(kind, _params(kind, dtype, _rng(kind, *key), channels))


def _images(rng, dtype, batch_shape=(2,), image=IMAGE):
  return rng.normal(size=tuple(batch_shape) + tuple(image)).astype(dtype)


# Round trips -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_round_trips_without_the_cache(kind, dtype):
  """x -> y -> x and y -> x -> y, each second step on a fresh tensor
  (tf.identity), so TFP's cache cannot hand back the first step's input."""
  bijector = _make(kind, dtype, "round trip")
  rng = _rng(kind, "round trip inputs")
  x, y = _images(rng, dtype), _images(rng, dtype)
  forward_x = bijector.forward(x)
  assert np.max(np.abs(forward_x - x)) > 0.1  # not the identity
  x_again = bijector.inverse(tf.identity(forward_x))
  assert _rel_err(x_again, x) <= ROUND_TRIP_TOL[dtype]
  y_again = bijector.forward(tf.identity(bijector.inverse(y)))
  assert _rel_err(y_again, y) <= ROUND_TRIP_TOL[dtype]


# Log-dets --------------------------------------------------------------------


def _autodiff_log_abs_det(fn, x):
  """log|det| of the Jacobian of `fn` over each flattened `[H, W, C]`
  event of `x` `[N, H, W, C]`, taken in float64 from the autodiff Jacobian
  computed in `x`'s dtype."""
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = fn(x)
  size = int(np.prod(x.shape[1:]))
  jacobian = tape.batch_jacobian(y, x).numpy().reshape(-1, size, size)
  sign, log_abs_det = np.linalg.slogdet(jacobian.astype(np.float64))
  assert np.all(sign != 0)
  return log_abs_det


@pytest.mark.parametrize("channels", [3, 4], ids=["C3", "C4"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_log_dets_match_the_autodiff_jacobian(kind, dtype, channels):
  """fldj(x) and ildj(y), event_ndims=3, equal log|det| of the full
  (HWC x HWC) Jacobian of forward at x and of inverse at y. C = 3 splits the
  coupling unevenly (2 channels condition 1)."""
  bijector = _make(kind, dtype, "jacobian", channels, channels=channels)
  rng = _rng(kind, "jacobian inputs", channels)
  image = IMAGE[:2] + (channels,)
  x, y = _images(rng, dtype, image=image), _images(rng, dtype, image=image)
  tol = LOG_DET_TOL[dtype]
  reference = _autodiff_log_abs_det(bijector.forward, x)
  if kind != "additive_coupling":  # volume-preserving by design
    assert np.min(np.abs(reference)) > 0.1
  fldj = bijector.forward_log_det_jacobian(x, event_ndims=3)
  np.testing.assert_allclose(np.broadcast_to(fldj, [2]), reference, rtol=tol,
                             atol=tol)
  reference = _autodiff_log_abs_det(bijector.inverse, y)
  ildj = bijector.inverse_log_det_jacobian(y, event_ndims=3)
  np.testing.assert_allclose(np.broadcast_to(ildj, [2]), reference, rtol=tol,
                             atol=tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_log_det_is_minus_inverse_log_det_at_the_image(kind, dtype):
  bijector = _make(kind, dtype, "fldj ildj")
  x = _images(_rng(kind, "fldj ildj inputs"), dtype, batch_shape=(3,))
  fldj = bijector.forward_log_det_jacobian(x, event_ndims=3)
  y = tf.identity(bijector.forward(x))  # ildj from y, not from the cache
  ildj = bijector.inverse_log_det_jacobian(y, event_ndims=3)
  tol = LOG_DET_TOL[dtype]
  np.testing.assert_allclose(np.broadcast_to(-ildj, [3]),
                             np.broadcast_to(fldj, [3]), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["actnorm", "conv1x1"])
def test_event_ndims_3_sums_the_per_pixel_log_det(kind):
  """ActNorm and the 1x1 conv act per pixel (min event_ndims 1); with
  event_ndims=3 the log-det is H W times the per-pixel one."""
  bijector = _make(kind, np.float64, "event ndims")
  x = _images(_rng(kind, "event ndims inputs"), np.float64)
  per_pixel = np.broadcast_to(
      bijector.forward_log_det_jacobian(x, event_ndims=1), x.shape[:-1])
  np.testing.assert_allclose(
      np.broadcast_to(bijector.forward_log_det_jacobian(x, event_ndims=3),
                      [2]),
      per_pixel.sum(axis=(-2, -1)), rtol=1e-13)


def test_coupling_needs_event_ndims_3():
  """The coupling mixes pixels and channels: it has no per-pixel log-det."""
  bijector = _make("coupling", np.float32, "event ndims")
  with pytest.raises(ValueError, match="event_ndims must be at least 3"):
    bijector.forward_log_det_jacobian(tf.zeros((2,) + IMAGE), event_ndims=1)


# Shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)],
                         ids=["scalar", "3", "2x3"])
@pytest.mark.parametrize("kind", KINDS)
def test_batch_shapes_pass_through(kind, batch_shape):
  """Inputs [..., H, W, C] of any batch shape: forward and inverse keep the
  shape, log-dets (event_ndims=3) have the batch shape (ActNorm's and the
  conv's are constant, so TFP returns them unbroadcast; they must broadcast
  to it), and each example's results are those it gets in a flat batch."""
  bijector = _make(kind, np.float64, "shapes")
  rng = _rng(kind, "shapes inputs", batch_shape)
  x = _images(rng, np.float64, batch_shape)
  flat = x.reshape((-1,) + IMAGE)
  for name, method in METHODS.items():
    # Fresh tensors: no result comes from the cache of another call.
    out = method(bijector, tf.constant(x)).numpy()
    expected = method(bijector, tf.constant(flat)).numpy()
    if name in ("forward", "inverse"):
      assert out.shape == x.shape, name
      np.testing.assert_allclose(out.reshape(flat.shape), expected,
                                 rtol=1e-14, atol=1e-14, err_msg=name)
    else:
      if kind == "coupling":
        assert out.shape == batch_shape, name
      assert np.broadcast_shapes(out.shape, batch_shape) == batch_shape, name
      np.testing.assert_allclose(
          np.broadcast_to(out, batch_shape).reshape(-1),
          np.broadcast_to(expected, flat.shape[:1]), rtol=1e-14, atol=1e-14,
          err_msg=name)


# tf.function and XLA ---------------------------------------------------------


def _all_four(kind, params, x, y):
  """forward(x), fldj(x), inverse(y), ildj(y) of a bijector built from
  `params` here, inside the function, as the Keras layers build theirs."""
  bijector = _build(kind, params)
  return [method(bijector, x if name in ("forward", "fldj") else y)
          for name, method in METHODS.items()]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_tf_function_and_xla_match_eager(kind, dtype):
  rng = _rng(kind, "compiled")
  params = {name: tf.constant(value)
            for name, value in _params(kind, dtype, rng).items()}
  x = tf.constant(_images(rng, dtype))
  y = tf.constant(_images(rng, dtype))
  eager = _all_four(kind, params, x, y)
  graph = tf.function(functools.partial(_all_four, kind))(params, x, y)
  xla = tf.function(functools.partial(_all_four, kind),
                    jit_compile=True)(params, x, y)
  # XLA may fuse and reorder the arithmetic: equal to a few ulps.
  tol = 64 * np.finfo(dtype).eps
  for name, e, g, c in zip(METHODS, eager, graph, xla):
    assert g.dtype == c.dtype == e.dtype == dtype, name
    np.testing.assert_allclose(g, e, rtol=tol, atol=tol, err_msg=name)
    np.testing.assert_allclose(c, e, rtol=tol, atol=tol, err_msg=name)


# Parameter gradients ---------------------------------------------------------


def _log_prob_sum(kind, params, x):
  """sum of log p(x) under N(0, I) pushed through the bijector (TFP's
  TransformedDistribution: inverse, then ildj)."""
  base = tfd.Sample(tfd.Normal(tf.constant(0., x.dtype), 1.),
                    sample_shape=x.shape[1:])
  q = tfd.TransformedDistribution(base, _build(kind, params))
  return tf.reduce_sum(q.log_prob(x))


def _float_params(params):
  return {k: v for k, v in params.items() if tf.as_dtype(v.dtype).is_floating}


def _gradients(kind, params, x):
  tensors = {k: tf.constant(v) for k, v in params.items()}
  watched = _float_params(tensors)
  with tf.GradientTape() as tape:
    tape.watch(list(watched.values()))
    value = _log_prob_sum(kind, tensors, x)
  return dict(zip(watched, tape.gradient(value, list(watched.values()))))


@pytest.mark.parametrize("kind", KINDS)
def test_parameter_gradients_of_log_prob_match_finite_differences(kind):
  """float64: the gradient of a TransformedDistribution's log_prob w.r.t.
  every entry of every float parameter (shift and log_scale; all of the
  packed LU; the network's weights) against central differences."""
  params = _params(kind, np.float64, _rng(kind, "gradients"))
  x = tf.constant(_images(_rng(kind, "gradient inputs"), np.float64))
  gradients = _gradients(kind, params, x)
  # One trace for the ~150 evaluations of the coupling's 73 weights.
  log_prob_sum = tf.function(functools.partial(_log_prob_sum, kind))
  step = 1e-6
  for name, value in _float_params(params).items():
    numeric = np.zeros(value.size)
    for i in range(value.size):
      shifted = []
      for delta in (step, -step):
        moved = value.copy().reshape(-1)
        moved[i] += delta
        shifted.append(log_prob_sum(
            {**params, name: tf.constant(moved.reshape(value.shape))},
            x).numpy())
      numeric[i] = (shifted[0] - shifted[1]) / (2 * step)
    analytic = gradients[name].numpy().reshape(-1)
    assert np.max(np.abs(analytic)) > 0.1, name  # not a vacuous check
    # Central differences: O(step^2) truncation, O(eps |f| / step) rounding
    # with |f| ~ 100: about 1e-8 here.
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7,
                               err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_parameter_gradients_are_finite_and_match_float64(kind):
  params = _params(kind, np.float64, _rng(kind, "gradients 32"))
  x = _images(_rng(kind, "gradient inputs 32"), np.float64)
  grads64 = _gradients(kind, params, tf.constant(x))
  params32 = {k: v.astype(np.float32) if v.dtype.kind == "f" else v
              for k, v in params.items()}
  grads32 = _gradients(kind, params32, tf.constant(x, tf.float32))
  for name, grad in grads32.items():
    assert grad is not None and np.all(np.isfinite(grad.numpy())), name
    # The same parameters rounded to float32, sums of ~100 terms in float32:
    # they differ by ~1e-7 of the largest component; 1e-5 leaves room.
    np.testing.assert_allclose(grad, grads64[name], rtol=0,
                               atol=1e-5 * np.max(np.abs(grads64[name])),
                               err_msg=name)


# The coupling's network calls ------------------------------------------------


def _counted_coupling():
  """A coupling and the list its network appends to on each call."""
  calls = []
  network = functools.partial(_conv_net, **_params(
      "coupling", np.float32, _rng("counted")))
  coupling = AffineCoupling(lambda x_a: calls.append(1) or network(x_a))
  return coupling, calls


def test_coupling_network_runs_once_for_log_prob_and_for_sampling():
  """test_glow.py counts network calls of GlowModel.log_prob, which runs
  each coupling through tfb.Invert (forward, then fldj). Here the coupling
  is the distribution's own bijector: log_prob goes through inverse and ildj,
  sampling through forward and fldj; each takes one network call, also
  with a gradient."""
  coupling, calls = _counted_coupling()
  base = tfd.Sample(tfd.Normal(0., 1.), sample_shape=IMAGE)
  q = tfd.TransformedDistribution(base, coupling)
  x = tf.constant(_images(_rng("counted inputs"), np.float32))
  with tf.GradientTape() as tape:
    tape.watch(x)
    log_prob = q.log_prob(x)
  tape.gradient(log_prob, x)
  assert len(calls) == 1
  calls.clear()
  samples, sample_log_prob = q.experimental_sample_and_log_prob(2, seed=1)
  assert len(calls) == 1
  # Sampled and scored in one pass, yet the same as scoring from scratch
  # (one more call: a fresh tensor is not in the cache).
  np.testing.assert_allclose(sample_log_prob,
                             q.log_prob(tf.identity(samples)), rtol=1e-5)
  assert len(calls) == 2


def test_chain_log_dets_alone_take_one_network_call_per_coupling():
  """A log-det asked of a point never transformed (a Chain walks forward,
  then takes each log-det at the cached intermediate points) costs one
  network call per coupling, in both directions."""
  coupling, calls = _counted_coupling()
  other, other_calls = _counted_coupling()
  chain = tfb.Chain([other, tfb.Permute([3, 2, 1, 0], axis=-1), coupling])
  rng = _rng("counted chain")
  chain.forward_log_det_jacobian(
      tf.constant(_images(rng, np.float32)), event_ndims=3)
  assert len(calls) == len(other_calls) == 1
  chain.inverse_log_det_jacobian(
      tf.constant(_images(rng, np.float32)), event_ndims=3)
  assert len(calls) == len(other_calls) == 2


# Bad input: parameters -------------------------------------------------------


F32 = np.float32
LU3, PERM3 = (t.numpy() for t in tf.linalg.lu(
    tf.constant(np.eye(3)[[1, 2, 0]] + 0.5 * np.eye(3), tf.float32)))


@pytest.mark.parametrize("make,error,match", [
    (lambda: ActNorm(np.zeros(3, F32), np.zeros(4, F32)), ValueError,
     r"ActNorm: `shift` and `log_scale` must have the same size C \(one "
     r"value per channel\); got shift.shape=\(3,\) and "
     r"log_scale.shape=\(4,\)"),
    (lambda: ActNorm(0., np.zeros(4, F32)), ValueError,
     r"ActNorm: `shift` must have shape \[C\] \(one value per channel\); "
     r"got a scalar"),
    (lambda: ActNorm(np.zeros(2, F32), np.zeros(2)), TypeError,
     r"ActNorm: `shift` and `log_scale` must have the same dtype; got "
     r"shift: float32, log_scale: float64"),
    (lambda: ActNorm(np.zeros(2, np.int64), np.zeros(2, np.int64)),
     TypeError, r"ActNorm: parameters must be floating point .* shift: "
     r"int64, log_scale: int64"),
    (lambda: ActNorm(np.zeros([3, 2], F32), np.zeros([4, 2], F32)),
     ValueError, r"ActNorm: the parameters' batch shapes do not broadcast: "
     r"shift \(3,\), log_scale \(4,\)"),
    (lambda: InvertibleConv1x1(np.ones([3, 4], F32), PERM3), ValueError,
     r"InvertibleConv1x1: `lower_upper` must be square, \[C, C\]; got shape "
     r"\(3, 4\)"),
    (lambda: InvertibleConv1x1(np.ones(3, F32), PERM3), ValueError,
     r"InvertibleConv1x1: `lower_upper` must have shape \[C, C\] \(one "
     r"matrix, no batch shape\); got shape \(3,\)"),
    (lambda: InvertibleConv1x1(np.stack([LU3, LU3]), np.stack([PERM3, PERM3])),
     ValueError, r"`lower_upper` must have shape \[C, C\] .* got shape "
     r"\(2, 3, 3\)"),
    (lambda: InvertibleConv1x1(LU3, PERM3[:2]), ValueError,
     r"InvertibleConv1x1: `permutation` must have shape \[C\] = \[3\] to "
     r"match `lower_upper` of shape \(3, 3\); got shape \(2,\)"),
    (lambda: InvertibleConv1x1(LU3, tf.constant(PERM3, tf.float32)),
     TypeError,
     r"InvertibleConv1x1: `permutation` must be int32 or int64 indices .* "
     r"got float32"),
    (lambda: InvertibleConv1x1(LU3.astype(np.int32), PERM3), TypeError,
     r"InvertibleConv1x1: parameters must be floating point .* "
     r"lower_upper: int32"),
    (lambda: AffineCoupling(3), TypeError,
     r"AffineCoupling: `shift_and_log_scale_fn` must be callable .* got int"),
], ids=["actnorm_sizes", "actnorm_scalar", "actnorm_dtypes", "actnorm_int",
        "actnorm_batch", "conv_non_square", "conv_vector", "conv_batched",
        "conv_permutation_size", "conv_permutation_dtype", "conv_int",
        "coupling_not_callable"])
def test_constructors_fail_fast(make, error, match):
  with pytest.raises(error, match=match):
    make()


def test_conv1x1_keeps_the_dtype_of_numpy_parameters():
  """ScaleMatvecLU converts `lower_upper` with dtype_hint=float32, which made
  a float64 NumPy matrix a float32 bijector; Python numbers stay float32, as
  for every TFP bijector."""
  assert InvertibleConv1x1(LU3.astype(np.float64), PERM3).dtype == tf.float64
  assert InvertibleConv1x1([[1, 0], [0, 1]], [0, 1]).dtype == tf.float32


# Bad input: inputs -----------------------------------------------------------


def _actnorm4():
  return ActNorm(np.zeros(4, F32), np.zeros(4, F32))


def _conv4():
  return _make("conv1x1", F32, "bad input")


def _coupling4():
  return _make("coupling", F32, "bad input")


CHANNEL_ERRORS = {
    "actnorm": (_actnorm4, r"ActNorm: `{arg}` has a channel \(last\) axis "
                           r"of size {c} \(shape \(2, 2, 2, {c}\)\) but "
                           r"`shift` and `log_scale` have size 4"),
    "conv1x1": (_conv4, r"InvertibleConv1x1: `{arg}` has a channel \(last\) "
                        r"axis of size {c} \(shape \(2, 2, 2, {c}\)\) but "
                        r"`lower_upper` is 4 x 4"),
}


@pytest.mark.parametrize("channels", [1, 5])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", CHANNEL_ERRORS)
def test_channel_mismatch_names_the_input_and_the_parameters(kind, method,
                                                             channels):
  """A 1-channel input used to broadcast through ActNorm (a 4-channel
  output), and a log-det of a mismatched input came out as a number."""
  make, match = CHANNEL_ERRORS[kind]
  arg = "x" if method in ("forward", "fldj") else "y"
  with pytest.raises(ValueError, match=match.format(arg=arg, c=channels)):
    METHODS[method](make(), tf.ones([2, 2, 2, channels]))


@pytest.mark.parametrize("method", METHODS)
def test_coupling_with_one_channel_says_it_needs_two(method):
  arg = "x" if method in ("forward", "fldj") else "y"
  with pytest.raises(ValueError, match=(
      rf"AffineCoupling: `{arg}` needs a static channel axis of size >= 2 "
      rf".* got shape \(2, 2, 2, 1\)")):
    METHODS[method](_coupling4(), tf.ones([2, 2, 2, 1]))


@pytest.mark.parametrize("make,x,match", [
    (_actnorm4, tf.constant(1.),
     r"ActNorm: `x` must have shape \[..., C\] with C = 4 channels"),
    (_conv4, tf.constant(1.),
     r"InvertibleConv1x1: `x` must have shape \[..., C\] with C = 4 channels"),
    (_coupling4, tf.ones([2, 4]),
     r"AffineCoupling: `x` must have shape \[..., H, W, C\] \(rank >= 3\); "
     r"got shape \(2, 4\)"),
], ids=["actnorm", "conv1x1", "coupling"])
def test_inputs_of_too_low_rank_are_rejected(make, x, match):
  with pytest.raises(ValueError, match=match):
    make().forward(x)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("make", [_actnorm4, _conv4],
                         ids=["actnorm", "conv1x1"])
def test_input_dtype_mismatch_says_what_to_cast(make, method):
  name = {"fldj": "forward_log_det_jacobian",
          "ildj": "inverse_log_det_jacobian"}.get(method, method)
  with pytest.raises(TypeError, match=(
      rf"\.{name}: `[xy]` has dtype float64 but the flow's parameters are "
      rf"float32; cast it with tf.cast")):
    METHODS[method](make(), tf.ones([2, 2, 2, 4], tf.float64))


@pytest.mark.parametrize("kind", ["actnorm", "conv1x1"])
def test_channel_mismatch_inside_chain_and_distribution(kind):
  """TFP's wrappers reach the same check."""
  bijector = CHANNEL_ERRORS[kind][0]()
  with pytest.raises(ValueError, match="channel \\(last\\) axis of size 3"):
    tfb.Chain([bijector, tfb.Identity()]).forward(tf.ones([2, 2, 2, 3]))
  q = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(0., 1.), [2, 2, 4]), bijector)
  with pytest.raises(ValueError, match="channel \\(last\\) axis of size 3"):
    q.log_prob(tf.ones([2, 2, 2, 3]))


@pytest.mark.parametrize("make", [
    lambda: ActNorm(np.zeros(4, F32), np.zeros(4, F32), validate_args=True),
    lambda: InvertibleConv1x1(**_params("conv1x1", F32, _rng("validate")),
                              validate_args=True),
], ids=["actnorm", "conv1x1"])
def test_validate_args_checks_channels_known_only_at_run_time(make):
  bijector = make()
  forward = tf.function(bijector.forward, input_signature=[
      tf.TensorSpec([None, None, None, None], tf.float32)])
  assert forward(tf.ones([1, 2, 2, 4])).shape == (1, 2, 2, 4)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="last \\(channel\\) axis of `x` must have"):
    forward(tf.ones([1, 2, 2, 3]))


def _network_returning(shape_fn, dtype=tf.float32):
  return AffineCoupling(lambda x_a: tf.zeros(shape_fn(x_a.shape), dtype))


@pytest.mark.parametrize("network,error,match", [
    # One shift and one scale for both channels of x_b: broadcast silently.
    (_network_returning(lambda s: s[:-1] + [2]), ValueError,
     r"AffineCoupling: `shift_and_log_scale_fn` must map its input of shape "
     r"\(2, 2, 2, 2\) to shape \(2, 2, 2, 4\) \(2 \* \(C // 2\) \(shift, "
     r"then raw scale\), C // 2 = 2\); got shape \(2, 2, 2, 2\)"),
    (_network_returning(lambda s: s[:-1] + [6]), ValueError,
     r"to shape \(2, 2, 2, 4\) .* got shape \(2, 2, 2, 6\)"),
    (_network_returning(lambda s: s[:-1] + [3]), ValueError,
     r"must map its input of shape \(2, 2, 2, 2\) to shape \(2, 2, 2\) \+ "
     r"\[2 \* \(C // 2\) \(shift, then raw scale\)\]; got shape "
     r"\(2, 2, 2, 3\)"),
    # A 'valid' 3x3 convolution's output: smaller than the image.
    (_network_returning(lambda s: [s[0], 1, 1, 4]), ValueError,
     r"must map its input of shape \(2, 2, 2, 2\) .* got shape "
     r"\(2, 1, 1, 4\)"),
    (_network_returning(lambda s: s[:-1] + [4], tf.float64), TypeError,
     r"AffineCoupling: `shift_and_log_scale_fn` must return the dtype of "
     r"its input \(float32\); got float64"),
], ids=["too_few_channels", "too_many_channels", "odd_channels",
        "smaller_image", "dtype"])
@pytest.mark.parametrize("method", METHODS)
def test_coupling_network_output_is_checked(network, error, match, method):
  with pytest.raises(error, match=match):
    METHODS[method](network, tf.ones([2, 2, 2, 4]))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
def test_split_prior_is_the_gaussian_of_the_exiting_channels(dtype):
  """Pulled back through SplitPrior, N(0, I) is N(mean(x_kept),
  exp(log_std(x_kept))^2) for the first C // 2 channels times N(0, I) for
  the rest: the paper's learned prior, computed here from scipy-free
  closed forms."""
  params = _params("split_prior", dtype, _rng("split prior density"))
  network = functools.partial(_conv_net, **params)
  prior = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(dtype(0.), dtype(1.)), IMAGE),
      tfb.Invert(SplitPrior(network)))
  x = _images(_rng("split prior density inputs"), dtype, batch_shape=(3,))
  exiting, kept = x[..., :2], x[..., 2:]
  mean, log_std = np.split(network(tf.constant(kept)).numpy(), 2, axis=-1)

  def normal_log_density(value, mean, log_std):
    return (-0.5 * ((value - mean) * np.exp(-log_std)) ** 2 - log_std
            - 0.5 * np.log(2. * np.pi))

  expected = (normal_log_density(exiting, mean, log_std).sum((1, 2, 3))
              + normal_log_density(kept, 0., 0.).sum((1, 2, 3)))
  np.testing.assert_allclose(prior.log_prob(x), expected,
                             rtol=LOG_DET_TOL[dtype])
  assert np.abs(log_std).max() > 0.1  # a prior that is not N(0, I)


def test_split_prior_constructor_and_output_checks_name_it():
  with pytest.raises(TypeError, match=r"SplitPrior: `mean_and_log_std_fn` "
                                      r"must be callable"):
    SplitPrior(3)
  # Half the values it needs: a mean per exiting channel, no log std.
  bijector = SplitPrior(lambda kept: tf.zeros_like(kept))
  with pytest.raises(ValueError, match=(
      r"SplitPrior: `mean_and_log_std_fn` must map its input of shape "
      r"\(2, 2, 2, 2\) to shape \(2, 2, 2, 4\) \(2 \* \(C // 2\) \(mean, then "
      r"log standard deviation\)")):
    bijector.forward(tf.ones([2, 2, 2, 4]))
