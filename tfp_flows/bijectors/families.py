"""Flow families: everything a model needs to know about one kind of flow
step, in one record.

A family (planar, radial, ...) is registered in the module of its bijector
(`planar.py`, `radial.py`), beside the math it wraps, and looked up by name
with `get_family`. Models and layers (`FlowVAE`, `EnergyFlowModel`,
`FlowParameters`) hold a family and never branch on its name: a new family is
one new bijector module that ends with `register_family(FlowFamily(...))`,
plus its import in `tfp_flows/bijectors/__init__.py`.

The parameters of `K` steps on `R^D` are a tensor `params` `[..., K, P]`:
step `k` is the unconstrained real vector `params[..., k, :]`, which the
family maps to valid bijector parameters (any real vector is a valid step).
Batch dimensions `...` become batch dimensions of the bijectors, so an
encoder's `[N, K, P]` output is one flow per example.

Two routes through the `K` steps, equal in values and gradients
(`tests/test_flow_chain.py`):

```none
family.bijectors(params, D)              K tfb.Bijectors (inverse, log_prob, TFP)
family.forward_and_log_det(params, D, z) z_K and sum_k log|det J_k|: training
```

The second constrains all `K` steps' parameters at once and lets each step
share its intermediate values between output and log-det; a `tfb.Chain` of
the bijectors repeats the constraints per step and per method.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

__all__ = ["FlowFamily", "family_names", "get_family", "register_family"]


@dataclasses.dataclass(frozen=True)
class FlowFamily:
  """One kind of flow step.

  Attributes:
    name: what users pass (`FlowVAE(flow=name)`).
    param_size: `D -> P`, the reals parametrizing one step on `R^D`.
    make_bijector: `(params [..., P], D, k, name) -> tfb.Bijector`, step
      `k` (0-based; a family whose steps alternate, as triangular
      Sylvester flows alternate their permutation, reads it).
    constrain: `(params [..., K, P], D) -> [step_0, ..., step_{K-1}]`, the
      valid parameters of each of the `K` steps (each a tuple of tensors),
      computed for all `K` at once and then unstacked along the `K` axis.
      Unstacked once, not indexed per step: the gradient of an unstack is
      one stack, while each index `[..., k, :]` has a gradient the size of
      all `K` steps' (`StridedSliceGrad`), `K^2` work in all.
    step: `(z [..., D], step_params) -> (z', log|det J|)`, one step with its
      log-det, from one element of `constrain`'s output.
    near_identity: `(K, D, seed) -> params [K, P]`, a start for `K` steps
      that moves `z` little and has log-det 0 (see each family).
  """
  name: str
  param_size: Callable[[int], int]
  make_bijector: Callable
  constrain: Callable
  step: Callable
  near_identity: Callable

  def checked_params(self, params, dim):
    """`params` as a tensor `[..., K, P]`, or a ValueError naming the
    expected shape."""
    params = tf.convert_to_tensor(params)
    expected = self.param_size(dim)
    if params.shape.rank is not None and (
        params.shape.rank < 2 or params.shape[-1] not in (None, expected)):
      raise ValueError(
          f"{self.name} flow parameters must have shape [..., K, {expected}] "
          f"for D = {dim}; got {params.shape}.")
    return params

  def bijectors(self, params, dim):
    """The `K` bijectors of `params` `[..., K, P]`, in the order applied."""
    params = self.checked_params(params, dim)
    return [self.make_bijector(params[..., k, :], dim, k, f"{self.name}_{k}")
            for k in range(params.shape[-2])]

  def forward_and_log_det(self, params, dim, z):
    """`z_K` and `sum_k log|det df_k/dz_{k-1}|` of the `K` steps of `params`
    `[..., K, P]` applied to `z` `[..., D]`: the values (and gradients) of
    the chain of `bijectors(params, dim)`, in fewer ops."""
    params = self.checked_params(params, dim)
    z = tf.convert_to_tensor(z)
    if params.shape[-2] is None:
      raise ValueError(f"{self.name} flow parameters need a static number "
                       f"of steps K (axis -2); got shape {params.shape}.")
    log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
    for step_params in self.constrain(params, dim):
      z, step_log_det = self.step(z, step_params)
      log_det += step_log_det
    return z, log_det


_FAMILIES = {}


def register_family(family):
  """Adds `family` to the names `get_family` knows; returns it."""
  if family.name in _FAMILIES:
    raise ValueError(f"a flow family named {family.name!r} is registered "
                     f"already.")
  _FAMILIES[family.name] = family
  return family


def family_names():
  """The registered families' names, in registration order."""
  return tuple(_FAMILIES)


def get_family(name, where="flow"):
  """The family called `name` (a `FlowFamily` passes through), or a
  ValueError naming the known ones; `where` prefixes the message."""
  if isinstance(name, FlowFamily):
    return name
  if name not in _FAMILIES:
    raise ValueError(f"{where} must be one of {family_names()}; got {name!r}.")
  return _FAMILIES[name]
