"""The spread over random initializations of the relative error that
tests/test_dtype_matrix.py::test_model_under_dtype_policy checks: each model
under each non-float32 policy against the float32 model with the same
weights, for seeds 0..N-1; prints the max and median per (model, policy).
The test's POLICY_TOLERANCE comment quotes it.

    python benchmarks/dtype_policy_spread.py --seeds 12
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import test_dtype_matrix as matrix  # noqa: E402


def relative_error(name, policy, seed):
  """The test's comparison, with Keras seeded by `seed`."""
  keras.utils.set_random_seed(seed)
  model, _, likelihood = matrix.MODELS[name](policy)
  reference, _, _ = matrix.MODELS[name]("float32")
  rng = matrix._rng(13)
  for weight in reference.trainable_weights:
    weight.assign(weight.numpy() + 0.05 * rng.normal(size=weight.shape))
  model.set_weights(reference.get_weights())
  want = likelihood(reference).numpy()
  return np.abs(likelihood(model).numpy() - want).max() / np.abs(want).max()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=12)
  args = parser.parse_args()
  for name in sorted(matrix.MODELS):
    for policy in ("float64", "mixed_float16", "mixed_bfloat16"):
      errors = [relative_error(name, policy, seed) for seed in range(args.seeds)]
      print(f"{name} {policy}: max {max(errors):.2g} median "
            f"{np.median(errors):.2g}", flush=True)


if __name__ == "__main__":
  main()
