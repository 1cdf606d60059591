"""Planar flow bijector (Rezende & Mohamed, 2015)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

# TFP internals (variables kept as references, TFP's dtype rules) come
# through tfp_flows._internal, the one module that names private APIs.
from tfp_flows import _internal
from tfp_flows.bijectors.families import FlowFamily, register_family

from tfp_flows.bijectors.checks import (CheckedInputs, assert_finite,
                                        check_float_params, check_input_shape,
                                        eps, norm, static_batch_shape)

tfb = tfp.bijectors

__all__ = ["PLANAR", "Planar", "log_one_plus_c_sech_sq",
           "planar_constrained_params", "planar_step"]


class Planar(CheckedInputs, tfb.AutoCompositeTensorBijector):
  r"""Planar flow `f(z) = z + u_hat * tanh(w^T z + b)`.

  The planar flow of Rezende & Mohamed (2015), "Variational Inference with
  Normalizing Flows", Sec. 4.1, with the reparametrization of their
  Appendix A.1 that makes it invertible for any `u, w, b`:

  ```none
  u_hat = u + (m(w^T u) - w^T u) * w / ||w||^2,   m(x) = -1 + softplus(x)
  ```

  so that `w^T u_hat = m(w^T u) > -1`. (Dividing by `||w||` instead of
  `||w||^2`, as several public implementations do, does not give this.)

  #### Mathematical details

  With `h = w^T z + b` and `c = w^T u_hat`:

  ```none
  forward:   y = z + u_hat * tanh(h)
  log|det J_f(z)| = log|1 + u_hat^T psi(z)|,  psi(z) = (1 - tanh(h)^2) w
                  = log(1 + c * sech(h)^2)
                  = log(tanh(h)^2 + softplus(w^T u) * sech(h)^2)
  ```

  The last form is a sum of non-negative terms and is what is evaluated when
  `c < 0` (no cancellation as `c -> -1`); `log1p(c sech^2 h)` is used when
  `c >= 0`. `sech^2` is computed in log space so it does not underflow to a
  relative error of 1 for large `|h|`.

  The inverse has no closed form. Projecting `y = f(z)` on `w` gives a scalar
  equation in `h = w^T z + b`:

  ```none
  phi(h) = h + c * tanh(h) = w^T y + b =: s,     then  z = y - u_hat * tanh(h)
  ```

  `phi` is odd and strictly increasing (`phi' = 1 + c sech^2 h > 0`), so the
  root has the sign of `s` and lies within `|c|` of `s`; on that bracket it is
  found with Chandrupatla's method (`tfp.math.find_root_chandrupatla`,
  vectorized over the batch), polished with one guarded Newton step. Gradients
  of the inverse come from the implicit function theorem
  (`dh = (ds - dc tanh h) / phi'(h)`), not from back-propagating through the
  root-finder's iterations.

  #### Shapes

  `u` and `w` have shape `[..., D]`, `b` has shape `[...]`; their batch shapes
  broadcast against each other and against the batch shape of the input
  `z` of shape `[..., D]`. Give the parameters a leading batch dimension to
  use one set per example (an amortized flow whose parameters an encoder
  emits), or no batch dimension to share one set across the batch.

  #### Bad input

  Checks that need no parameter values run always and cost nothing at run
  time (they are Python-level, done once per trace): parameters must be
  floating point with the same dtype, `u` and `w` of rank >= 1 with equal
  last dimensions, batch shapes that broadcast; an input `x` must be a
  `Tensor` of the flow's dtype (or a Python/NumPy value convertible to it),
  of rank >= 1, with last dimension `D` and a batch shape that broadcasts
  with the parameters'. Violations raise `TypeError` / `ValueError` naming
  the argument, the expected and the received.

  Checks of values follow TFP's convention: with `validate_args=True`,
  non-finite `u`, `w` or `b` raise (`ValueError` at construction for
  constants, `InvalidArgumentError` at use for variables), as do event sizes
  known only at run time. With `validate_args=False` nothing is checked at
  run time and non-finite parameters give non-finite outputs. Inputs are
  never value-checked: a NaN or inf row of `x` gives a non-finite result in
  that row only (an infinite `x` maps to an infinite `y`), the other rows are
  unaffected.

  In float32 every output and gradient stays finite for `||w||` from `1e-15`
  to `1e15`, `|b|` up to `1e30`, and `w^T u` down to `-1e4` (the invertibility
  limit `w^T u_hat -> -1`; `log(1 + w^T u_hat)` is carried in log space, so
  it does not underflow to `-inf`). Below `||w|| ~ 1e-19`, `||w||^2`
  underflows and the flow is treated as the `w = 0` translation.

  #### Examples

  ```python
  planar = Planar(u=[1., 0.], w=[0.5, 0.5], b=0.)
  q = tfd.TransformedDistribution(
      tfd.MultivariateNormalDiag(loc=[0., 0.]), planar)
  x = q.sample(5)
  q.log_prob(x)  # uses the numerical inverse
  ```
  """

  def __init__(self, u, w, b, validate_args=False, name="planar"):
    """Creates a planar flow.

    Args:
      u: Float `Tensor` or `tf.Variable` of shape `[..., D]`: the
        unconstrained direction of the flow, mapped to `u_hat`.
      w: Float `Tensor` or `tf.Variable` of shape `[..., D]`: the normal of
        the hyperplane `w^T z + b = 0`.
      b: Float `Tensor` or `tf.Variable` of shape `[...]`: the offset.
      validate_args: Python `bool`; if `True`, check that `u`, `w`, `b` are
        finite and that event sizes known only at run time agree.
      name: Python `str`, name given to ops managed by this object.

    Raises:
      ValueError: if `u` or `w` is a scalar, their static event sizes
        differ, or the static batch shapes of `u`, `w`, `b` do not broadcast;
        with `validate_args=True`, if a constant parameter is not finite.
      TypeError: if the parameters have different or non-float dtypes.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      dtype = _internal.common_dtype([u, w, b], dtype_hint=tf.float32)
      self._u = _internal.convert_nonref_to_tensor(u, dtype=dtype, name="u")
      self._w = _internal.convert_nonref_to_tensor(w, dtype=dtype, name="w")
      self._b = _internal.convert_nonref_to_tensor(b, dtype=dtype, name="b")
      for param_name, param in (("u", self._u), ("w", self._w)):
        if param.shape.rank == 0:
          raise ValueError(
              f"Planar: `{param_name}` must have shape [..., D]; got a scalar.")
      event_u = tf.compat.dimension_value(self._u.shape[-1])
      event_w = tf.compat.dimension_value(self._w.shape[-1])
      if event_u is not None and event_w is not None and event_u != event_w:
        raise ValueError(
            f"Planar: `u` and `w` must have the same last dimension D; "
            f"got u.shape={self._u.shape} and w.shape={self._w.shape}.")
      check_float_params("Planar", dtype, u=u, w=w, b=b)
      static_batch_shape(
          "Planar", u=self._u.shape[:-1], w=self._w.shape[:-1],
          b=self._b.shape)
      super().__init__(
          forward_min_event_ndims=1,
          validate_args=validate_args,
          parameters=parameters,
          dtype=dtype,
          name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict(
        u=tfp.util.ParameterProperties(event_ndims=1),
        w=tfp.util.ParameterProperties(event_ndims=1),
        b=tfp.util.ParameterProperties(event_ndims=0))

  @property
  def u(self):
    """The unconstrained direction `u`, shape `[..., D]`."""
    return self._u

  @property
  def w(self):
    """The hyperplane normal `w`, shape `[..., D]`."""
    return self._w

  @property
  def b(self):
    """The hyperplane offset `b`, shape `[...]`."""
    return self._b

  def _check_input(self, x, arg_name):
    """Static shape checks of an input, plus the run-time event-size check
    under `validate_args`."""
    # Under validate_args a mismatched event size is reported by the
    # assertion below (an InvalidArgumentError, statically when it can be,
    # as TFP's assertions do); otherwise by a ValueError here.
    check_input_shape("Planar", x, arg_name, event_size=(
        "w", self._w.shape), check_event_size=not self.validate_args,
        batch_shape=static_batch_shape(
            "Planar", u=self._u.shape[:-1], w=self._w.shape[:-1],
            b=self._b.shape))
    if not self.validate_args:
      return x
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.shape(x)[-1], tf.shape(self.w)[-1],
        message=f"Planar: the last dimension of `{arg_name}` must equal the "
                f"size D of `w`.")]):
      return tf.identity(x)

  def u_hat(self):
    """The constrained direction `u_hat`, with `w^T u_hat > -1`."""
    return self._constrained_params()[0]

  def _constrained_params(self):
    """Returns `u_hat`, `w`, `b` and `log(1 + w^T u_hat)`; see
    `planar_constrained_params`."""
    return planar_constrained_params(self.u, self.w, self.b)

  def _forward(self, x):
    x = self._check_input(x, "x")
    u_hat, w, b, _ = self._constrained_params()
    h = tf.reduce_sum(w * x, axis=-1) + b
    return x + u_hat * tf.tanh(h)[..., tf.newaxis]

  def _forward_log_det_jacobian(self, x):
    x = self._check_input(x, "x")
    _, w, b, log_one_plus_c = self._constrained_params()
    h = tf.reduce_sum(w * x, axis=-1) + b
    return log_one_plus_c_sech_sq(h, log_one_plus_c)

  def _inverse(self, y):
    y = self._check_input(y, "y")
    u_hat, w, b, log_one_plus_c = self._constrained_params()
    s = tf.reduce_sum(w * y, axis=-1) + b
    h = _solve_phi(s, log_one_plus_c)
    x = y - u_hat * tf.tanh(h)[..., tf.newaxis]
    # One step of iterative refinement against the forward pass as computed
    # in this dtype: x += J^-1 (y - f(x)), J^-1 by Sherman-Morrison. With
    # ||u_hat|| ||w|| large, f amplifies the rounding of x by that much; the
    # step picks the x whose computed image is nearest y. Value only: the
    # gradient is the implicit one of `_solve_phi`.
    x_const = tf.stop_gradient(x)
    h_x = tf.reduce_sum(w * x_const, axis=-1) + b
    residual = y - (x_const + u_hat * tf.tanh(h_x)[..., tf.newaxis])
    psi = tf.exp(_log_sech_sq(h_x))[..., tf.newaxis] * w
    phi_prime = tf.exp(log_one_plus_c_sech_sq(h_x, log_one_plus_c))
    # phi' underflows to 0 only where J is singular in this dtype; the
    # step is then rejected below, and must not be 0/0 before that.
    phi_prime = tf.where(phi_prime > 0., phi_prime, 1.)
    step = residual - u_hat * (
        tf.reduce_sum(psi * residual, axis=-1) / phi_prime)[..., tf.newaxis]
    # Refinement corrects rounding-sized errors only; a larger step means J is
    # numerically singular here (w^T u_hat ~ -1, h ~ 0) and is not taken.
    max_step = np.sqrt(eps(y.dtype)) * (1. + tf.abs(x_const))
    small = tf.reduce_all(tf.abs(step) <= max_step, axis=-1, keepdims=True)
    return x + tf.stop_gradient(tf.where(small, step, 0.))

  def _parameter_control_dependencies(self, is_init):
    if not self.validate_args:
      return []
    assertions = []
    if is_init != (_internal.is_ref(self.u) or _internal.is_ref(self.w)):
      assertions.append(tf.debugging.assert_equal(
          tf.shape(self.u)[-1], tf.shape(self.w)[-1],
          message="Planar: `u` and `w` must have the same last dimension."))
    for param_name in ("u", "w", "b"):
      param = getattr(self, param_name)
      if is_init != _internal.is_ref(param):
        assertions.append(assert_finite("Planar", param_name, param))
    return assertions


def planar_constrained_params(u, w, b):
  """`u_hat`, `w`, `b` and `log(1 + w^T u_hat) = log softplus(w^T u)`.

  Elementwise in the batch dimensions of `u, w` `[..., D]` and `b` `[...]`,
  so the parameters of `K` flow steps stacked as `[..., K, D]` are
  constrained in one set of ops (what `FlowFamily.forward_and_log_det`
  does; a chain of `Planar` bijectors would repeat them per step and per
  method).

  `log(1 + w^T u_hat)` is kept in log space: `softplus(w^T u)` underflows in
  float32 for `w^T u < -88`, and `log|det J|` on the hyperplane `h = 0`
  equals it.
  """
  u = tf.convert_to_tensor(u)
  w = tf.convert_to_tensor(w)
  b = tf.convert_to_tensor(b)
  w_dot_u = tf.reduce_sum(w * u, axis=-1)
  w_norm_sq = tf.reduce_sum(tf.square(w), axis=-1)
  # w == 0 exactly makes the flow a translation by u tanh(b) (w^T u_hat = 0,
  # not m(0)); the guard keeps 0/0 out of u_hat and its gradient. (So does
  # ||w||^2 underflowing to 0, below ||w|| ~ 1e-19 in float32.)
  nonzero_w = w_norm_sq > 0.
  safe_w_norm_sq = tf.where(nonzero_w, w_norm_sq, 1.)
  # m(x) - x = softplus(-x) - 1: no cancellation for large w^T u.
  correction = tf.math.softplus(-w_dot_u) - 1.
  shift = (correction / safe_w_norm_sq)[..., tf.newaxis] * w
  # The same shift as (w / ||w||) / ||w|| with a rescaled norm, for the
  # gradient only: that of correction / ||w||^2 is formed as
  # correction / ||w||^4, which overflows float32 for ||w|| < 1e-10 although
  # the gradient itself (~ ||w||^-2) does not. The value stays exactly the
  # one above (g - stop_gradient(g) == 0).
  safe_w_norm = tf.where(nonzero_w, norm(w), 1.)[..., tf.newaxis]
  shift_for_gradient = correction[..., tf.newaxis] * (
      w / safe_w_norm) / safe_w_norm
  u_hat = (u + tf.stop_gradient(shift)) + (
      shift_for_gradient - tf.stop_gradient(shift_for_gradient))
  log_one_plus_c = tf.where(nonzero_w, _log_softplus(w_dot_u), 0.)
  return u_hat, w, b, log_one_plus_c


def planar_step(x, u_hat, w, b, log_one_plus_c):
  """One planar step from constrained parameters: `y = x + u_hat tanh(h)`,
  `h = w^T x + b`, and `log|det J| = log(1 + w^T u_hat sech^2 h)`."""
  h = tf.reduce_sum(w * x, axis=-1) + b
  return (x + u_hat * tf.tanh(h)[..., tf.newaxis],
          log_one_plus_c_sech_sq(h, log_one_plus_c))


def _unpack(params, dim):
  """`u`, `w`, `b` of step parameters `[..., 2 D + 1]`."""
  return params[..., :dim], params[..., dim:2 * dim], params[..., 2 * dim]


def _near_identity(num_flows, dim, seed, scale=0.1):
  """Parameters `[K, 2 D + 1]` of `K` volume-preserving shears near the
  identity.

  The paper's `u_hat` keeps `w^T u_hat = m(w^T u) = -1 + softplus(w^T u)`,
  which is -0.31 at `w^T u = 0`: small random `u, w` would make every step a
  contraction along `w` (log-det about -0.37 where `tanh` is linear). Here
  `w ~ N(0, scale^2 I)`, `b = 0` and `u = log(e - 1) w / ||w||^2 + v` with
  `v ~ N(0, scale^2 I)` projected orthogonal to `w`: then `m(w^T u) = 0` and
  `u_hat = v`, a shear `z + v tanh(w^T z)` (log-det 0) that moves `z` by
  less than `||v|| ~ scale sqrt(D)`. Not `u = w = 0`: every gradient of a
  planar step vanishes there.
  """
  noise = tf.random.stateless_normal([num_flows, 2 * dim + 1], seed=[seed, 0])
  w = scale * noise[:, dim:2 * dim]
  w_norm_sq = tf.reduce_sum(tf.square(w), axis=-1, keepdims=True)
  v = scale * noise[:, :dim]
  v -= tf.reduce_sum(v * w, axis=-1, keepdims=True) / w_norm_sq * w
  u = np.log(np.e - 1.) * w / w_norm_sq + v
  return tf.concat([u, w, tf.zeros([num_flows, 1])], axis=-1)


def _constrain(params, dim):
  """Per-step `(u_hat, w, b, log(1 + w^T u_hat))` of parameters
  `[..., K, 2 D + 1]`, constrained for all `K` steps at once."""
  u_hat, w, b, log_one_plus_c = planar_constrained_params(
      *_unpack(params, dim))
  return list(zip(tf.unstack(u_hat, axis=-2), tf.unstack(w, axis=-2),
                  tf.unstack(b, axis=-1), tf.unstack(log_one_plus_c, axis=-1)))


def _step(z, step_params):
  return planar_step(z, *step_params)


PLANAR = register_family(FlowFamily(
    name="planar",
    param_size=lambda dim: 2 * dim + 1,
    make_bijector=lambda params, dim, k, name: Planar(*_unpack(params, dim),
                                                   name=name),
    constrain=_constrain, step=_step, near_identity=_near_identity))


def _log_softplus(x):
  """log(softplus(x)), exact where softplus(x) underflows (x << 0)."""
  # log log1p(e^x) = x - e^x / 2 + O(e^2x): below -20 that is exact in
  # float64, and softplus(x) may be subnormal or 0 there.
  small = x < -20.
  return tf.where(small, x - 0.5 * tf.exp(tf.minimum(x, 0.)),
                  # (A Python 0. first would make the select float32.)
                  tf.math.log(tf.math.softplus(tf.where(small, tf.zeros_like(x),
                                                        x))))


def _log_sech_sq(h):
  """log(sech(h)^2) = 2 (log 2 - |h| - log1p(exp(-2|h|))), exact for any h."""
  abs_h = tf.abs(h)
  return 2. * (np.log(2.) - abs_h - tf.math.softplus(-2. * abs_h))


def log_one_plus_c_sech_sq(h, log_one_plus_c):
  """log(1 + c sech^2 h), elementwise, without cancellation, under- or
  overflow; `log_one_plus_c = log(1 + c)`, `c > -1`. The planar log|det J|,
  and each diagonal term of the Sylvester one (`sylvester.py`)."""
  c = tf.math.expm1(log_one_plus_c)
  log_sech_sq = _log_sech_sq(h)
  # Both branches are evaluated (tf.where); each gets inputs valid for it so
  # the branch not taken cannot put NaN into the gradient.
  positive_c = tf.math.log1p(tf.maximum(c, 0.) * tf.exp(log_sech_sq))
  # For -1 < c < 0, 1 + c sech^2 = tanh^2 + (1 + c) sech^2: both terms >= 0,
  # added in log space because (1 + c) may underflow (w^T u << 0), and then
  # at h = 0 the answer is log(1 + c), not log(0).
  tanh_sq = tf.square(tf.tanh(h))
  nonzero = tanh_sq > 0.
  log_tanh_sq = tf.where(
      nonzero, tf.math.log(tf.where(nonzero, tanh_sq, 1.)), -np.inf)
  negative_c = _log_add_exp(log_tanh_sq, log_one_plus_c + log_sech_sq)
  return tf.where(log_one_plus_c >= 0., positive_c, negative_c)


def _log_add_exp(a, b):
  """log(e^a + e^b) for a possibly -inf `a` and finite `b`, NaN-free
  gradient."""
  larger = tf.maximum(a, b)
  return larger + tf.math.log1p(tf.exp(-tf.abs(a - b)))


def _solve_phi(s, log_one_plus_c):
  """Solves `h + c tanh(h) = s` for `h`, elementwise; differentiable."""
  c = tf.math.expm1(log_one_plus_c)
  s_const = tf.stop_gradient(s)
  c_const = tf.stop_gradient(c)
  log_one_plus_c_const = tf.stop_gradient(log_one_plus_c)
  h_root = _find_root(s_const, c_const, log_one_plus_c_const)
  # Implicit differentiation: this adds zero to the value and
  # (ds - dc tanh h) / phi'(h) to the gradient.
  residual = h_root + c * tf.tanh(h_root) - s
  phi_prime = tf.stop_gradient(
      tf.exp(log_one_plus_c_sech_sq(h_root, log_one_plus_c_const)))
  safe_phi_prime = tf.where(phi_prime > 0., phi_prime, tf.ones_like(phi_prime))
  return h_root - (residual - tf.stop_gradient(residual)) / safe_phi_prime


def _find_root(s, c, log_one_plus_c):
  """Brackets and finds the root of `phi(h) - s`; no gradient."""
  dtype = s.dtype
  eps = np.finfo(dtype.as_numpy_dtype).eps
  tiny = np.finfo(dtype.as_numpy_dtype).tiny
  abs_c = tf.abs(c)
  # h = s - c tanh(h) with sign(h) = sign(s): for c >= 0 the root lies
  # between 0 and s; for c < 0 between s and s + |c| sign(s).
  near = tf.where(c >= 0., tf.maximum(tf.abs(s) - abs_c, 0.), tf.abs(s))
  far = tf.where(c >= 0., tf.abs(s), tf.abs(s) + abs_c)
  low = tf.where(s >= 0., near, -far)
  high = tf.where(s >= 0., far, -near)

  def objective(h):
    return h + c * tf.tanh(h) - s

  tolerance = eps * tf.maximum(tf.abs(low), tf.abs(high)) + tiny
  h, _, _ = tfp.math.find_root_chandrupatla(
      objective, low=low, high=high, position_tolerance=tolerance,
      value_tolerance=tf.zeros([], dtype), max_iterations=100)
  # One Newton step recovers the digits the absolute tolerance leaves when
  # the root is much smaller than the bracket (c near -1, s near 0).
  phi_prime = tf.exp(log_one_plus_c_sech_sq(h, log_one_plus_c))
  newton = h - objective(h) / tf.where(phi_prime > 0., phi_prime, 1.)
  accept = (newton >= low) & (newton <= high) & tf.math.is_finite(newton)
  accept &= tf.abs(objective(newton)) <= tf.abs(objective(h))
  h = tf.where(accept, newton, h)
  return tf.stop_gradient(h)
