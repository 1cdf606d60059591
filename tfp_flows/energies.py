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

#### U2-U4 need a box

As written, only `U1` is a density: `U2`-`U4` do not depend on `z1` except
through the bounded `w1, w2, w3`, so `exp(-U)` has infinite mass along
`z1`, `KL(q || exp(-U)/Z)` is undefined and the free energy has no lower
bound (a fit lowers it by spreading along `z1` forever). The paper's Fig. 3
shows them on `[-4, 4]^2`. `energy(name, box=4.)` restricts a target to the
strip `|z1| <= 4` with a soft wall,

```none
U_box(z) = U(z) + ((|z1| - box)_+ / 0.2)^2 / 2,
```

exact inside the strip, and continuously differentiable (a hard cut would
make `KL(q_K || p)` infinite for any flow of a Gaussian, which puts mass
everywhere). All four boxed targets are proper densities; `log_normalizer`
gives their `log Z` by quadrature, so a fit's `F + log Z` is its KL.
"""

import math

import numpy as np
import tensorflow as tf

__all__ = ["ENERGIES", "BOX_WALL_SCALE", "NORMALIZABLE", "box_wall", "energy",
           "log_density_grid", "log_normalizer", "u1", "u2", "u3", "u4"]


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
# exp(-U) has finite mass on R^2 only for these, unless boxed.
NORMALIZABLE = ("U1",)
BOX_WALL_SCALE = 0.2


def box_wall(z, box):
  """`((|z1| - box)_+ / BOX_WALL_SCALE)^2 / 2`: zero on the strip `|z1| <=
  box`, a Gaussian fall-off of scale 0.2 outside it."""
  z = tf.convert_to_tensor(z)
  outside = tf.nn.relu(tf.abs(z[..., 0]) - box)
  return 0.5 * tf.square(outside / BOX_WALL_SCALE)


def energy(name, box=None):
  """The energy function `U` called `name` (`"U1"` .. `"U4"`); with `box` a
  positive half width, `U + box_wall(z, box)` (see the module docstring)."""
  if name not in ENERGIES:
    raise ValueError(f"energy must be one of {sorted(ENERGIES)}; got {name!r}.")
  if box is None:
    return ENERGIES[name]
  if not box > 0:
    raise ValueError(f"energy: box must be a positive half width or None; got "
                     f"{box!r}.")
  base = ENERGIES[name]
  box = float(box)

  def boxed(z):
    return base(z) + box_wall(z, box)

  boxed.__name__ = f"{base.__name__}_box{box:g}"
  return boxed


def log_normalizer(name, box=None, limit=8., size=1600):
  """`log Z = log integral exp(-U)` of energy `name` (boxed by `box`), by a
  Riemann sum on a `size x size` grid over `[-limit, limit]^2` (spacing
  0.01 by default, against features of scale >= 0.2; the targets' mass
  outside the window is below e^-50 of the total).

  Raises:
    ValueError: for `U2`-`U4` without a box, whose `Z` is infinite.
  """
  if box is None and name not in NORMALIZABLE:
    raise ValueError(
        f"log_normalizer: exp(-{name}) has infinite mass on R^2 (nothing "
        f"confines z1); pass a box, e.g. box=4.")
  if box is not None and box + 10 * BOX_WALL_SCALE > limit:
    raise ValueError(f"log_normalizer: the window [-{limit}, {limit}] must "
                     f"hold the box and its wall; got box={box}.")
  target = energy(name, box)
  log_values, cell_area = log_density_grid(
      lambda z: -target(tf.cast(z, tf.float64)), limit, size,
      dtype=np.float64)
  return float(np.logaddexp.reduce(log_values.ravel()) + np.log(cell_area))


def log_density_grid(log_density, limit=4., size=200, dtype=np.float32):
  """`log_density` on a `size x size` grid of cell centres over `[-limit,
  limit]^2`.

  Returns `(log_values [size, size], cell_area)`; row `i` is `z2 =
  grid[i]`, column `j` is `z1 = grid[j]`, as `imshow(origin="lower")` wants.
  The cells tile the window, so `sum(exp(log_values)) * cell_area` is its
  mass.
  """
  step = 2. * limit / size
  grid = (-limit + step * (np.arange(size) + 0.5)).astype(dtype)
  z1, z2 = np.meshgrid(grid, grid)
  points = np.stack([z1.ravel(), z2.ravel()], axis=-1)
  values = np.asarray(log_density(tf.constant(points))).reshape(size, size)
  return values, step ** 2
