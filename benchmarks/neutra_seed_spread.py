"""Spread of the NeuTra chain checks over chain seeds: what the margins of
tests/test_tfp_pipelines.py::test_neutra_chain_matches_the_target_moments
rest on. Same starts; flows fitted from VI seeds 0-2 (a flow that differs in
rounding, as on another machine, is a different flow), chain seeds 7-10.

    python benchmarks/neutra_seed_spread.py

Prints per seed: max R-hat, mean z-scores, variance ratios, variance
z-scores.
"""

import pathlib
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import neutra_hmc  # noqa: E402


def main():
  target = neutra_hmc.Banana(scale=2., curvature=0.25)
  initial = tf.random.stateless_normal([8, 2], seed=(5, 6))
  print("vi_seed chain_seed max_r_hat mean_z variance_ratio variance_z")
  for vi_seed in range(3):
    surrogate, _ = neutra_hmc.fit_flow(
        target.log_prob, num_planar=4, num_steps=1500, sample_size=32,
        learning_rate=0.02, seed=vi_seed)
    for seed in range(7, 11):
      chains = neutra_hmc.run_chains(
          target.log_prob, initial, num_results=1000, num_burnin_steps=200,
          bijector=surrogate.bijector, seed=seed)
      summary = neutra_hmc.chain_summary(chains, target)
      print(vi_seed, seed, round(summary["max_r_hat"], 4),
            np.round(summary["mean_z_score"], 2).tolist(),
            np.round(summary["variance_ratio"], 3).tolist(),
            np.round(summary["variance_z_score"], 2).tolist(), flush=True)


if __name__ == "__main__":
  main()
