"""`FlowParameters`: Keras weights for a chain of flow steps of one family.

The steps' parameters are one weight `[K, P]`; the family (`planar`,
`radial`, ...; `tfp_flows.bijectors.families`) says what they mean. An
encoder that emits `[N, K, P]` per example (the amortized flows of
`FlowVAE`) uses the same family functions without this layer.
"""

import keras

from tfp_flows.bijectors.families import get_family

__all__ = ["FlowParameters"]


@keras.saving.register_keras_serializable(package="tfp_flows")
class FlowParameters(keras.layers.Layer):
  """Keras weights `[K, P]` for `K` steps of a flow family on `R^dim`.

  `bijectors()` builds the steps from the weights' current values, so Keras
  tracks, saves and distributes them (a bijector holding a `tf.Variable`
  would hide it from a Keras 3 model); calling the layer on `z` `[..., dim]`
  returns `z_K` and the summed log-det by the family's vectorized path.
  The weights start at the family's `near_identity` parameters.

  Args:
    flow: a family name (`tfp_flows.bijectors.family_names()`) or a
      `FlowFamily`.
    num_flows: `K`.
    dim: `D`.
    seed: seeds the initial parameters.
  """

  def __init__(self, flow, num_flows, dim, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.family = get_family(flow, "FlowParameters: flow")
    if num_flows < 1 or dim < 1:
      raise ValueError(f"FlowParameters: num_flows and dim must be >= 1; got "
                       f"{num_flows} and {dim}.")
    self.num_flows, self.dim, self.seed = num_flows, dim, seed
    self.params = self.add_weight(
        shape=(num_flows, self.family.param_size(dim)), name="params",
        initializer=keras.initializers.Constant(
            self.family.near_identity(num_flows, dim, seed)))

  @property
  def flow(self):
    """The family's name."""
    return self.family.name

  def get_config(self):
    return {**super().get_config(), "flow": self.family.name,
            "num_flows": self.num_flows, "dim": self.dim, "seed": self.seed}

  def bijectors(self):
    """The `K` steps as `tfb.Bijector`s, in the order applied."""
    return self.family.bijectors(self.params.value, self.dim)

  def call(self, z):
    return self.family.forward_and_log_det(self.params.value, self.dim, z)
