"""Keras 3 layers that own flow weights and build TFP bijectors from them.

A Keras 3 model does not track `tf.Variable`s held inside a TFP bijector, so
the weights live here, as Keras weights, and each layer's `bijector()` builds
a fresh bijector from their current values on every call. Keras then sees,
saves, restores, distributes and optimizes every flow parameter. The one
layer here that is not a map (`GaussianMixtureLayer`) builds a base
distribution the same way.
"""

from tfp_flows.layers.flows import FlowParameters
from tfp_flows.layers.glow import ActNormLayer
from tfp_flows.layers.glow import AffineCouplingLayer
from tfp_flows.layers.glow import GaussianMixtureLayer
from tfp_flows.layers.glow import GlowArchitecture
from tfp_flows.layers.glow import GlowLevel
from tfp_flows.layers.glow import InvertibleConv1x1Layer
from tfp_flows.layers.glow import SplitPriorLayer
from tfp_flows.layers.glow import TopPriorLayer

__all__ = ["ActNormLayer", "AffineCouplingLayer", "FlowParameters",
           "GaussianMixtureLayer", "GlowArchitecture", "GlowLevel", "InvertibleConv1x1Layer",
           "SplitPriorLayer", "TopPriorLayer"]
