"""Keras 3 models with custom `train_step`s over TFP flows, all on one base
class, `FlowModel` (`base.py`), which owns the training mechanics."""

from tfp_flows.models.base import FlowModel
from tfp_flows.models.energy_flow import EnergyFlowModel
from tfp_flows.models.flow_vae import FlowVAE
from tfp_flows.models.glow import GLOW_RECIPE
from tfp_flows.models.glow import GlowModel
from tfp_flows.models.glow import PLAIN_GLOW

__all__ = ["EnergyFlowModel", "FlowModel", "FlowVAE", "GLOW_RECIPE",
           "GlowModel", "PLAIN_GLOW"]
