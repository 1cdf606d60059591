"""Keras 3 models with custom `train_step`s over TFP flows."""

from tfp_flows.models.glow import GlowModel

__all__ = ["GlowModel"]
