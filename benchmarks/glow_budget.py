"""Bits/dim at equal wall-clock budget: GlowModel against TFP's tfb.Glow.

Same architecture as bench_glow.py (28x28x1, L = 2, K = 8, hidden 64,
affine coupling, plain split), same data (the 8,000 digits of
../shared/data/mnist, or --data-dir: a seeded 6,000 / 1,000 / 1,000 split),
batch 64, Adam(1e-3), float32. Each model trains for --budget-seconds of
wall-clock time (tracing included), one after the other on an otherwise idle
machine; then both are scored on the same validation digits with the same
dequantization noise. Writes a sample grid per model to --out-dir.

    pip install -e ".[bench]"
    python benchmarks/glow_budget.py --budget-seconds 600

The last line is JSON with each model's validation bits/dim, steps, epochs.
"""

import argparse
import json
import math
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

from tfp_flows import data, plotting  # noqa: E402
from tfp_flows.models import PLAIN_GLOW, GlowModel  # noqa: E402

tfb, tfd = tfp.bijectors, tfp.distributions
D = 28 * 28
SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"


def _bits_per_dim(log_prob_fn, images, batch_size=500):
  """Mean bits/dim of uint8 images under a [0, 1)-image density, with fixed
  uniform dequantization noise."""
  total = []
  for start in range(0, len(images), batch_size):
    batch = tf.cast(images[start:start + batch_size], tf.float32)
    noise = tf.random.stateless_uniform(tf.shape(batch), seed=[start, 7])
    log_prob = log_prob_fn((batch + noise) / 256.) - D * math.log(256.)
    total.append(-log_prob.numpy() / (D * math.log(2.)))
  return float(np.mean(np.concatenate(total)))


def train_ours(splits, budget, out_dir):
  keras.utils.set_random_seed(0)
  model = GlowModel(image_shape=(28, 28, 1), num_levels=2, num_steps=8,
                    hidden_channels=64, **PLAIN_GLOW)
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  start = time.perf_counter()
  steps = [0]

  class Budget(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      steps[0] += 1
      if time.perf_counter() - start > budget:
        self.model.stop_training = True

  model.fit(data.image_dataset(splits["train"], 64, shuffle=True),
            epochs=10_000, verbose=0, callbacks=[Budget()])
  seconds = time.perf_counter() - start
  bpd = _bits_per_dim(model.distribution.log_prob, splits["validation"])
  grids = [plotting.image_grid(model.sample(64, t, seed=3).numpy())
           for t in (0.7, 1.0)]
  plotting.save_image_grids(out_dir / "glow_budget_ours.png", grids,
                            ["T = 0.7", "T = 1.0"],
                            f"GlowModel after {seconds:.0f} s")
  return {"val_bits_per_dim": bpd, "steps": steps[0], "seconds": seconds,
          "epochs": steps[0] * 64 / len(splits["train"])}


def train_tfp(splits, budget, out_dir):
  import tf_keras
  tf.random.set_seed(0)
  glow = tfb.Glow(
      output_shape=(28, 28, 1), num_glow_blocks=2, num_steps_per_block=8,
      coupling_bijector_fn=lambda shape: tfb.GlowDefaultNetwork(
          shape, num_hidden=64),
      exit_bijector_fn=lambda shape, output_chan: (lambda x: tfb.Identity()))
  # tfb.Glow maps latents to images; its images here are centred, [-1/2, 1/2).
  flow = tfb.Chain([tfb.Shift(0.5), glow])
  dist = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(0., 1.), sample_shape=[D]), flow)
  optimizer = tf_keras.optimizers.Adam(1e-3)

  @tf.function
  def train_step(batch):
    x = (tf.cast(batch, tf.float32) + tf.random.uniform(tf.shape(batch))) / 256.
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(dist.log_prob(x))
    variables = glow.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  dataset = data.image_dataset(splits["train"], 64, shuffle=True, repeat=True)
  start, steps, non_finite = time.perf_counter(), 0, 0
  for batch in dataset:
    loss = float(train_step(batch))
    steps += 1
    non_finite += not math.isfinite(loss)
    if time.perf_counter() - start > budget:
      break
  seconds = time.perf_counter() - start
  bpd = _bits_per_dim(dist.log_prob, splits["validation"])

  def sample(temperature):
    z = temperature * tf.random.stateless_normal([64, D], seed=[3, 1])
    x = flow.forward(z)
    return tf.cast(tf.clip_by_value(tf.floor(x * 256.), 0., 255.), tf.uint8)

  grids = [plotting.image_grid(sample(t).numpy()) for t in (0.7, 1.0)]
  plotting.save_image_grids(out_dir / "glow_budget_tfp.png", grids,
                            ["T = 0.7", "T = 1.0"],
                            f"tfb.Glow after {seconds:.0f} s")
  return {"val_bits_per_dim": bpd, "steps": steps, "seconds": seconds,
          "epochs": steps * 64 / len(splits["train"]),
          "non_finite_losses": non_finite}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--budget-seconds", type=float, default=600.)
  parser.add_argument("--data-dir", type=pathlib.Path, default=SHARED_MNIST)
  parser.add_argument("--out-dir", type=pathlib.Path,
                      default=pathlib.Path("outputs/glow_budget"))
  parser.add_argument("--only", choices=["ours", "tfp"])
  args = parser.parse_args()
  try:
    splits = data.load_mnist_idx(args.data_dir, 1000, 1000, seed=0)
  except data.DataError as error:
    sys.exit(f"glow_budget.py: {error}")
  args.out_dir.mkdir(parents=True, exist_ok=True)
  results = {}
  for name, train in (("ours", train_ours), ("tfp", train_tfp)):
    if args.only in (None, name):
      results[name] = train(splits, args.budget_seconds, args.out_dir)
      print(name, results[name], flush=True)
  print(json.dumps({"budget_seconds": args.budget_seconds,
                    "train_size": len(splits["train"]),
                    "validation_size": len(splits["validation"]), **results}))


if __name__ == "__main__":
  main()
