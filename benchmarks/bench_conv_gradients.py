"""The coupling networks' 3x3 convolutions: TensorFlow's own gradients
(oneDNN's Conv2DBackpropInput / Conv2DBackpropFilter) against two other
formulations of the same convolution: both gradients as forward
convolutions (`_conv_same_forward_conv_gradients` below), and forward and
both gradients as matrix products, as `tfp_flows.layers.glow` computes the
couplings' last convolution (`_conv_same_as_matmuls`).

Shapes: batch 64, the plain benchmark architecture's levels (14 x 14 and
7 x 7 on MNIST) and the defaults' (16 x 16, 8 x 8, 4 x 4 on the digits
zero-padded to 32 x 32); for each, the first convolution (C/2 -> 64 channels)
and the last (64 -> C). Times forward, each gradient alone, and forward plus
both gradients through `tf.GradientTape`, each inside `tf.function`,
alternating the two formulations, median of the rounds.

    python benchmarks/bench_conv_gradients.py
    python benchmarks/bench_conv_gradients.py --rounds 9 --calls 50

The last line is JSON: per shape, milliseconds of each part.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from tfp_flows.layers import glow  # noqa: E402

# (height = width, input channels, output channels)
SHAPES = [(14, 2, 64), (14, 64, 4), (7, 4, 64), (7, 64, 8),
          (16, 2, 64), (16, 64, 4), (8, 4, 64), (8, 64, 8), (4, 8, 64),
          (4, 64, 16)]
BATCH = 64


@tf.custom_gradient
def _conv_same_forward_conv_gradients(inputs, kernel):
  """`tf.nn.conv2d(inputs, kernel, 1, "SAME")`, odd kernel, with
  `dx = conv(dy, flip(W) with in/out swapped, "same")` and `dW` a "valid"
  convolution of `pad(x)^T [Cin, H', W', N]` by `dy^T [H, W, N, Cout]`."""
  outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")

  def gradient(output_gradient):
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
    input_gradient = tf.nn.conv2d(output_gradient, flipped, 1, "SAME")
    pad_h, pad_w = (kernel.shape[0] - 1) // 2, (kernel.shape[1] - 1) // 2
    padded = tf.pad(inputs, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    kernel_gradient = tf.transpose(tf.nn.conv2d(
        tf.transpose(padded, [3, 1, 2, 0]),
        tf.transpose(output_gradient, [1, 2, 0, 3]), 1, "VALID"),
                                   [1, 2, 0, 3])
    return input_gradient, kernel_gradient

  return outputs, gradient


def _milliseconds(functions, rounds, calls):
  """Median milliseconds a call of each function, the functions taking
  turns round by round so the machine's drift lands on all of them."""
  for function in functions.values():
    function()  # trace
  times = {name: [] for name in functions}
  for _ in range(rounds):
    for name, function in functions.items():
      start = time.perf_counter()
      for _ in range(calls):
        result = function()
      tf.nest.map_structure(lambda t: t.numpy(), result)
      times[name].append((time.perf_counter() - start) / calls * 1e3)
  return {name: statistics.median(t) for name, t in times.items()}


def _functions(size, in_channels, out_channels):
  rng = tf.random.Generator.from_seed(0)
  x = rng.normal([BATCH, size, size, in_channels])
  kernel = 0.1 * rng.normal([3, 3, in_channels, out_channels])
  output_gradient = rng.normal([BATCH, size, size, out_channels])

  def tensorflow_gradients(conv):
    def both():
      with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = conv(x, kernel)
      return tape.gradient(y, [x, kernel], output_gradients=output_gradient)
    return both

  native = lambda x, k: tf.nn.conv2d(x, k, 1, "SAME")
  strides = [1, 1, 1, 1]
  return {
      "forward": tf.function(lambda: native(x, kernel)),
      "input_gradient_tf": tf.function(
          lambda: tf.raw_ops.Conv2DBackpropInput(
              input_sizes=tf.shape(x), filter=kernel,
              out_backprop=output_gradient, strides=strides, padding="SAME")),
      "filter_gradient_tf": tf.function(
          lambda: tf.raw_ops.Conv2DBackpropFilter(
              input=x, filter_sizes=tf.shape(kernel),
              out_backprop=output_gradient, strides=strides, padding="SAME")),
      "both_gradients_tf": tf.function(tensorflow_gradients(native)),
      "both_gradients_as_forward_convs": tf.function(
          tensorflow_gradients(_conv_same_forward_conv_gradients)),
      "both_gradients_as_matmuls": tf.function(
          tensorflow_gradients(glow._conv_same_as_matmuls)),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--calls", type=int, default=30)
  args = parser.parse_args()
  results = {}
  for size, in_channels, out_channels in SHAPES:
    functions = _functions(size, in_channels, out_channels)
    times = _milliseconds(functions, args.rounds, args.calls)
    key = f"{size}x{size} {in_channels}->{out_channels}"
    results[key] = times
    print(f"{key:14s} forward {times['forward']:6.2f} ms; gradients: "
          f"TF's input {times['input_gradient_tf']:6.2f} + filter "
          f"{times['filter_gradient_tf']:6.2f}; forward and both: TF's "
          f"{times['both_gradients_tf']:6.2f}, as forward convolutions "
          f"{times['both_gradients_as_forward_convs']:6.2f}, as matmuls "
          f"{times['both_gradients_as_matmuls']:6.2f}", flush=True)
  print(json.dumps(results))


if __name__ == "__main__":
  main()
