"""tfp_flows: normalizing flows as TensorFlow Probability bijectors and Keras 3 models."""

from tfp_flows import bijectors
# Importing the models registers them (and the layers and learning-rate
# schedules they hold) with Keras, so `import tfp_flows` is enough for
# `keras.saving.load_model` to rebuild a saved model.
from tfp_flows import models

__version__ = "0.1.0"

__all__ = ["bijectors", "models", "__version__"]
