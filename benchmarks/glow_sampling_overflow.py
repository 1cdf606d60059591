"""Where a Glow's samples overflow: NaN samples per temperature, and each
coupling's largest inverse log-factor `-log_scale` in the generative
direction (latents to images), in the order the couplings run.

    python benchmarks/glow_sampling_overflow.py saved_models/glow_mnist/glow.keras

docs/RESULTS.md ("Sample quality") quotes it for the 930-step default model
of `examples/train_glow.py`.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows.bijectors import AffineCoupling  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model")
  parser.add_argument("--num-samples", type=int, default=300)
  args = parser.parse_args()
  model = keras.models.load_model(args.model)
  # The latents `model.sample` would decode (a top mixture's included).
  for temperature in (0.7, 1.0):
    x = model.flow.forward(
        model.sample_latents(args.num_samples, temperature, seed=7)).numpy()
    print(f"T = {temperature}: {np.isnan(x).any(axis=(1, 2, 3)).sum()} of "
          f"{args.num_samples} samples have NaN pixels")
  # Record each coupling's factor as the T = 1 latents pass through; a
  # wrapper of the public method's private worker, for this diagnosis only.
  inverse = AffineCoupling._augmented_inverse

  def recording(self, y):
    _, log_scale = self._shift_and_log_scale(self._split(y, "y")[0])
    if log_scale is not None:
      print(f"{self.name}: largest -log_scale "
            f"{float(tf.reduce_max(-log_scale)):.3g}")
    return inverse(self, y)

  AffineCoupling._augmented_inverse = recording
  try:
    model.flow.forward(model.sample_latents(args.num_samples, 1., seed=7))
  finally:
    AffineCoupling._augmented_inverse = inverse


if __name__ == "__main__":
  main()
