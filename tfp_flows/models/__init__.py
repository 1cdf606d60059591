"""Keras 3 models with custom `train_step`s over TFP flows."""

from tfp_flows.models.energy_flow import EnergyFlowModel
from tfp_flows.models.flow_vae import FlowVAE
from tfp_flows.models.glow import GlowModel

__all__ = ["EnergyFlowModel", "FlowVAE", "GlowModel"]
