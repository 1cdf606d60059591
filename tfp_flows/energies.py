r"""The four 2-D unnormalized densities `exp(-U(z))` of Rezende & Mohamed
(2015), Table 1 / Fig. 3; `tfp_flows.models.EnergyFlowModel` fits flows to
them.

```none
w1(z) = sin(2 pi z1 / 4)
w2(z) = 3 exp(-((z1 - 1) / 0.6)^2 / 2)
w3(z) = 3 sigmoid((z1 - 1) / 0.3)
U1(z) = ((||z|| - 2) / 0.4)^2 / 2
        - log(exp(-((z1 - 2) / 0.6)^2 / 2) + exp(-((z1 + 2) / 0.6)^2 / 2))
U2(z) = ((z2 - w1(z)) / 0.4)^2 / 2
U3(z) = -log(exp(-((z2 - w1) / 0.35)^2 / 2) + exp(-((z2 - w1 + w2) / 0.35)^2 / 2))
U4(z) = -log(exp(-((z2 - w1) / 0.4)^2 / 2) + exp(-((z2 - w1 + w3) / 0.35)^2 / 2))
```

The logs of sums of exponentials are evaluated as `logsumexp`, so `U` is
finite and smooth far from the modes, where the exponentials underflow.
"""

import math

import numpy as np
import tensorflow as tf

__all__ = ["ENERGIES", "energy", "u1", "u2", "u3", "u4", "log_density_grid"]


def _w1(z):
  return tf.sin(2. * math.pi * z[..., 0] / 4.)


def _w2(z):
  return 3. * tf.exp(-0.5 * tf.square((z[..., 0] - 1.) / 0.6))


def _w3(z):
  return 3. * tf.sigmoid((z[..., 0] - 1.) / 0.3)


def _neg_log_sum_exp(*exponents):
  return -tf.reduce_logsumexp(tf.stack(exponents, axis=-1), axis=-1)


def u1(z):
  z = tf.convert_to_tensor(z)
  radius = tf.norm(z, axis=-1)
  return 0.5 * tf.square((radius - 2.) / 0.4) + _neg_log_sum_exp(
      -0.5 * tf.square((z[..., 0] - 2.) / 0.6),
      -0.5 * tf.square((z[..., 0] + 2.) / 0.6))


def u2(z):
  z = tf.convert_to_tensor(z)
  return 0.5 * tf.square((z[..., 1] - _w1(z)) / 0.4)


def u3(z):
  z = tf.convert_to_tensor(z)
  offset = z[..., 1] - _w1(z)
  return _neg_log_sum_exp(-0.5 * tf.square(offset / 0.35),
                          -0.5 * tf.square((offset + _w2(z)) / 0.35))


def u4(z):
  z = tf.convert_to_tensor(z)
  offset = z[..., 1] - _w1(z)
  return _neg_log_sum_exp(-0.5 * tf.square(offset / 0.4),
                          -0.5 * tf.square((offset + _w3(z)) / 0.35))


ENERGIES = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}


def energy(name):
  """The energy function `U` called `name` (`"U1"` .. `"U4"`)."""
  if name not in ENERGIES:
    raise ValueError(f"energy must be one of {sorted(ENERGIES)}; got {name!r}.")
  return ENERGIES[name]


def log_density_grid(log_density, limit=4., size=200):
  """`log_density` on a `size x size` grid over `[-limit, limit]^2`.

  Returns `(log_values [size, size], cell_area)`; row `i` is `z2 =
  grid[i]`, column `j` is `z1 = grid[j]`, as `imshow(origin="lower")` wants.
  """
  grid = np.linspace(-limit, limit, size, dtype=np.float32)
  z1, z2 = np.meshgrid(grid, grid)
  points = np.stack([z1.ravel(), z2.ravel()], axis=-1)
  values = np.asarray(log_density(tf.constant(points))).reshape(size, size)
  return values, (grid[1] - grid[0]) ** 2
