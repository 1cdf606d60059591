"""Radial flow bijector (Rezende & Mohamed, 2015)."""

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

__all__ = ["RADIAL", "Radial", "radial_params_from_unconstrained",
           "radial_step"]


def radial_params_from_unconstrained(raw_alpha, raw_beta):
  """Maps unconstrained reals to valid `(alpha, beta)` of a radial flow.

  `alpha = softplus(raw_alpha) > 0` and `beta = -alpha + softplus(raw_beta)
  >= -alpha` (Rezende & Mohamed 2015, Appendix A.2), so any real
  `raw_alpha, raw_beta` (e.g. an encoder's outputs, or unconstrained
  `tf.Variable`s) give an invertible flow.

  Args:
    raw_alpha: Float `Tensor` of shape `[...]`.
    raw_beta: Float `Tensor` of shape `[...]`.

  Returns:
    alpha, beta: Float `Tensor`s of shape `[...]`.
  """
  alpha = tf.math.softplus(raw_alpha)
  return alpha, -alpha + tf.math.softplus(raw_beta)


class Radial(CheckedInputs, tfb.AutoCompositeTensorBijector):
  r"""Radial flow `f(z) = z + beta * h(alpha, r) * (z - z0)`.

  The radial flow of Rezende & Mohamed (2015), "Variational Inference with
  Normalizing Flows", Sec. 4.1, which contracts (`beta < 0`) or expands
  (`beta > 0`) space around the reference point `z0`:

  ```none
  h(alpha, r) = 1 / (alpha + r),   r = ||z - z0||   (one norm per example)
  ```

  It is invertible iff `alpha > 0` and `beta >= -alpha`; checked when
  `validate_args=True`. `radial_params_from_unconstrained` gives that
  parametrization from unconstrained reals.

  #### Mathematical details

  The flow scales `z - z0` by `g(r) = 1 + beta / (alpha + r)
  = (alpha + beta + r) / (alpha + r) >= 0`, so `rho = ||y - z0|| = r g(r)`.

  ```none
  forward:   y = z0 + (z - z0) (alpha + beta + r) / (alpha + r)
  log|det J| = (D - 1) log(1 + beta h) + log(1 + beta h + beta h' r)
             = (D - 1) [log(alpha + beta + r) - log(alpha + r)]
               + log(alpha (alpha + beta) + 2 alpha r + r^2) - 2 log(alpha + r)
  inverse:   r solves r^2 + (alpha + beta - rho) r - alpha rho = 0, i.e.
             r = (-B + sqrt(B^2 + 4 alpha rho)) / 2,  B = alpha + beta - rho,
             evaluated as 2 alpha rho / (B + sqrt(B^2 + 4 alpha rho)) when
             B >= 0 (no cancellation); then
             z = z0 + (y - z0) (alpha + r) / (alpha + beta + r).
  ```

  With `h = 1 / (alpha + r)` the log-determinant is evaluated as

  ```none
  log|det J| = (D - 1) log((alpha + beta) h + r h)
               + log(alpha h (alpha + beta) h + r h (1 + alpha h))
  ```

  where every term under a logarithm is a sum of non-negative terms, each
  bounded when `beta <= 0`: it is accurate up to the singular point
  `r = 0, beta = -alpha` and neither over- nor underflows for far inputs
  or tiny `alpha`. Norms are rescaled (`r` of `x - z0 ~ 1e30` is finite in
  float32) and the inverse's discriminant is a `hypot`. The inverse
  log-det-Jacobian is `-forward_log_det_jacobian(inverse(y))`.

  #### Bad input

  As for `Planar`: static dtype and shape checks always (parameters
  floating point, `z0` of rank >= 1, batch shapes that broadcast; inputs
  of the flow's dtype with last dimension `D`), raising `TypeError` /
  `ValueError` that name the argument. Constant `alpha`, `beta` (values known
  when the flow is built) are checked against `alpha > 0, beta >= -alpha`
  and for finiteness always. Run-time values are checked only with
  `validate_args=True` (non-finite `z0`, `alpha`, `beta`, the constraints);
  otherwise invalid parameters give non-finite outputs, as in TFP. A NaN or
  inf input row gives a non-finite result in that row only.

  In float32, outputs and gradients stay finite for `alpha` from `1e-8` to
  `1e15`, `beta` from `-alpha` to `1e20`, and `||x - z0||` up to `1e30`,
  except at the singular point itself (`x = z0` with `beta = -alpha`, where
  `log|det J| = -inf`).

  #### Shapes

  `z0` has shape `[..., D]`, `alpha` and `beta` shape `[...]`; batch shapes
  broadcast with each other and with the input's batch shape. The norm `r` is
  taken per example, over the last axis only.
  """

  def __init__(self, z0, alpha, beta, validate_args=False, name="radial"):
    """Creates a radial flow.

    Args:
      z0: Float `Tensor` or `tf.Variable` of shape `[..., D]`, the reference
        point.
      alpha: Float `Tensor` or `tf.Variable` of shape `[...]`, `alpha > 0`.
      beta: Float `Tensor` or `tf.Variable` of shape `[...]`,
        `beta >= -alpha`.
      validate_args: Python `bool`; if `True`, check at run time that
        `z0`, `alpha`, `beta` are finite, `alpha > 0`, `beta >= -alpha`,
        and event sizes known only at run time.
      name: Python `str`, name given to ops managed by this object.

    Raises:
      ValueError: if `z0` is a scalar, if the static batch shapes of the
        parameters do not broadcast, or if statically known `alpha` or
        `beta` are not finite or violate the constraints (always checked,
        not only with `validate_args`).
      TypeError: if the parameters have different or non-float dtypes.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      dtype = _internal.common_dtype([z0, alpha, beta], dtype_hint=tf.float32)
      self._z0 = _internal.convert_nonref_to_tensor(
          z0, dtype=dtype, name="z0")
      self._alpha = _internal.convert_nonref_to_tensor(
          alpha, dtype=dtype, name="alpha")
      self._beta = _internal.convert_nonref_to_tensor(
          beta, dtype=dtype, name="beta")
      check_float_params("Radial", dtype, z0=self._z0, alpha=self._alpha,
                         beta=self._beta)
      if self._z0.shape.rank == 0:
        raise ValueError("Radial: `z0` must have shape [..., D]; got a scalar.")
      static_batch_shape("Radial", z0=self._z0.shape[:-1],
                         alpha=self._alpha.shape, beta=self._beta.shape)
      alpha_value = _static_value(self._alpha)
      beta_value = _static_value(self._beta)
      for param_name, value in (("alpha", alpha_value), ("beta", beta_value)):
        if value is not None and not np.all(np.isfinite(value)):
          raise ValueError(
              f"Radial: `{param_name}` must be finite; got {value}.")
      if alpha_value is not None and (alpha_value <= 0).any():
        raise ValueError(f"Radial: `alpha` must be > 0; got {alpha_value}.")
      if (alpha_value is not None and beta_value is not None
          and (alpha_value + beta_value < 0).any()):
        raise ValueError(
            f"Radial: `beta` must be >= -alpha; got alpha={alpha_value}, "
            f"beta={beta_value}. Use radial_params_from_unconstrained for an "
            f"always-valid parametrization.")
      super().__init__(
          forward_min_event_ndims=1,
          validate_args=validate_args,
          parameters=parameters,
          dtype=dtype,
          name=name)

  @classmethod
  def from_unconstrained(cls, z0, raw_alpha, raw_beta, validate_args=False,
                         name="radial"):
    """A radial flow from unconstrained reals; see
    `radial_params_from_unconstrained`.

    `raw_alpha` and `raw_beta` may be `tf.Variable`s: `alpha` and `beta` are
    then `tfp.util.DeferredTensor`s recomputed from them at each use, so the
    bijector keeps tracking (and training) the variables. Shapes: `z0`
    `[..., D]`, `raw_alpha` and `raw_beta` `[...]`, broadcasting.

    Raises:
      TypeError: if the arguments have different or non-float dtypes.
      ValueError: if their static batch shapes do not broadcast.
    """
    with tf.name_scope(name):
      dtype = _internal.common_dtype([z0, raw_alpha, raw_beta],
                                      dtype_hint=tf.float32)
      check_float_params("Radial.from_unconstrained", dtype, z0=z0,
                         raw_alpha=raw_alpha, raw_beta=raw_beta)
      raw_alpha = _internal.convert_nonref_to_tensor(
          raw_alpha, dtype=dtype, name="raw_alpha")
      raw_beta = _internal.convert_nonref_to_tensor(
          raw_beta, dtype=dtype, name="raw_beta")
      # beta depends on both raw values: its shape is their broadcast, not
      # raw_beta's (DeferredTensor assumes the transform keeps the shape).
      beta_shape = static_batch_shape(
          "Radial.from_unconstrained", raw_alpha=raw_alpha.shape,
          raw_beta=raw_beta.shape)
      alpha = tfp.util.DeferredTensor(raw_alpha, tf.math.softplus,
                                      name="alpha")
      beta = tfp.util.DeferredTensor(
          raw_beta,
          lambda raw: tf.math.softplus(raw) - tf.math.softplus(raw_alpha),
          shape=beta_shape, also_track=raw_alpha, name="beta")
    return cls(z0, alpha, beta, validate_args=validate_args, name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict(
        z0=tfp.util.ParameterProperties(event_ndims=1),
        alpha=tfp.util.ParameterProperties(
            event_ndims=0,
            default_constraining_bijector_fn=(
                lambda: tfb.Softplus(low=eps(dtype)))),
        # beta >= -alpha couples two parameters: no per-parameter bijector.
        beta=tfp.util.ParameterProperties(
            event_ndims=0,
            default_constraining_bijector_fn=(
                _internal.BIJECTOR_NOT_IMPLEMENTED)))

  @property
  def z0(self):
    """The reference point `z0`, shape `[..., D]`."""
    return self._z0

  @property
  def alpha(self):
    """`alpha > 0`, shape `[...]`."""
    return self._alpha

  @property
  def beta(self):
    """`beta >= -alpha`, shape `[...]`."""
    return self._beta

  def _params(self):
    alpha = tf.convert_to_tensor(self.alpha)
    beta = tf.convert_to_tensor(self.beta)
    return tf.convert_to_tensor(self.z0), alpha, alpha + beta

  def _check_input(self, x, arg_name):
    # Under validate_args a mismatched event size is reported by the
    # assertion below (an InvalidArgumentError, statically when it can be,
    # as TFP's assertions do); otherwise by a ValueError here.
    check_input_shape("Radial", x, arg_name, event_size=(
        "z0", self._z0.shape), check_event_size=not self.validate_args,
        batch_shape=static_batch_shape(
            "Radial", z0=self._z0.shape[:-1], alpha=self._alpha.shape,
            beta=self._beta.shape))
    if not self.validate_args:
      return x
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.shape(x)[-1], tf.shape(self.z0)[-1],
        message=f"Radial: the last dimension of `{arg_name}` must equal the "
                f"size D of `z0`.")]):
      return tf.identity(x)

  def _forward(self, x):
    x = self._check_input(x, "x")
    return radial_step(x, *self._params())[0]

  def _forward_log_det_jacobian(self, x):
    x = self._check_input(x, "x")
    return radial_step(x, *self._params())[1]

  def _inverse(self, y):
    y = self._check_input(y, "y")
    z0, alpha, alpha_plus_beta = self._params()
    delta = y - z0
    rho = norm(delta)
    b_coef = alpha_plus_beta - rho
    # sqrt(B^2 + 4 alpha rho) as a hypot: B^2 overflows float32 for
    # rho > 1e19.
    sqrt_disc = _hypot(b_coef, 2. * tf.sqrt(alpha) * tf.sqrt(rho))
    # B + sqrt(...) > 0 unless rho == 0, where r == 0.
    denominator = b_coef + sqrt_disc
    safe_denominator = tf.where(denominator > 0., denominator, 1.)
    r = tf.where(b_coef >= 0.,
                 2. * alpha * (rho / safe_denominator),
                 0.5 * (sqrt_disc - b_coef))
    # alpha + beta + r == 0 only at y == z0 with beta == -alpha; map it to z0.
    scale_denominator = alpha_plus_beta + r
    safe_scale_denominator = tf.where(scale_denominator > 0.,
                                      scale_denominator, 1.)
    scale = tf.where(scale_denominator > 0.,
                     (alpha + r) / safe_scale_denominator, 0.)
    return z0 + delta * scale[..., tf.newaxis]

  def _parameter_control_dependencies(self, is_init):
    if not self.validate_args:
      return []
    # Finiteness first (eager assertions raise as they are made), so a NaN
    # is reported as such, not as alpha <= 0.
    assertions = [
        assert_finite("Radial", param_name, getattr(self, param_name))
        for param_name in ("z0", "alpha", "beta")
        if is_init != _internal.is_ref(getattr(self, param_name))]
    if is_init != _internal.is_ref(self.alpha):
      assertions.append(tf.debugging.assert_positive(
          self.alpha, message="Radial: `alpha` must be > 0."))
    if is_init != (_internal.is_ref(self.alpha)
                   or _internal.is_ref(self.beta)):
      assertions.append(tf.debugging.assert_greater_equal(
          self.beta, -tf.convert_to_tensor(self.alpha),
          message="Radial: `beta` must be >= -alpha."))
    return assertions


def radial_step(x, z0, alpha, alpha_plus_beta):
  """One radial step: `y = z0 + (x - z0) (alpha + beta + r) / (alpha + r)`,
  `r = ||x - z0||`, and its `log|det J|` (formulas in `Radial`'s
  docstring). Elementwise in the batch dimensions, like
  `planar.planar_step`; in a `tf.function` the unused output costs nothing.
  """
  delta = x - z0
  r = norm(delta)
  # Divisions, not products with h = 1 / (alpha + r): the gradient of h
  # is -h^2, which underflows (and meets an overflowing factor) for far x.
  alpha_plus_r = alpha + r
  y = z0 + delta * ((alpha_plus_beta + r) / alpha_plus_r)[..., tf.newaxis]
  event_size = tf.cast(tf.shape(x)[-1], x.dtype)
  # alpha h, (alpha + beta) h and r h, as divisions.
  alpha_h = alpha / alpha_plus_r
  alpha_plus_beta_h = alpha_plus_beta / alpha_plus_r
  r_h = r / alpha_plus_r
  log_det = ((event_size - 1.) * tf.math.log(alpha_plus_beta_h + r_h)
             + tf.math.log(alpha_h * alpha_plus_beta_h + r_h * (1. + alpha_h)))
  return y, log_det


def _unpack(params, dim):
  """`z0`, `alpha`, `alpha + beta` of step parameters `[..., D + 2]`, whose
  last two entries are `raw_alpha`, `raw_beta`."""
  alpha, beta = radial_params_from_unconstrained(params[..., dim],
                                                 params[..., dim + 1])
  return params[..., :dim], alpha, beta


def _near_identity(num_flows, dim, seed):
  """Parameters `[K, D + 2]` of `K` identities: `raw_alpha = raw_beta = 0`,
  so `alpha = log 2` and `beta = 0`; `z0 ~ N(0, I)`, where each step will
  contract or expand once `beta` moves."""
  noise = tf.random.stateless_normal([num_flows, dim + 2], seed=[seed, 0])
  return tf.concat([noise[:, :dim], tf.zeros([num_flows, 2])], axis=-1)


def _constrain(params, dim):
  """Per-step `(z0, alpha, alpha + beta)` of parameters `[..., K, D + 2]`,
  constrained for all `K` steps at once."""
  z0, alpha, beta = _unpack(params, dim)
  return list(zip(tf.unstack(z0, axis=-2), tf.unstack(alpha, axis=-1),
                  tf.unstack(alpha + beta, axis=-1)))


def _step(z, step_params):
  return radial_step(z, *step_params)


RADIAL = register_family(FlowFamily(
    name="radial",
    param_size=lambda dim: dim + 2,
    make_bijector=lambda params, dim, k, name: Radial(*_unpack(params, dim),
                                                   name=name),
    constrain=_constrain, step=_step, near_identity=_near_identity))


def _static_value(param):
  """The value of a constant parameter, None for variables and graph tensors."""
  if _internal.is_ref(param):
    return None
  return tf.get_static_value(param)


def _hypot(a, b):
  """sqrt(a^2 + b^2) without overflow; finite gradient at (0, 0)."""
  scale = tf.maximum(tf.abs(a), tf.abs(b))
  positive = scale > 0.
  safe_scale = tf.where(positive, scale, 1.)
  sum_sq = tf.square(a / safe_scale) + tf.square(b / safe_scale)
  return tf.where(positive,
                  safe_scale * tf.sqrt(tf.where(positive, sum_sq, 1.)), 0.)
