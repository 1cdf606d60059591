"""Speed of the importance-sampled log-likelihood (`importance_log_likelihood`,
S = 5000) against the training step's forward pass, per image.

    python benchmarks/bench_importance_sampling.py               # planar K = 40
    python benchmarks/bench_importance_sampling.py --num-flows 10
    python benchmarks/bench_importance_sampling.py --flow none   # diagonal VAE

The model is FlowVAE at bench_flow_vae.py's size (latent 40, MLP 784-400-400),
untrained: the cost of a sample does not depend on the weights. Two clocks,
alternating, each round after a warm-up:

- *forward*: the training step's forward pass (the annealed free energy of a
  batch of 100, as `train_step` computes it, compiled as `train_step`
  compiles it: XLA under `compile()`'s default), seconds per image;
- *sampling*: `importance_log_likelihood(model, digits, num_samples=S)` over
  --digits test digits, seconds per image and sample, and digits per second.

The issue's target is a sample costing no more than a forward pass of one
image: `sample / forward <= 1`. Prints each round and the medians; the last
line is JSON.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows.evaluation import importance_log_likelihood  # noqa: E402
from tfp_flows.models import FlowVAE  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_flow_vae  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--flow", default="planar")
  parser.add_argument("--num-flows", type=int, default=40)
  parser.add_argument("--num-samples", type=int, default=5000)
  parser.add_argument("--digits", type=int, default=100,
                      help="images scored per sampling round")
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--forward-steps", type=int, default=200,
                      help="forward passes per forward round")
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()

  keras.utils.set_random_seed(0)
  model = FlowVAE(latent_dim=40, flow=args.flow, num_flows=args.num_flows,
                  hidden_units=(400, 400))
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  images = bench_flow_vae.load_images(max(args.digits, args.batch_size))
  batch = tf.cast(images[:args.batch_size], tf.float32)
  noise = tf.random.normal([args.batch_size, model.latent_dim])

  # As train_step runs it: checked images, then the arithmetic, under XLA
  # when compile() chose it (model._jit_compile_arithmetic).
  @tf.function(jit_compile=model._jit_compile_arithmetic)
  def forward(batch, noise):
    free_energy, _, _ = model.free_energy_terms(batch, noise,
                                                tf.constant(1.))
    return tf.reduce_mean(free_energy)

  def forward_round():
    start = time.perf_counter()
    for _ in range(args.forward_steps):
      loss = forward(batch, noise)
    loss.numpy()
    return (time.perf_counter() - start) / (args.forward_steps *
                                            args.batch_size)

  def sampling_round():
    start = time.perf_counter()
    importance_log_likelihood(model, images[:args.digits],
                              num_samples=args.num_samples,
                              batch_size=args.batch_size, progress=False)
    return (time.perf_counter() - start) / args.digits

  forward_round(), sampling_round()  # warm-up: tracing and compiling
  forward_seconds, sampling_seconds = [], []
  for round_ in range(1, args.rounds + 1):
    forward_seconds.append(forward_round())
    sampling_seconds.append(sampling_round())
    print(f"round {round_}: forward {1e6 * forward_seconds[-1]:.1f} us/image"
          f", sampling {1e6 * sampling_seconds[-1] / args.num_samples:.2f} "
          f"us/(image x sample), {1 / sampling_seconds[-1]:.2f} digits/s",
          flush=True)
  forward_per_image = statistics.median(forward_seconds)
  per_digit = statistics.median(sampling_seconds)
  per_sample = per_digit / args.num_samples
  print(f"median: forward {1e6 * forward_per_image:.1f} us/image; one sample "
        f"{1e6 * per_sample:.2f} us = {per_sample / forward_per_image:.3f} of "
        f"a forward pass; {1 / per_digit:.2f} digits/s at S = "
        f"{args.num_samples} ({args.flow} K={model.num_flows}, TensorFlow "
        f"{tf.__version__})")
  print(json.dumps({
      "flow": args.flow, "num_flows": model.num_flows,
      "num_samples": args.num_samples, "digits": args.digits,
      "forward_us_per_image": 1e6 * forward_per_image,
      "sample_us": 1e6 * per_sample,
      "sample_over_forward": per_sample / forward_per_image,
      "digits_per_s": 1 / per_digit, "img_per_s": 1 / per_digit,
      "forward_rounds_us": [1e6 * s for s in forward_seconds],
      "sampling_rounds_s_per_digit": sampling_seconds}))


if __name__ == "__main__":
  main()
