"""Glow trained for thousands of steps at learning rate 1e-3 on real digits:
does any step produce a NaN or inf?

The README's Glow (28x28x1, L = 2, K = 8, hidden 64), batch 64, Adam(1e-3)
with no warm-up and no gradient clipping, on the 8,000 digits of
../shared/data/mnist (or --data-dir; a seeded 6,000 / 1,000 / 1,000 split).
`fit` runs with `non_finite="skip"`, so a bad step is counted instead of
stopping the run; the report says how many there were, whether every weight
ended finite, the largest per-batch loss, and validation bits/dim. Writes
the per-step bits/dim curve to --out-dir.

    python benchmarks/glow_stability.py --steps 2000
    python benchmarks/glow_stability.py --global-clipnorm 100 --name clipped

The last line is JSON.
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
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import data, plotting  # noqa: E402
from tfp_flows.cli import positive_float, positive_int  # noqa: E402
from tfp_flows.models import PLAIN_GLOW, GlowModel  # noqa: E402

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"


class BatchLog(keras.callbacks.Callback):
  """Each step's loss (a running mean within the epoch in Keras' logs, so
  the per-step value is recovered from consecutive means)."""

  def __init__(self):
    super().__init__()
    self.bits_per_dim, self._previous = [], None

  def on_epoch_begin(self, epoch, logs=None):
    self._previous = None

  def on_train_batch_end(self, batch, logs=None):
    mean = float(logs["bits_per_dim"])
    step = mean if self._previous is None else (
        (batch + 1) * mean - batch * self._previous)
    self._previous = mean
    self.bits_per_dim.append(step)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=positive_int, default=2000)
  parser.add_argument("--learning-rate", type=positive_float, default=1e-3)
  parser.add_argument("--batch-size", type=positive_int, default=64)
  parser.add_argument("--optimizer", choices=("adam", "adamax"),
                      default="adam")
  parser.add_argument("--global-clipnorm", type=positive_float, default=None,
                      help="clip each step's gradient to this global norm")
  parser.add_argument("--name", default="glow_stability",
                      help="file name of the curve in --out-dir")
  parser.add_argument("--data-dir", type=pathlib.Path, default=SHARED_MNIST)
  parser.add_argument("--out-dir", type=pathlib.Path,
                      default=pathlib.Path("outputs/glow_stability"))
  args = parser.parse_args()
  try:
    splits = data.load_mnist_idx(args.data_dir, 1000, 1000, seed=0)
  except data.DataError as error:
    sys.exit(f"glow_stability.py: {error}")

  keras.utils.set_random_seed(0)
  model = GlowModel(image_shape=(28, 28, 1), num_levels=2, num_steps=8,
                    hidden_channels=64, **PLAIN_GLOW)
  optimizer = {"adam": keras.optimizers.Adam,
               "adamax": keras.optimizers.Adamax}[args.optimizer]
  model.compile(optimizer=optimizer(args.learning_rate,
                                    global_clipnorm=args.global_clipnorm))
  steps_per_epoch = len(splits["train"]) // args.batch_size
  epochs = math.ceil(args.steps / steps_per_epoch)
  log = BatchLog()
  start = time.perf_counter()
  model.fit(data.image_dataset(splits["train"], args.batch_size, shuffle=True,
                               repeat=True),
            steps_per_epoch=steps_per_epoch, epochs=epochs,
            callbacks=[log], non_finite="skip", verbose=2)
  seconds = time.perf_counter() - start
  validation = model.evaluate(data.image_dataset(splits["validation"], 250),
                              return_dict=True, verbose=0)

  curve = np.array(log.bits_per_dim)
  finite_weights = all(np.all(np.isfinite(w.numpy())) for w in model.weights)
  report = {
      "steps_run": len(curve),
      "steps_applied": int(model.optimizer.iterations.numpy()),
      "skipped_non_finite_steps": int(model.skipped_steps.numpy()),
      "all_weights_finite": bool(finite_weights),
      "learning_rate": args.learning_rate,
      "optimizer": args.optimizer,
      "global_clipnorm": args.global_clipnorm,
      "batch_size": args.batch_size,
      "max_step_bits_per_dim_after_100": float(np.max(curve[100:]))
      if len(curve) > 100 else None,
      "last_100_mean_bits_per_dim": float(np.mean(curve[-100:])),
      "validation_bits_per_dim": validation["bits_per_dim"],
      "seconds": seconds,
  }
  args.out_dir.mkdir(parents=True, exist_ok=True)
  fig, ax = plt.subplots(figsize=(6, 3.2))
  ax.plot(np.arange(1, len(curve) + 1), curve, lw=0.6)
  ax.set_xlabel("step")
  ax.set_ylabel("train bits/dim (per step)")
  ax.set_ylim(min(curve.min(), 1.5), min(curve.max(), 6.))
  ax.grid(alpha=0.3)
  clip = (f", clipnorm {args.global_clipnorm:g}" if args.global_clipnorm
          else "")
  ax.set_title(f"Glow, {args.optimizer}({args.learning_rate:g}){clip}, batch "
               f"{args.batch_size}: "
               f"{report['skipped_non_finite_steps']} non-finite steps",
               fontsize=9)
  plotting.save_figure(fig, args.out_dir / f"{args.name}.png")
  print(json.dumps(report))


if __name__ == "__main__":
  main()
