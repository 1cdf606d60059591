"""Independent NumPy references for the planar and radial flows.

Written from the paper's formulas, not from the package's code, and evaluated
in `np.longdouble` (80-bit extended on x86-64): an "exact" answer against
which float32 and float64 results are judged.
"""

import numpy as np

LD = np.longdouble


def _softplus(x):
  return np.logaddexp(LD(0), x)


def planar_u_hat(u, w):
  u, w = u.astype(LD), w.astype(LD)
  wu = np.sum(w * u, -1, keepdims=True)
  m = -1 + _softplus(wu)
  return u + (m - wu) * w / np.sum(w * w, -1, keepdims=True)


def planar_forward(params, z):
  u, w, b = (p.astype(LD) for p in params)
  z = z.astype(LD)
  return z + planar_u_hat(u, w) * np.tanh(np.sum(w * z, -1) + b)[..., None]


def planar_inverse(params, y):
  """Bisection on h + c tanh h = w^T y + b, to the last bit of longdouble."""
  u, w, b = (p.astype(LD) for p in params)
  y = y.astype(LD)
  u_hat = planar_u_hat(u, w)
  c = np.sum(w * u_hat, -1)
  s = np.sum(w * y, -1) + b
  low, high = s - np.abs(c) - 1, s + np.abs(c) + 1
  for _ in range(200):
    mid = (low + high) / 2
    above = mid + c * np.tanh(mid) > s
    high = np.where(above, mid, high)
    low = np.where(above, low, mid)
  h = (low + high) / 2
  return y - u_hat * np.tanh(h)[..., None]


def radial_forward(params, z):
  z0, alpha, beta = (p.astype(LD) for p in params)
  z = z.astype(LD)
  r = np.sqrt(np.sum((z - z0) ** 2, -1))
  return z + (beta / (alpha + r))[..., None] * (z - z0)


def radial_inverse(params, y):
  z0, alpha, beta = (p.astype(LD) for p in params)
  y = y.astype(LD)
  rho = np.sqrt(np.sum((y - z0) ** 2, -1))
  # rho = r + beta r / (alpha + r)  <=>  r^2 + (alpha + beta - rho) r - alpha rho = 0
  bq = alpha + beta - rho
  root = np.sqrt(bq * bq + 4 * alpha * rho)
  # The smaller-magnitude root of a quadratic without cancellation.
  r = np.where(bq >= 0, 2 * alpha * rho / (bq + root), (root - bq) / 2)
  return z0 + (y - z0) * (r / rho)[..., None]


FORWARD = {"planar": planar_forward, "radial": radial_forward}
INVERSE = {"planar": planar_inverse, "radial": radial_inverse}
