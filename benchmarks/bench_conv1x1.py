"""The 1x1 convolution's product: TFP's ScaleMatvecLU against InvertibleConv1x1.

Times forward plus gradient with respect to the LU factors on a
[64, 14, 14, 4] batch (Glow's first level on MNIST at batch 64), both inside
tf.function, alternating, median of several runs of 200 calls each.

    python benchmarks/bench_conv1x1.py

The last line is JSON: matvec_ms, matmul_ms, speedup.
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_flows.bijectors import InvertibleConv1x1  # noqa: E402


def main(rounds=7, calls=200):
  rng = np.random.default_rng(0)
  rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  lu, perm = tf.linalg.lu(tf.constant(rotation, tf.float32))
  lower_upper = tf.Variable(lu)
  x = tf.constant(rng.normal(size=(64, 14, 14, 4)), tf.float32)

  def timed_step(bijector_class):
    @tf.function
    def step(x):
      with tf.GradientTape() as tape:
        y = bijector_class(lower_upper, perm).forward(x)
        loss = tf.reduce_sum(y * y)
      return tape.gradient(loss, lower_upper)
    return step

  steps = {"matvec": timed_step(tfp.bijectors.ScaleMatvecLU),
           "matmul": timed_step(InvertibleConv1x1)}
  for step in steps.values():
    step(x)  # trace
  times = {name: [] for name in steps}
  for _ in range(rounds):
    for name, step in steps.items():
      start = time.perf_counter()
      for _ in range(calls):
        step(x)
      times[name].append((time.perf_counter() - start) / calls * 1e3)
  matvec, matmul = (statistics.median(times[n]) for n in ("matvec", "matmul"))
  print(f"ScaleMatvecLU {matvec:.3f} ms   InvertibleConv1x1 {matmul:.3f} ms")
  print(json.dumps({"matvec_ms": matvec, "matmul_ms": matmul,
                    "speedup": matvec / matmul}))


if __name__ == "__main__":
  main()
