"""Normalizing-flow bijectors: pure math, no owned weights.

Each bijector here is a `tfp.bijectors.Bijector` whose parameters are passed
in (tensors or `tf.Variable`s); the Keras layers in `tfp_flows.layers` own
the weights and build these bijectors from them. The step flows (planar,
radial, Sylvester) also register a `FlowFamily` (`families.py`), the record
by which models find them.
"""

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.affine_coupling import AffineCoupling
from tfp_flows.bijectors.conv1x1 import InvertibleConv1x1
from tfp_flows.bijectors.families import FlowFamily
from tfp_flows.bijectors.families import family_names
from tfp_flows.bijectors.families import get_family
from tfp_flows.bijectors.families import register_family
from tfp_flows.bijectors.planar import PLANAR
from tfp_flows.bijectors.planar import Planar
from tfp_flows.bijectors.radial import RADIAL
from tfp_flows.bijectors.radial import Radial
from tfp_flows.bijectors.radial import radial_params_from_unconstrained
from tfp_flows.bijectors.reshaping import channels_first_flatten
from tfp_flows.bijectors.reshaping import squeeze
from tfp_flows.bijectors.split_prior import SplitPrior
from tfp_flows.bijectors.sylvester import SYLVESTER_HOUSEHOLDER
from tfp_flows.bijectors.sylvester import SYLVESTER_ORTHOGONAL
from tfp_flows.bijectors.sylvester import SYLVESTER_TRIANGULAR
from tfp_flows.bijectors.sylvester import Sylvester
from tfp_flows.bijectors.sylvester import householder_product
from tfp_flows.bijectors.sylvester import orthonormalize
from tfp_flows.bijectors.sylvester import sylvester_family

__all__ = ["ActNorm", "AffineCoupling", "FlowFamily", "InvertibleConv1x1",
           "PLANAR", "Planar", "RADIAL", "Radial", "channels_first_flatten",
           "family_names", "get_family", "radial_params_from_unconstrained",
           "register_family", "SplitPrior", "squeeze", "SYLVESTER_HOUSEHOLDER",
           "SYLVESTER_ORTHOGONAL", "SYLVESTER_TRIANGULAR", "Sylvester",
           "householder_product", "orthonormalize", "sylvester_family"]
