"""Normalizing-flow bijectors: pure math, no owned weights.

Each bijector here is a `tfp.bijectors.Bijector` whose parameters are passed
in (tensors or `tf.Variable`s); Keras layers that own the weights build them.
"""

from tfp_flows.bijectors.planar import Planar
from tfp_flows.bijectors.radial import Radial
from tfp_flows.bijectors.radial import radial_params_from_unconstrained

__all__ = ["Planar", "Radial", "radial_params_from_unconstrained"]
