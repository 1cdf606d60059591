"""Planar flow bijector (Rezende & Mohamed, 2015)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

# TFP's own bijectors build on these internal helpers; they are not public API,
# but tensorflow-probability is pinned to 0.25.x in setup.cfg and they are what
# make a custom bijector keep `tf.Variable` parameters as references (so
# gradients reach them) and broadcast batch-shaped parameters the TFP way.
from tensorflow_probability.python.internal import assert_util
from tensorflow_probability.python.internal import dtype_util
from tensorflow_probability.python.internal import tensor_util

tfb = tfp.bijectors

__all__ = ["Planar"]


class Planar(tfb.AutoCompositeTensorBijector):
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
      validate_args: Python `bool`; if `True`, check at run time that the
        event sizes of `u`, `w` and inputs agree.
      name: Python `str`, name given to ops managed by this object.

    Raises:
      ValueError: if `u` or `w` is a scalar, or their static event sizes
        differ.
      TypeError: if the parameters have different dtypes.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      dtype = dtype_util.common_dtype([u, w, b], dtype_hint=tf.float32)
      self._u = tensor_util.convert_nonref_to_tensor(u, dtype=dtype, name="u")
      self._w = tensor_util.convert_nonref_to_tensor(w, dtype=dtype, name="w")
      self._b = tensor_util.convert_nonref_to_tensor(b, dtype=dtype, name="b")
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

  def u_hat(self):
    """The constrained direction `u_hat`, with `w^T u_hat > -1`."""
    return self._constrained_params()[0]

  def _constrained_params(self):
    """Returns `u_hat`, `w`, `b` and `1 + w^T u_hat = softplus(w^T u)`."""
    u = tf.convert_to_tensor(self.u)
    w = tf.convert_to_tensor(self.w)
    b = tf.convert_to_tensor(self.b)
    w_dot_u = tf.reduce_sum(w * u, axis=-1)
    w_norm_sq = tf.reduce_sum(tf.square(w), axis=-1)
    # w == 0 exactly makes the flow a translation by u tanh(b) (w^T u_hat = 0,
    # not m(0)); the guard keeps 0/0 out of u_hat and its gradient.
    nonzero_w = w_norm_sq > 0.
    safe_w_norm_sq = tf.where(nonzero_w, w_norm_sq, 1.)
    # m(x) - x = softplus(-x) - 1: no cancellation for large w^T u.
    correction = (tf.math.softplus(-w_dot_u) - 1.) / safe_w_norm_sq
    u_hat = u + correction[..., tf.newaxis] * w
    one_plus_c = tf.where(nonzero_w, tf.math.softplus(w_dot_u), 1.)
    return u_hat, w, b, one_plus_c

  def _check_event_size(self, x):
    if not self.validate_args:
      return x
    with tf.control_dependencies([assert_util.assert_equal(
        tf.shape(x)[-1], tf.shape(self.w)[-1],
        message="Planar: the input's last dimension must equal the size D "
                "of `w`.")]):
      return tf.identity(x)

  def _forward(self, x):
    x = self._check_event_size(x)
    u_hat, w, b, _ = self._constrained_params()
    h = tf.reduce_sum(w * x, axis=-1) + b
    return x + u_hat * tf.tanh(h)[..., tf.newaxis]

  def _forward_log_det_jacobian(self, x):
    x = self._check_event_size(x)
    _, w, b, one_plus_c = self._constrained_params()
    h = tf.reduce_sum(w * x, axis=-1) + b
    return _log_phi_prime(h, one_plus_c)

  def _inverse(self, y):
    y = self._check_event_size(y)
    u_hat, w, b, one_plus_c = self._constrained_params()
    s = tf.reduce_sum(w * y, axis=-1) + b
    h = _solve_phi(s, one_plus_c)
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
    phi_prime = tf.exp(_log_phi_prime(h_x, one_plus_c))
    step = residual - u_hat * (
        tf.reduce_sum(psi * residual, axis=-1) / phi_prime)[..., tf.newaxis]
    # Refinement corrects rounding-sized errors only; a larger step means J is
    # numerically singular here (w^T u_hat ~ -1, h ~ 0) and is not taken.
    max_step = np.sqrt(dtype_util.eps(y.dtype)) * (1. + tf.abs(x_const))
    small = tf.reduce_all(tf.abs(step) <= max_step, axis=-1, keepdims=True)
    return x + tf.stop_gradient(tf.where(small, step, 0.))

  def _parameter_control_dependencies(self, is_init):
    if not self.validate_args:
      return []
    assertions = []
    if is_init != (tensor_util.is_ref(self.u) or tensor_util.is_ref(self.w)):
      assertions.append(assert_util.assert_equal(
          tf.shape(self.u)[-1], tf.shape(self.w)[-1],
          message="Planar: `u` and `w` must have the same last dimension."))
    return assertions


def _log_sech_sq(h):
  """log(sech(h)^2) = 2 (log 2 - |h| - log1p(exp(-2|h|))), exact for any h."""
  abs_h = tf.abs(h)
  return 2. * (np.log(2.) - abs_h - tf.math.softplus(-2. * abs_h))


def _log_phi_prime(h, one_plus_c):
  """log(1 + c sech^2 h), the planar log|det J|, without cancellation."""
  c = one_plus_c - 1.
  sech_sq = tf.exp(_log_sech_sq(h))
  positive_c = tf.math.log1p(c * sech_sq)
  # For -1 < c < 0, 1 + c sech^2 = tanh^2 + (1 + c) sech^2: both terms >= 0.
  negative_c = tf.math.log(tf.square(tf.tanh(h)) + one_plus_c * sech_sq)
  return tf.where(c >= 0., positive_c, negative_c)


def _solve_phi(s, one_plus_c):
  """Solves `h + c tanh(h) = s` for `h`, elementwise; differentiable."""
  c = one_plus_c - 1.
  s_const = tf.stop_gradient(s)
  c_const = tf.stop_gradient(c)
  one_plus_c_const = tf.stop_gradient(one_plus_c)
  h_root = _find_root(s_const, c_const, one_plus_c_const)
  # Implicit differentiation: this adds zero to the value and
  # (ds - dc tanh h) / phi'(h) to the gradient.
  residual = h_root + c * tf.tanh(h_root) - s
  phi_prime = tf.stop_gradient(tf.exp(_log_phi_prime(h_root, one_plus_c_const)))
  safe_phi_prime = tf.where(phi_prime > 0., phi_prime, tf.ones_like(phi_prime))
  return h_root - (residual - tf.stop_gradient(residual)) / safe_phi_prime


def _find_root(s, c, one_plus_c):
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
  phi_prime = tf.exp(_log_phi_prime(h, one_plus_c))
  newton = h - objective(h) / tf.where(phi_prime > 0., phi_prime, 1.)
  accept = (newton >= low) & (newton <= high) & tf.math.is_finite(newton)
  accept &= tf.abs(objective(newton)) <= tf.abs(objective(h))
  h = tf.where(accept, newton, h)
  return tf.stop_gradient(h)
