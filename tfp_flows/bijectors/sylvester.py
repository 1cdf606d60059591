"""Sylvester flow bijector (van den Berg et al., 2018) and its three flow
families: orthogonal, Householder and triangular `Q`."""

import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

# TFP internals (variables kept as references, TFP's dtype rules) come
# through tfp_flows._internal, the one module that names private APIs.
from tfp_flows import _internal
from tfp_flows.bijectors.checks import (CheckedInputs, assert_finite,
                                        check_float_params, check_input_shape,
                                        eps, static_batch_shape)
from tfp_flows.bijectors.families import FlowFamily, register_family
from tfp_flows.bijectors.planar import log_one_plus_c_sech_sq

tfb = tfp.bijectors

__all__ = ["SYLVESTER_HOUSEHOLDER", "SYLVESTER_ORTHOGONAL",
           "SYLVESTER_TRIANGULAR", "Sylvester", "householder_product",
           "orthonormalize", "sylvester_family"]


class Sylvester(CheckedInputs, tfb.AutoCompositeTensorBijector):
  r"""Sylvester flow `f(z) = z + Q R1 tanh(R2 Q^T z + b)`.

  The Sylvester normalizing flow of van den Berg, Hasenclever, Tomczak &
  Welling (2018), "Sylvester Normalizing Flows for Variational Inference",
  Sec. 3: a planar flow (`M = 1`) widened to `M` hidden units.

  #### Mathematical details

  `Q` is `D x M` with orthonormal columns (`Q^T Q = I_M`, `M <= D`), `R1`
  and `R2` are `M x M` upper triangular (their strictly lower parts are
  ignored, as `tf.linalg.band_part(r, 0, -1)` would), `b` is in `R^M`. With
  `a = R2 Q^T z + b`:

  ```none
  forward:          y = z + Q R1 tanh(a)
  log|det J_f(z)| = log det(I_M + diag(tanh'(a)) R2 R1)      (Sylvester's
                  = sum_i log(1 + c_i sech^2(a_i)),           determinant
                    c_i = R1_ii R2_ii                          identity)
  ```

  since `diag(tanh'(a)) R2 R1` is upper triangular. The flow is invertible
  when every `c_i > -1` (the paper's Theorem 2 with `0 < tanh' <= 1`); each
  term is evaluated as the planar log-det (`log_one_plus_c_sech_sq`),
  without cancellation as `c_i -> -1`.

  The inverse has no closed form, but reduces to `M` scalar equations.
  `y - z` lies in the span of `Q`, so `u = Q^T z` fixes `z`:

  ```none
  Q^T y = u + R1 tanh(R2 u + b),     then  z = y - Q R1 tanh(R2 u + b)
  ```

  and since `R1`, `R2` are upper triangular, row `i` involves only
  `u_i, ..., u_{M-1}`. Back substitution from `i = M - 1` down to 0 leaves in
  each row one equation `u_i + R1_ii tanh(R2_ii u_i + g_i) = s_i`, strictly
  increasing in `u_i` (slope `1 + c_i sech^2 > 0`), whose root lies within
  `|R1_ii|` of `s_i`: it is found on a bracket one wider than that on each
  side (where the objective's sign is certain) with Chandrupatla's method
  (`tfp.math.find_root_chandrupatla`, vectorized over the batch) and polished
  by one guarded Newton step. Gradients of the inverse come from the
  implicit function theorem, `dz = J^-1 (dy - df/dtheta dtheta)`, with
  `J^-1 = I - Q (I - (I + A)^-1) Q^T`, `A = R1 diag(tanh'(a)) R2` upper
  triangular (Woodbury), not from the root-finder's iterations.

  #### Shapes

  `q` has shape `[..., D, M]`, `r1` and `r2` `[..., M, M]`, `b` `[..., M]`;
  their batch shapes broadcast against each other and against the batch
  shape of the input `z` `[..., D]`. A leading batch dimension gives one
  flow per example (an amortized flow whose parameters an encoder emits).
  The inverse needs `M` known when the graph is built.

  #### Bad input

  Shapes and dtypes are checked when the flow is built or traced
  (`ValueError` / `TypeError` naming the argument, the expected and the
  received). With `validate_args=True`, at construction for constants and at
  use for variables: the parameters are finite, `R1_ii R2_ii > -1`, and
  `Q^T Q = I` to within `sqrt(eps)` per entry. Inputs are not value-checked:
  a non-finite row gives a non-finite result in that row only.

  #### Examples

  ```python
  q = tfp_flows.bijectors.orthonormalize(tf.random.normal([3, 2]))
  flow = Sylvester(q, r1=[[0.5, 1.], [0., -0.3]], r2=[[1., 0.2], [0., 0.8]],
                   b=[0., 0.1])
  dist = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(
      loc=tf.zeros(3)), flow)
  dist.log_prob(dist.sample(5))  # uses the numerical inverse
  ```
  """

  def __init__(self, q, r1, r2, b, validate_args=False, name="sylvester"):
    """Creates a Sylvester flow.

    Args:
      q: Float `Tensor` `[..., D, M]` with orthonormal columns (e.g.
        `orthonormalize` or `householder_product` of unconstrained values).
      r1: Float `Tensor` `[..., M, M]`; its upper triangle is `R1`.
      r2: Float `Tensor` `[..., M, M]`; its upper triangle is `R2`.
      b: Float `Tensor` `[..., M]`.
      validate_args: Python `bool`; if `True`, check the values (see the
        class docstring).
      name: Python `str`, name given to ops managed by this object.

    Raises:
      ValueError: on parameters of the wrong ranks or inconsistent sizes
        (`M > D` included), batch shapes that do not broadcast, or, with
        `validate_args=True`, invalid constant values.
      TypeError: if the parameters have different or non-float dtypes.
    """
    parameters = dict(locals())
    with tf.name_scope(name) as name:
      dtype = _internal.common_dtype([q, r1, r2, b], dtype_hint=tf.float32)
      self._q = _internal.convert_nonref_to_tensor(q, dtype=dtype, name="q")
      self._r1 = _internal.convert_nonref_to_tensor(r1, dtype=dtype, name="r1")
      self._r2 = _internal.convert_nonref_to_tensor(r2, dtype=dtype, name="r2")
      self._b = _internal.convert_nonref_to_tensor(b, dtype=dtype, name="b")
      check_float_params("Sylvester", dtype, q=q, r1=r1, r2=r2, b=b)
      for param_name, param, rank in (("q", self._q, 2), ("r1", self._r1, 2),
                                      ("r2", self._r2, 2), ("b", self._b, 1)):
        if param.shape.rank is not None and param.shape.rank < rank:
          raise ValueError(
              f"Sylvester: `{param_name}` must have rank >= {rank}; got "
              f"shape {param.shape}.")
      sizes = {"q.shape[-1]": self._q.shape[-1],
               "r1.shape[-2]": self._r1.shape[-2],
               "r1.shape[-1]": self._r1.shape[-1],
               "r2.shape[-2]": self._r2.shape[-2],
               "r2.shape[-1]": self._r2.shape[-1], "b.shape[-1]": self._b.shape[-1]}
      known = {k: v for k, v in sizes.items() if v is not None}
      if len(set(known.values())) > 1:
        raise ValueError(
            f"Sylvester: q [..., D, M], r1 and r2 [..., M, M] and b [..., M] "
            f"must agree on M; got q {self._q.shape}, r1 {self._r1.shape}, "
            f"r2 {self._r2.shape}, b {self._b.shape}.")
      num_hidden = next(iter(known.values()), None)
      event_size = tf.compat.dimension_value(self._q.shape[-2])
      if (num_hidden is not None and event_size is not None
          and num_hidden > event_size):
        raise ValueError(
            f"Sylvester: `q` [..., D, M] can have at most D orthonormal "
            f"columns; got M = {num_hidden} > D = {event_size}.")
      self._batch_shape_static = static_batch_shape(
          "Sylvester", q=self._q.shape[:-2], r1=self._r1.shape[:-2],
          r2=self._r2.shape[:-2], b=self._b.shape[:-1])
      super().__init__(
          forward_min_event_ndims=1,
          validate_args=validate_args,
          parameters=parameters,
          dtype=dtype,
          name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict(
        q=tfp.util.ParameterProperties(event_ndims=2),
        r1=tfp.util.ParameterProperties(event_ndims=2),
        r2=tfp.util.ParameterProperties(event_ndims=2),
        b=tfp.util.ParameterProperties(event_ndims=1))

  @property
  def q(self):
    """`Q`, `[..., D, M]` with orthonormal columns."""
    return self._q

  @property
  def r1(self):
    """`R1` as given, `[..., M, M]` (its upper triangle is used)."""
    return self._r1

  @property
  def r2(self):
    """`R2` as given, `[..., M, M]` (its upper triangle is used)."""
    return self._r2

  @property
  def b(self):
    """The bias `b`, `[..., M]`."""
    return self._b

  def _check_input(self, x, arg_name):
    check_input_shape("Sylvester", x, arg_name, event_size=(
        "q", self._q.shape[:-1]), check_event_size=not self.validate_args,
        batch_shape=self._batch_shape_static)
    if not self.validate_args:
      return x
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.shape(x)[-1], tf.shape(self.q)[-2],
        message=f"Sylvester: the last dimension of `{arg_name}` must equal "
                f"the number D of rows of `q`.")]):
      return tf.identity(x)

  def _triangles(self):
    """`Q`, upper `R1`, upper `R2`, `b`, `log(1 + R1_ii R2_ii)`."""
    r1 = tf.linalg.band_part(tf.convert_to_tensor(self.r1), 0, -1)
    r2 = tf.linalg.band_part(tf.convert_to_tensor(self.r2), 0, -1)
    c = tf.linalg.diag_part(r1) * tf.linalg.diag_part(r2)
    q = tf.convert_to_tensor(self.q)
    return q, r1, r2, tf.convert_to_tensor(self.b), tf.math.log1p(c)

  def _forward(self, x):
    x = self._check_input(x, "x")
    q, r1, r2, b, _ = self._triangles()
    a = tf.linalg.matvec(r2, tf.linalg.matvec(q, x, transpose_a=True)) + b
    return x + tf.linalg.matvec(q, tf.linalg.matvec(r1, tf.tanh(a)))

  def _forward_log_det_jacobian(self, x):
    x = self._check_input(x, "x")
    q, _, r2, b, log_one_plus_c = self._triangles()
    a = tf.linalg.matvec(r2, tf.linalg.matvec(q, x, transpose_a=True)) + b
    return tf.reduce_sum(log_one_plus_c_sech_sq(a, log_one_plus_c), axis=-1)

  def _inverse(self, y):
    y = self._check_input(y, "y")
    q, r1, r2, b, log_one_plus_c = self._triangles()
    num_hidden = tf.compat.dimension_value(q.shape[-1])
    if num_hidden is None:
      raise ValueError(
          "Sylvester.inverse: the number M of columns of `q` must be known "
          "when the graph is built (it sets the back substitution's length).")
    q_const, r1_const, r2_const, b_const = (
        tf.stop_gradient(t) for t in (q, r1, r2, b))
    x = tf.stop_gradient(_solve_inverse(
        tf.stop_gradient(y), q_const, r1_const, r2_const, b_const,
        num_hidden))
    # Implicit differentiation: adds 0 to the value and
    # J^-1 (dy - df/dtheta) to the gradient (see the class docstring).
    a = tf.linalg.matvec(r2, tf.linalg.matvec(q, x, transpose_a=True)) + b
    residual = x + tf.linalg.matvec(q, tf.linalg.matvec(r1, tf.tanh(a))) - y
    a_const = tf.stop_gradient(a)
    correction = _jacobian_solve(residual, q_const, r1_const, r2_const,
                                 a_const)
    return x - (correction - tf.stop_gradient(correction))

  def _parameter_control_dependencies(self, is_init):
    if not self.validate_args:
      return []
    assertions = [
        assert_finite("Sylvester", param_name, getattr(self, param_name))
        for param_name in ("q", "r1", "r2", "b")
        if is_init != _internal.is_ref(getattr(self, param_name))]
    if is_init != (_internal.is_ref(self.r1) or _internal.is_ref(self.r2)):
      c = (tf.linalg.diag_part(tf.convert_to_tensor(self.r1))
           * tf.linalg.diag_part(tf.convert_to_tensor(self.r2)))
      assertions.append(tf.debugging.assert_greater(
          c, tf.constant(-1., c.dtype),
          message="Sylvester: R1_ii R2_ii must be > -1 for every i (else "
                  "the flow is not invertible)."))
    if is_init != _internal.is_ref(self.q):
      q = tf.convert_to_tensor(self.q)
      gram_error = tf.abs(tf.linalg.matmul(q, q, transpose_a=True)
                          - tf.eye(tf.shape(q)[-1], dtype=q.dtype))
      assertions.append(tf.debugging.assert_less_equal(
          tf.reduce_max(gram_error),
          tf.constant(np.sqrt(eps(q.dtype)), q.dtype),
          message="Sylvester: the columns of `q` must be orthonormal "
                  "(Q^T Q = I); build it with orthonormalize() or "
                  "householder_product()."))
    return assertions


def _jacobian_solve(v, q, r1, r2, a):
  """`J^-1 v` for the Jacobian `J = I + Q A Q^T`, `A = R1 diag(tanh'(a)) R2`
  at preactivations `a`: `v - Q (Q^T v - (I + A)^-1 Q^T v)`, one
  triangular solve (`I + A` is upper triangular)."""
  sech_sq = 1. - tf.square(tf.tanh(a))
  a_matrix = tf.linalg.matmul(r1 * sech_sq[..., tf.newaxis, :], r2)
  eye = tf.eye(tf.shape(a_matrix)[-1], dtype=a_matrix.dtype)
  qt_v = tf.linalg.matvec(q, v, transpose_a=True)
  solved = tf.linalg.triangular_solve(
      eye + a_matrix, qt_v[..., tf.newaxis], lower=False)[..., 0]
  return v - tf.linalg.matvec(q, qt_v - solved)


def _solve_inverse(y, q, r1, r2, b, num_hidden):
  """`z` with `f(z) = y`, by back substitution over `u = Q^T z`; no
  gradient (see `Sylvester._inverse`)."""
  qt_y = tf.linalg.matvec(q, y, transpose_a=True)
  # Rows of the triangles, as [..., M] tensors; `u` and `tanh(a)` fill in
  # from the last coordinate, zeros where not yet known (their batch shape
  # grows to the parameters' and the input's broadcast as they fill).
  r1_rows = tf.unstack(r1, num_hidden, axis=-2)
  r2_rows = tf.unstack(r2, num_hidden, axis=-2)
  u_known = tf.zeros_like(qt_y)
  tanh_known = tf.zeros_like(qt_y)
  for i in reversed(range(num_hidden)):
    one_hot = tf.one_hot(i, num_hidden, dtype=y.dtype)
    alpha = r1_rows[i][..., i]
    beta = r2_rows[i][..., i]
    s = qt_y[..., i] - tf.reduce_sum(r1_rows[i] * tanh_known, axis=-1)
    g = tf.reduce_sum(r2_rows[i] * u_known, axis=-1) + b[..., i]
    u_i = _solve_scalar(s, alpha, beta, g)
    u_known += one_hot * u_i[..., tf.newaxis]
    tanh_known += one_hot * tf.tanh(beta * u_i + g)[..., tf.newaxis]
  return y - tf.linalg.matvec(q, tf.linalg.matvec(r1, tanh_known))


def _solve_scalar(s, alpha, beta, g):
  """The root `u` of `u + alpha tanh(beta u + g) = s`, elementwise, for
  `alpha beta > -1` (strictly increasing); it lies within `|alpha|` of
  `s`."""
  dtype = s.dtype
  shape = tf.broadcast_dynamic_shape(
      tf.broadcast_dynamic_shape(tf.shape(s), tf.shape(alpha)),
      tf.broadcast_dynamic_shape(tf.shape(beta), tf.shape(g)))
  s, alpha, beta, g = (tf.broadcast_to(t, shape) for t in (s, alpha, beta, g))

  def objective(u):
    return u + alpha * tf.tanh(beta * u + g) - s

  # The root is within |alpha| of s; the bracket is wider by 1 (and by
  # s's rounding) because with tanh saturated the root can sit on
  # s -+ |alpha| itself, where the objective's rounding may have the wrong
  # sign: then the ends would not bracket it. At the widened ends the
  # objective is <= -1 and >= 1.
  spread = tf.abs(alpha) + 1. + 4. * eps(dtype) * tf.abs(s)
  low, high = s - spread, s + spread
  tolerance = (eps(dtype) * tf.maximum(tf.abs(low), tf.abs(high))
               + np.finfo(dtype.as_numpy_dtype).tiny)
  u, _, _ = tfp.math.find_root_chandrupatla(
      objective, low=low, high=high, position_tolerance=tolerance,
      value_tolerance=tf.zeros([], dtype), max_iterations=100)
  # One Newton step recovers digits the absolute tolerance leaves when the
  # root is much smaller than the bracket.
  slope = 1. + alpha * beta * (1. - tf.square(tf.tanh(beta * u + g)))
  newton = u - objective(u) / tf.where(slope > 0., slope, 1.)
  accept = (newton >= low) & (newton <= high) & tf.math.is_finite(newton)
  accept &= tf.abs(objective(newton)) <= tf.abs(objective(u))
  return tf.where(accept, newton, u)


# Building Q from unconstrained values ---------------------------------------


def householder_product(vectors, x=None):
  r"""`H_1 H_2 ... H_H x`, `H_j = I - 2 v_j v_j^T / ||v_j||^2`.

  Args:
    vectors: `[..., H, D]`, the reflections' normals `v_j` (any nonzero
      length; a zero `v_j` is no reflection).
    x: `[..., D, N]`; `None` for the identity, which gives `Q` itself,
      `D x D` orthogonal.

  Applied to `x` one reflection at a time (`O(H D N)`), so `Q R1` costs no
  more than `R1`'s size times `H`.
  """
  vectors = tf.convert_to_tensor(vectors)
  dim = tf.shape(vectors)[-1]
  if x is None:
    x = tf.eye(dim, batch_shape=tf.shape(vectors)[:-2], dtype=vectors.dtype)
  norm_sq = tf.reduce_sum(tf.square(vectors), axis=-1, keepdims=True)
  nonzero = norm_sq > 0.
  # 2 v / ||v||^2, zero where v is: the reflection then leaves x alone.
  scaled = tf.where(nonzero, 2. * vectors / tf.where(nonzero, norm_sq, 1.), 0.)
  num_reflections = tf.compat.dimension_value(vectors.shape[-2])
  for j in reversed(range(num_reflections)):
    v, scaled_v = vectors[..., j, :], scaled[..., j, :]
    # x - (2 v / ||v||^2) (v^T x)
    x = x - scaled_v[..., :, tf.newaxis] * tf.reduce_sum(
        v[..., :, tf.newaxis] * x, axis=-2, keepdims=True)
  return x


def orthonormalize(raw, max_iterations=100):
  r"""The orthonormal `D x M` matrix nearest `raw` `[..., D, M]` (its polar
  factor), by the iteration of the Sylvester flows' paper (Bjorck &
  Bowie 1971):

  ```none
  A_0 = raw / ||raw||_F,    A_{n+1} = A_n (I + (I - A_n^T A_n) / 2)
  ```

  which keeps the singular vectors and maps each singular value `s` to
  `s (3 - s^2) / 2`, so all of them go to 1 (quadratically near 1; from
  `s << 1` they grow 1.5x a step). It stops when `||A^T A - I||_F` is below
  `4 M sqrt(D) eps` for every matrix of the batch, or after
  `max_iterations`. Differentiable in graphs and XLA, by the polar factor's
  own derivative (`_polar_factor_gradient`), not through the iterations.
  `raw` must have full column rank: a zero singular value stays 0.
  """
  return _orthonormalize_with_gradient(tf.convert_to_tensor(raw),
                                       max_iterations)


def _polar_factor_gradient(raw, q, upstream):
  r"""The gradient of `L(Q)`, `Q` the polar factor of `raw` (`A`), from
  `G = dL/dQ`: with `H = Q^T A` (symmetric positive definite, `M x M`),

  ```none
  dL/dA = (I - Q Q^T) G H^-1 + Q (Y - Y^T),    H Y + Y H = Q^T G,
  ```

  from `dA = dQ H + Q dH`: `Q^T dQ` is skew and solves `H W + W H = Q^T dA
  - dA^T Q`. `Y` comes from `H = V diag(w) V^T`: `Y = V [(V^T Q^T G V)_ij /
  (w_i + w_j)] V^T`. Why not differentiate the iterations: their gradient
  keeps every iterate, in accumulators sized by `max_iterations` under XLA,
  which made orthogonal Sylvester steps three times the others' (measured
  in DEVELOPERS.md).

  Why one step of iterative refinement on both solves: XLA's `eigh` is a
  Jacobi iteration that stops early; in float64 its `V diag(w) V^T` misses
  `H` by 6e-9 relative (TF 2.21; benchmarks/polar_gradient_error.py), so
  the solves through it were only 1e-8 accurate. The correction reuses the same `V`, `w` and
  squares that error; under LAPACK's `eigh` it changes nothing."""
  h = tf.linalg.matmul(q, raw, transpose_a=True)
  h = 0.5 * (h + tf.linalg.matrix_transpose(h))
  w, v = tf.linalg.eigh(h)
  pair_sums = w[..., :, None] + w[..., None, :]
  h_inverse = tf.linalg.matmul(v / w[..., None, :], v, transpose_b=True)

  def solve_sylvester(c):  # H Y + Y H = c, through the decomposition.
    c_in_eigenbasis = tf.linalg.matmul(tf.linalg.matmul(v, c, transpose_a=True),
                                       v)
    return tf.linalg.matmul(tf.linalg.matmul(v, c_in_eigenbasis / pair_sums),
                            v, transpose_b=True)

  qt_g = tf.linalg.matmul(q, upstream, transpose_a=True)
  y = solve_sylvester(qt_g)
  y += solve_sylvester(qt_g - tf.linalg.matmul(h, y) - tf.linalg.matmul(y, h))
  off_range = upstream - tf.linalg.matmul(q, qt_g)
  x = tf.linalg.matmul(off_range, h_inverse)  # X H = off_range.
  x += tf.linalg.matmul(off_range - tf.linalg.matmul(x, h), h_inverse)
  return x + tf.linalg.matmul(q, y - tf.linalg.matrix_transpose(y))


def _orthonormalize_with_gradient(raw, max_iterations):
  @tf.custom_gradient
  def polar(raw):
    q = _bjorck_iterations(raw, max_iterations)
    return q, lambda upstream: _polar_factor_gradient(raw, q, upstream)
  return polar(raw)


def _bjorck_iterations(raw, max_iterations):
  """`orthonormalize`'s forward pass."""
  dtype = raw.dtype
  rows = tf.compat.dimension_value(raw.shape[-2])
  num_columns = tf.compat.dimension_value(raw.shape[-1])
  frobenius = tf.sqrt(tf.reduce_sum(tf.square(raw), axis=[-2, -1],
                                    keepdims=True))
  a = raw / tf.where(frobenius > 0., frobenius, 1.)
  eye = tf.eye(num_columns, dtype=dtype)
  tolerance = tf.constant(4. * num_columns * np.sqrt(rows) * eps(dtype),
                          dtype)

  def gram_error(a):
    gram = tf.linalg.matmul(a, a, transpose_a=True)
    return gram, tf.reduce_max(tf.sqrt(tf.reduce_sum(
        tf.square(gram - eye), axis=[-2, -1])))

  def step(a, gram):
    return a + 0.5 * tf.linalg.matmul(a, eye - gram)

  def body(a, gram, _):
    a = step(a, gram)
    gram, error = gram_error(a)
    return a, gram, error

  gram, error = gram_error(a)
  a, _, _ = tf.while_loop(
      lambda a, gram, error: error > tolerance, body, (a, gram, error),
      maximum_iterations=max_iterations)
  return a


# The three flow families ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Where the parts of one step's `P` reals are: `F` `[M, M]` (its
  strictly upper triangle is `R1`'s, its strictly lower triangle transposed
  is `R2`'s, its diagonal `R1`'s raw diagonal), `R2`'s raw diagonal `[M]`,
  `b` `[M]`, then `Q`'s unconstrained values."""
  num_hidden: int
  q_size: int

  @property
  def size(self):
    return self.num_hidden * (self.num_hidden + 2) + self.q_size

  def unpack(self, params):
    m = self.num_hidden
    f = tf.reshape(params[..., :m * m],
                   tf.concat([tf.shape(params)[:-1], [m, m]], 0))
    raw_diag2 = params[..., m * m:m * m + m]
    b = params[..., m * m + m:m * m + 2 * m]
    return f, raw_diag2, b, params[..., m * m + 2 * m:]


def _log_cosh(x):
  """log cosh x, exact for any x."""
  abs_x = tf.abs(x)
  return abs_x + tf.math.softplus(-2. * abs_x) - np.log(2.)


def _triangles_from_raw(f, raw_diag2):
  """Upper `R1`, `R2` `[..., M, M]` with `R1_ii = tanh(F_ii)`, `R2_ii =
  tanh(raw_diag2_i)` (the paper's constraint: `R1_ii R2_ii` in (-1, 1)), and
  `log(1 + R1_ii R2_ii)` `[..., M]`, computed as
  `log cosh(x + y) - log cosh x - log cosh y`, exact where the product
  rounds to -1."""
  raw_diag1 = tf.linalg.diag_part(f)
  strict_upper = tf.linalg.band_part(f, 0, -1) - tf.linalg.diag(raw_diag1)
  strict_lower_t = tf.linalg.band_part(tf.linalg.matrix_transpose(f), 0, -1) \
      - tf.linalg.diag(raw_diag1)
  r1 = strict_upper + tf.linalg.diag(tf.tanh(raw_diag1))
  r2 = strict_lower_t + tf.linalg.diag(tf.tanh(raw_diag2))
  log_one_plus_c = (_log_cosh(raw_diag1 + raw_diag2) - _log_cosh(raw_diag1)
                    - _log_cosh(raw_diag2))
  return r1, r2, log_one_plus_c


def sylvester_step(z, q_r1, r2_qt, b, log_one_plus_c):
  """One Sylvester step from its folded matrices: `a = (R2 Q^T) z + b`,
  `z + (Q R1) tanh(a)`, and `log|det J| = sum_i log(1 + c_i sech^2 a_i)`."""
  a = tf.linalg.matvec(r2_qt, z) + b
  return (z + tf.linalg.matvec(q_r1, tf.tanh(a)),
          tf.reduce_sum(log_one_plus_c_sech_sq(a, log_one_plus_c), axis=-1))


def _reverse_permutation(dim, dtype):
  """The permutation matrix that reverses a vector's entries."""
  return tf.reverse(tf.eye(dim, dtype=dtype), axis=[-1])


# How each family makes `Q` from a step's unconstrained values `q_params`:
# `num_hidden(D)` is M, `q_size(D)` the number of values, `matrix(q_params,
# D, k)` Q `[..., D, M]` for step k's bijector, and `fold(q_params, D, k, r1,
# r2)` the pair `(Q R1, R2 Q^T)` that the vectorized path multiplies by.


class _Householder:
  def __init__(self, num_reflections):
    self.num_reflections = num_reflections

  def num_hidden(self, dim):
    return dim

  def q_size(self, dim):
    return self.num_reflections * dim

  def _vectors(self, q_params, dim):
    return tf.reshape(q_params, tf.concat(
        [tf.shape(q_params)[:-1], [self.num_reflections, dim]], 0))

  def matrix(self, q_params, dim, k):
    return householder_product(self._vectors(q_params, dim))

  def fold(self, q_params, dim, k, r1, r2):
    vectors = self._vectors(q_params, dim)
    # Q R1 and (Q R2^T)^T = R2 Q^T, one reflection at a time.
    return (householder_product(vectors, r1),
            tf.linalg.matrix_transpose(householder_product(
                vectors, tf.linalg.matrix_transpose(r2))))


class _Orthogonal:
  def __init__(self, num_vectors):
    self.num_vectors = num_vectors

  def num_hidden(self, dim):
    return min(self.num_vectors, dim)

  def q_size(self, dim):
    return dim * self.num_hidden(dim)

  def matrix(self, q_params, dim, k):
    return orthonormalize(tf.reshape(q_params, tf.concat(
        [tf.shape(q_params)[:-1], [dim, self.num_hidden(dim)]], 0)))

  def fold(self, q_params, dim, k, r1, r2):
    q = self.matrix(q_params, dim, k)
    return tf.linalg.matmul(q, r1), tf.linalg.matmul(r2, q, transpose_b=True)


class _Triangular:
  """`Q = I` on even steps, the reversing permutation on odd ones, so
  consecutive steps' triangles point opposite ways (the paper's T-SNF)."""

  def num_hidden(self, dim):
    return dim

  def q_size(self, dim):
    return 0

  def matrix(self, q_params, dim, k):
    eye = (tf.eye(dim, dtype=q_params.dtype) if k % 2 == 0
           else _reverse_permutation(dim, q_params.dtype))
    return tf.broadcast_to(eye, tf.concat([tf.shape(q_params)[:-1],
                                           [dim, dim]], 0))

  def fold(self, q_params, dim, k, r1, r2):
    if k % 2 == 0:
      return r1, r2
    # P R1 reverses R1's rows; R2 P^T reverses R2's columns.
    return tf.reverse(r1, axis=[-2]), tf.reverse(r2, axis=[-1])


def sylvester_family(q_map, name, num_reflections=8, num_vectors=8,
                     scale=0.1):
  """A `FlowFamily` of Sylvester steps whose `Q` comes from `q_map`:

  - `"householder"`: `Q = H_1 ... H_H`, `num_reflections` reflections of
    `R^D` (`M = D`); `D H` reals.
  - `"orthogonal"`: `orthonormalize` of a `D x M` matrix, `M =
    min(num_vectors, D)`; `D M` reals.
  - `"triangular"`: `Q = I` on even steps, the reversal on odd; no reals.

  Each step's parameters are `M (M + 2)` reals for `R1`, `R2`, `b` (`R1_ii
  = tanh`, `R2_ii = tanh` of theirs), then `Q`'s. The registered families
  `sylvester_householder`, `sylvester_orthogonal` and
  `sylvester_triangular` use the defaults (`num_reflections=8` and
  `num_vectors=8`, riannevdberg/sylvester-flows' defaults); register others
  under new names with `register_family(sylvester_family(...))`. `scale`
  sets the start (`near_identity`).
  """
  maps = {"householder": lambda: _Householder(int(num_reflections)),
          "orthogonal": lambda: _Orthogonal(int(num_vectors)),
          "triangular": _Triangular}
  if q_map not in maps:
    raise ValueError(f"sylvester_family: q_map must be one of {tuple(maps)}; "
                     f"got {q_map!r}.")
  if num_reflections < 1 or num_vectors < 1:
    raise ValueError(f"sylvester_family: num_reflections and num_vectors "
                     f"must be >= 1; got {num_reflections}, {num_vectors}.")
  q_map = maps[q_map]()

  def layout(dim):
    return _Layout(q_map.num_hidden(dim), q_map.q_size(dim))

  def make_bijector(params, dim, k, name):
    f, raw_diag2, b, q_params = layout(dim).unpack(params)
    r1, r2, _ = _triangles_from_raw(f, raw_diag2)
    return Sylvester(q_map.matrix(q_params, dim, k), r1, r2, b, name=name)

  def constrain(params, dim):
    f, raw_diag2, b, q_params = layout(dim).unpack(params)
    r1, r2, log_one_plus_c = _triangles_from_raw(f, raw_diag2)
    steps = []
    # Unstacked, not indexed per step (see FlowFamily.constrain).
    for k, (q_k, r1_k, r2_k, b_k, log_one_plus_c_k) in enumerate(zip(
        tf.unstack(q_params, axis=-2), tf.unstack(r1, axis=-3),
        tf.unstack(r2, axis=-3), tf.unstack(b, axis=-2),
        tf.unstack(log_one_plus_c, axis=-2))):
      q_r1, r2_qt = q_map.fold(q_k, dim, k, r1_k, r2_k)
      steps.append((q_r1, r2_qt, b_k, log_one_plus_c_k))
    return steps

  def step(z, step_params):
    return sylvester_step(z, *step_params)

  def near_identity(num_flows, dim, seed):
    """`K` volume-preserving shears: `R1` strictly upper (its diagonal 0, so
    every `c_i = 0` and log-det 0), `R2` and `Q` random, `b = 0`; entries
    of the triangles `~ N(0, scale^2 / M)`, so `z` moves by `O(scale)`.
    Not `R1 = 0`: the gradients of `R2` and `Q` vanish there."""
    shape = layout(dim)
    m = shape.num_hidden
    noise = tf.random.stateless_normal([num_flows, shape.size], seed=[seed, 0])
    f = tf.reshape(noise[:, :m * m], [num_flows, m, m]) * (scale / np.sqrt(m))
    f = tf.linalg.set_diag(f, tf.zeros([num_flows, m]))
    raw_diag2 = noise[:, m * m:m * m + m] * scale
    return tf.concat([tf.reshape(f, [num_flows, m * m]), raw_diag2,
                      tf.zeros([num_flows, m]), noise[:, m * m + 2 * m:]],
                     axis=-1)

  return FlowFamily(
      name=name, param_size=lambda dim: layout(dim).size,
      make_bijector=make_bijector, constrain=constrain, step=step,
      near_identity=near_identity)


SYLVESTER_HOUSEHOLDER = register_family(
    sylvester_family("householder", "sylvester_householder"))
SYLVESTER_ORTHOGONAL = register_family(
    sylvester_family("orthogonal", "sylvester_orthogonal"))
SYLVESTER_TRIANGULAR = register_family(
    sylvester_family("triangular", "sylvester_triangular"))
