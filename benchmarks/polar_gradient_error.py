"""How accurate `orthonormalize`'s analytic gradient is, per dtype and
execution mode, and why it needs its refinement step under XLA.

    python benchmarks/polar_gradient_error.py

First: the gradient against autodiff through the unrolled iteration in
float64, the largest difference relative to the largest entry (the
quantity tests/test_sylvester.py bounds, on the same inputs). Then: how far
`V diag(w) V^T` from `tf.linalg.eigh` misses a float64 symmetric positive
definite `H`, eagerly (LAPACK) and under XLA (a Jacobi iteration), and how
far `V` is from orthonormal. Numbers in DEVELOPERS.md come from here.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

from test_sylvester import polar_gradient_error  # noqa: E402


def eigh_errors(jit_compile):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(5, 6, 6))
  h = tf.constant(a @ a.transpose(0, 2, 1) + 0.1 * np.eye(6))
  w, v = tf.function(tf.linalg.eigh, jit_compile=jit_compile)(h)
  rebuilt = tf.linalg.matmul(v * w[..., None, :], v, transpose_b=True)
  gram = tf.linalg.matmul(v, v, transpose_a=True)
  return (float(tf.reduce_max(tf.abs(rebuilt - h)) / tf.reduce_max(tf.abs(h))),
          float(tf.reduce_max(tf.abs(gram - tf.eye(6, dtype=tf.float64)))))


def main():
  print("orthonormalize gradient, relative error:")
  for dtype in (tf.float32, tf.float64):
    for mode in ("eager", "function", "xla"):
      print(f"  {dtype.name:8s} {mode:8s} "
            f"{polar_gradient_error(dtype, mode):.1e}")
  print("float64 eigh: |V diag(w) V^T - H| / |H|, |V^T V - I|:")
  for jit_compile in (False, True):
    rebuilt, orthonormal = eigh_errors(jit_compile)
    print(f"  {'XLA' if jit_compile else 'eager':8s} {rebuilt:.1e}  "
          f"{orthonormal:.1e}")


if __name__ == "__main__":
  main()
