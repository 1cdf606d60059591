"""Parameter sets for the planar and radial bijector tests.

Ordinary parameters are the issue's `u, w, b ~ N(0, 1)`, `alpha in
[0.1, 10]`; extreme ones push each parameter to the edge of its range
(`||u||` up to 100, `||w||` near 0, `alpha` from 1e-3 to 1e2, `beta` at
`-alpha + eps` and up to 1e2).
"""

import numpy as np

from tfp_flows.bijectors import Planar, Radial

EVENT_SIZES = (1, 2, 10, 40)
DTYPES = (np.float32, np.float64)

PLANAR_ORDINARY = ("ordinary",)
PLANAR_EXTREME = ("u_norm_100", "u_norm_100_against_w", "u_norm_100_along_w",
                  "w_norm_1e-4", "w_norm_1e-4_u_norm_100")
RADIAL_ORDINARY = ("ordinary",)
RADIAL_EXTREME = ("alpha_1e-3_beta_at_bound", "alpha_1e2_beta_at_bound",
                  "alpha_1e-3_beta_1e2", "alpha_1e2_beta_1e2",
                  "alpha_1e-3_beta_0")


def _unit(rng, d):
  v = rng.normal(size=d)
  return v / np.linalg.norm(v)


def planar_params(case, d, dtype, rng, batch_shape=()):
  """Returns `(u, w, b)` as numpy arrays for a named case."""
  shape = tuple(batch_shape) + (d,)
  u = rng.normal(size=shape)
  w = rng.normal(size=shape)
  b = rng.normal(size=batch_shape)
  w_dir = w / np.linalg.norm(w, axis=-1, keepdims=True)
  if case == "u_norm_100":
    u = 100. * u / np.linalg.norm(u, axis=-1, keepdims=True)
  elif case == "u_norm_100_against_w":  # w^T u << 0: w^T u_hat -> -1
    u = -100. * w_dir
  elif case == "u_norm_100_along_w":  # w^T u >> 0: a strong expansion
    u = 100. * w_dir
  elif case == "w_norm_1e-4":  # u_hat grows like 1 / ||w||
    w = 1e-4 * w_dir
  elif case == "w_norm_1e-4_u_norm_100":
    w = 1e-4 * w_dir
    u = 100. * u / np.linalg.norm(u, axis=-1, keepdims=True)
  elif case != "ordinary":
    raise ValueError(case)
  return u.astype(dtype), w.astype(dtype), np.asarray(b, dtype)


def radial_params(case, d, dtype, rng, batch_shape=()):
  """Returns `(z0, alpha, beta)` as numpy arrays for a named case."""
  z0 = rng.normal(size=tuple(batch_shape) + (d,))
  if case == "ordinary":
    alpha = rng.uniform(0.1, 10., size=batch_shape)
    beta = -alpha + rng.exponential(2., size=batch_shape)
  else:
    alpha_str, beta_str = case.split("_beta_")
    alpha = np.full(batch_shape, float(alpha_str.split("_")[1]))
    if beta_str == "at_bound":
      beta = -alpha * (1. - 1e-3)  # beta = -alpha + eps, eps = 1e-3 alpha
    else:
      beta = np.full(batch_shape, float(beta_str))
  return z0.astype(dtype), alpha.astype(dtype), beta.astype(dtype)


def case_params(kind, case, d, dtype, rng, batch_shape=()):
  params_fn = planar_params if kind == "planar" else radial_params
  return params_fn(case, d, dtype, rng, batch_shape)


def make_bijector_from(kind, params):
  return (Planar if kind == "planar" else Radial)(*params)


def make_bijector(kind, case, d, dtype, rng, batch_shape=()):
  return make_bijector_from(
      kind, case_params(kind, case, d, dtype, rng, batch_shape))


ORDINARY = [("planar", c) for c in PLANAR_ORDINARY] + [
    ("radial", c) for c in RADIAL_ORDINARY]
EXTREME = [("planar", c) for c in PLANAR_EXTREME] + [
    ("radial", c) for c in RADIAL_EXTREME]
ALL_CASES = ORDINARY + EXTREME
