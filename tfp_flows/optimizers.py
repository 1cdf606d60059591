"""Training recipes: learning-rate schedules and the optimizers models use
when `compile()` is called without one."""

import math

import keras

__all__ = ["LinearWarmup", "adam_with_warmup_and_ema"]


@keras.saving.register_keras_serializable(package="tfp_flows")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """A linear learning-rate warm-up, then constant or a cosine decay.

  ```none
  step < warmup_steps:  learning_rate * (step + 1) / warmup_steps
  after:                learning_rate                       (decay_steps None)
                        learning_rate * (1 + cos(pi t)) / 2, t = (step -
                        warmup_steps) / decay_steps, clipped to [0, 1]
  ```

  Keras' `CosineDecay(warmup_target=...)` always decays after its warm-up;
  a model compiled without knowing how long it will train needs the
  constant, so this schedule has both.

  Args:
    learning_rate: the peak learning rate, > 0.
    warmup_steps: steps of the warm-up, >= 0 (0: none).
    decay_steps: steps of the cosine decay after the warm-up, or None.
  """

  def __init__(self, learning_rate, warmup_steps, decay_steps=None):
    if not learning_rate > 0:
      raise ValueError(f"LinearWarmup: learning_rate must be > 0; got "
                       f"{learning_rate!r}.")
    if warmup_steps < 0 or (decay_steps is not None and decay_steps < 1):
      raise ValueError(f"LinearWarmup: warmup_steps must be >= 0 and "
                       f"decay_steps >= 1 or None; got {warmup_steps!r}, "
                       f"{decay_steps!r}.")
    self.learning_rate = float(learning_rate)
    self.warmup_steps = int(warmup_steps)
    self.decay_steps = None if decay_steps is None else int(decay_steps)

  def __call__(self, step):
    step = keras.ops.cast(step, "float32")
    rate = self.learning_rate * keras.ops.minimum(
        1., (step + 1.) / max(self.warmup_steps, 1))
    if self.decay_steps is not None:
      progress = keras.ops.clip(
          (step - self.warmup_steps) / self.decay_steps, 0., 1.)
      rate *= 0.5 * (1. + keras.ops.cos(math.pi * progress))
    return rate

  def get_config(self):
    return {"learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps}


def adam_with_warmup_and_ema(learning_rate=1e-3, warmup_steps=500,
                             ema_momentum=0.999, decay_steps=None,
                             **kwargs):
  """`keras.optimizers.Adam` with a `LinearWarmup` schedule and, unless
  `ema_momentum` is None, an exponential moving average of the weights
  (`use_ema`), which `FlowModel.fit` swaps in for validation and Keras
  writes into the weights when `fit` ends.

  `kwargs` go to Adam (e.g. `global_clipnorm`)."""
  return keras.optimizers.Adam(
      LinearWarmup(learning_rate, warmup_steps, decay_steps),
      use_ema=ema_momentum is not None,
      ema_momentum=0.99 if ema_momentum is None else ema_momentum, **kwargs)
