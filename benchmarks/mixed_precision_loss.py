"""How close mixed-precision training stays to float32: the same model, data,
seed and number of steps under each Keras dtype policy, each run in a fresh
process; a second float32 seed gives the seed-to-seed spread to compare with.

    python benchmarks/mixed_precision_loss.py --steps 3000 --models flow_vae

Glow (L = 2, K = 8, width 64) trains on the 8,000 digits of
../shared/data/mnist (a seeded 6,000 / 1,000 / 1,000 split), FlowVAE (planar
K = 10) on TFDS binarized_mnist built from ../shared/data/binarized_mnist,
batch 64, Adam(1e-3). Reported per run: the mean training loss of the last
100 steps and the loss on 1,000 held-out digits (Glow: validation bits/dim;
FlowVAE: negative single-sample ELBO, nats), both from the model's own
float32 likelihood. Every policy runs every seed, so the summary compares
each mixed-precision run with the float32 run of the same seed, and sets that
difference beside the float32 runs' spread across seeds. Speed is not the point (16-bit arithmetic is slow on this
CPU; it is for GPUs). The last line is JSON.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
POLICIES = ["float32", "mixed_float16", "mixed_bfloat16"]


def run_one(model_name, policy, seed, steps):
  """One run, in this process: returns the report dict."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras
  import numpy as np

  from tfp_flows import data
  from tfp_flows.models import FlowVAE, GlowModel

  keras.utils.set_random_seed(seed)
  if model_name == "glow":
    splits = data.load_mnist_idx(SHARED / "mnist")
    model = GlowModel(seed=seed, dtype=policy)
  else:
    splits = data.load_binarized_mnist(SHARED / "binarized_mnist")
    model = FlowVAE(seed=seed, dtype=policy)
  train = data.image_dataset(splits["train"], 64, shuffle=True, seed=seed,
                             repeat=True)
  held_out = splits["validation"][:1000]
  model.compile(optimizer=keras.optimizers.Adam(1e-3))

  class LastLosses(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.losses = []

    def on_train_batch_end(self, batch, logs=None):
      self.losses.append(float(logs["loss"]))

  # Keras' running mean over an epoch: one-step epochs give per-step values.
  last = LastLosses()
  model.fit(train, epochs=steps, steps_per_epoch=1, verbose=0,
            callbacks=[last])
  if model_name == "glow":
    held_out_loss = float(np.mean(model.bits_per_dim(
        model.log_prob(held_out)).numpy()))
  else:
    held_out_loss = -float(np.mean(model.elbo(held_out).numpy()))
  report = {"model": model_name, "policy": policy, "seed": seed,
            "steps": int(model.optimizer.iterations.numpy()),
            "skipped_steps": int(model.skipped_steps.numpy()),
            "train_loss_last_100": float(np.mean(last.losses[-100:])),
            "held_out": held_out_loss}
  if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
    report["final_loss_scale"] = float(model.optimizer.dynamic_scale.numpy())
  return report


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--models", nargs="+", default=["glow", "flow_vae"])
  parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
  parser.add_argument("--policies", nargs="+", default=POLICIES)
  parser.add_argument("--one", nargs=3, metavar=("MODEL", "POLICY", "SEED"),
                      help=argparse.SUPPRESS)  # a child process's run
  args = parser.parse_args()
  if args.one:
    model_name, policy, seed = args.one
    print(json.dumps(run_one(model_name, policy, int(seed), args.steps)))
    return
  reports = []
  for model_name in args.models:
    for policy, seed in [(p, s) for s in args.seeds for p in args.policies]:
      result = subprocess.run(
          [sys.executable, __file__, "--steps", str(args.steps), "--one",
           model_name, policy, str(seed)],
          capture_output=True, text=True, check=True)
      reports.append(json.loads(result.stdout.strip().splitlines()[-1]))
      print(json.dumps(reports[-1]), flush=True)
  summarize(reports)
  print(json.dumps(reports))


def summarize(reports):
  """Mixed minus float32 for the same seed, beside float32's seed spread."""
  for model_name in sorted({r["model"] for r in reports}):
    runs = {(r["policy"], r["seed"]): r for r in reports
            if r["model"] == model_name}
    for key in ("train_loss_last_100", "held_out"):
      float32 = [r[key] for (p, _), r in runs.items() if p == "float32"]
      line = [f"{model_name} {key}: float32 over {len(float32)} seeds "
              f"{min(float32):.3f}..{max(float32):.3f} "
              f"(range {max(float32) - min(float32):.3f})"]
      for policy in sorted({p for p, _ in runs} - {"float32"}):
        diffs = [r[key] - runs["float32", s][key]
                 for (p, s), r in runs.items()
                 if p == policy and ("float32", s) in runs]
        if diffs:
          line.append(f"{policy} - float32 same seed: "
                      + " ".join(f"{d:+.3f}" for d in diffs))
      print("; ".join(line), flush=True)


if __name__ == "__main__":
  main()
