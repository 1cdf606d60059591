"""Multiply-adds of a GlowModel's convolutions per image, by level: the
arithmetic that dominates a training step (the profile in DEVELOPERS.md),
for comparing configurations without the machine's drift.

    python benchmarks/glow_conv_arithmetic.py                  # plain vs defaults
    python benchmarks/glow_conv_arithmetic.py --num-steps 4 8 8

Runs one eager `log_prob` of one image and records the input of every Keras
`Conv2D` (the coupling networks and the split priors); a stride-1 `same`
convolution costs `H * W * kh * kw * C_in * C_out` multiply-adds. The
invertible 1x1 convolutions (C x C, C <= 16 here) are left out; so is the
backward pass, which costs about twice the forward for every convolution
alike, so the ratios carry.
"""

import argparse
import collections
import json

import keras
import numpy as np


def conv_multiply_adds(model):
  """{flow height: multiply-adds} of one forward pass of `model`."""
  by_height = collections.Counter()
  call = keras.layers.Conv2D.call

  def recording_call(layer, inputs, *args, **kwargs):
    _, height, width, _ = inputs.shape
    kh, kw, c_in, c_out = layer.kernel.shape
    by_height[int(height)] += int(height * width * kh * kw * c_in * c_out)
    return call(layer, inputs, *args, **kwargs)

  keras.layers.Conv2D.call = recording_call
  try:
    model.log_prob(np.zeros((1, 28, 28, 1), np.uint8))
  finally:
    keras.layers.Conv2D.call = call
  return dict(sorted(by_height.items(), reverse=True))


def main():
  from tfp_flows.models import PLAIN_GLOW, GlowModel
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-steps", type=int, nargs="+", default=[8],
                      help="the defaults' steps per level (one K or one per "
                           "level)")
  parser.add_argument("--hidden-channels", type=int, default=64)
  args = parser.parse_args()
  num_steps = args.num_steps[0] if len(args.num_steps) == 1 else args.num_steps
  plain = conv_multiply_adds(GlowModel(
      image_shape=(28, 28, 1), num_levels=2, num_steps=8, hidden_channels=64,
      **PLAIN_GLOW))
  defaults = conv_multiply_adds(GlowModel(
      image_shape=(28, 28, 1), num_steps=num_steps,
      hidden_channels=args.hidden_channels))
  for name, counts in (("plain (L = 2, 28 x 28)", plain),
                       (f"defaults (K = {num_steps})", defaults)):
    total = sum(counts.values())
    levels = ", ".join(f"{h} x {h}: {c / 1e6:.2f}M ({c / total:.0%})"
                       for h, c in counts.items())
    print(f"{name}: {total / 1e6:.2f}M multiply-adds an image ({levels})")
  ratio = sum(defaults.values()) / sum(plain.values())
  print(json.dumps({"plain": plain, "defaults": defaults,
                    "defaults_over_plain": ratio}))


if __name__ == "__main__":
  main()
