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


def planar_log_det(params, z):
  """log|1 + u_hat^T psi(z)|, psi = (1 - tanh^2(w^T z + b)) w (paper, Eq. 11)."""
  u, w, b = (p.astype(LD) for p in params)
  z = z.astype(LD)
  psi = (1 - np.tanh(np.sum(w * z, -1) + b) ** 2)[..., None] * w
  return np.log(np.abs(1 + np.sum(planar_u_hat(u, w) * psi, -1)))


def radial_log_det(params, z):
  """(D - 1) log(1 + beta h) + log(1 + beta h + beta h' r), h = 1 / (alpha +
  r) (paper, Eq. 14)."""
  z0, alpha, beta = (p.astype(LD) for p in params)
  z = z.astype(LD)
  r = np.sqrt(np.sum((z - z0) ** 2, -1))
  h = 1 / (alpha + r)
  h_prime = -h * h
  d = z.shape[-1]
  return ((d - 1) * np.log(1 + beta * h)
          + np.log(1 + beta * h + beta * h_prime * r))


def radial_from_unconstrained(raw_alpha, raw_beta):
  """alpha = softplus(raw_alpha), beta = -alpha + softplus(raw_beta)."""
  alpha = _softplus(raw_alpha.astype(LD))
  return alpha, -alpha + _softplus(raw_beta.astype(LD))


FORWARD = {"planar": planar_forward, "radial": radial_forward}
INVERSE = {"planar": planar_inverse, "radial": radial_inverse}
LOG_DET = {"planar": planar_log_det, "radial": radial_log_det}
