"""tfp_flows: normalizing flows as TensorFlow Probability bijectors and Keras 3 models."""

from tfp_flows import bijectors

__version__ = "0.1.0"

__all__ = ["bijectors", "__version__"]
