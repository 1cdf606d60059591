"""Steady-state training speed of FlowVAE: planar K = 40, latent 40,
MLP 784-400-400, batch 100, float32, through `model.fit`.

    python benchmarks/bench_flow_vae.py              # binarized MNIST digits
    python benchmarks/bench_flow_vae.py --rounds 9
    python benchmarks/bench_flow_vae.py --jit-compile off   # no XLA

Each round is --steps consecutive steps of one `fit` over data already in
memory, timed from batch end to batch end (RoundClock); the first round
(warm-up, after the tracing step) is excluded. Prints images/second per
round and their median; the last line is JSON with `img_per_s`.
"""

import argparse
import json
import os
import pathlib
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows import data  # noqa: E402
from tfp_flows.models import FlowVAE  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def load_images(count=20_000):
  """The first `count` binarized MNIST training digits `[count, 28, 28, 1]`
  uint8, or random pixels of the same sparsity when the data is absent
  (speed does not depend on the pixels)."""
  manual_dir = SHARED / "binarized_mnist"
  if manual_dir.is_dir():
    return data.load_binarized_mnist(manual_dir)["train"][:count]
  return (np.random.default_rng(0).random((count, 28, 28, 1)) < 0.13
          ).astype(np.uint8)


class RoundClock(keras.callbacks.Callback):
  """Seconds of each run of `steps` consecutive training steps, end of batch
  to end of batch, inside one `fit`.

  Timing whole `fit` calls instead (one per round) counted their start and
  end too, and on this machine those sometimes stretched a round to exactly
  5.1 s or 10.2 s whatever its steps took: medians sat on such plateaus
  (4,897 img/s for 250 steps, 3,918 for 200, 2,445) in every tree.
  """

  def __init__(self, steps):
    super().__init__()
    self.steps, self.seconds, self._start = steps, [], None

  def on_train_batch_end(self, batch, logs=None):
    # `batch` is the last step of the call (with steps_per_execution > 1,
    # Keras calls back once per call).
    if self._start is None:
      self._start, self._first = time.perf_counter(), batch  # traced
    elif (batch - self._first) % self.steps == 0:
      now = time.perf_counter()
      self.seconds.append(now - self._start)
      self._start = now


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--flow", default="planar")
  parser.add_argument("--num-flows", type=int, default=40)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--jit-compile", choices=("auto", "on", "off"),
                      default="auto",
                      help="FlowVAE.compile's jit_compile: XLA for the "
                           "step's arithmetic (auto: on without a "
                           "distribution strategy)")
  parser.add_argument("--steps-per-execution", type=int, default=1,
                      help="Keras' compile option: steps run in one call "
                           "of the compiled train function (a divisor of "
                           "--steps)")
  args = parser.parse_args()

  images = load_images()
  keras.utils.set_random_seed(0)
  model = FlowVAE(latent_dim=40, flow=args.flow, num_flows=args.num_flows,
                  hidden_units=(400, 400))
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                jit_compile={"auto": "auto", "on": True,
                             "off": False}[args.jit_compile],
                steps_per_execution=args.steps_per_execution)
  train = data.image_dataset(images, args.batch_size, shuffle=True,
                             repeat=True)
  clock = RoundClock(args.steps)
  # One call to trace, then a warm-up round (dropped) and the timed rounds.
  model.fit(train, steps_per_epoch=(args.steps_per_execution +
                                    (args.rounds + 1) * args.steps),
            epochs=1, verbose=0, callbacks=[clock])
  rates = [args.steps * args.batch_size / seconds
           for seconds in clock.seconds[1:]]
  for round_, rate in enumerate(rates, 1):
    print(f"round {round_}: {rate:,.0f} img/s", flush=True)
  median = statistics.median(rates)
  print(f"median {median:,.0f} img/s over {args.rounds} rounds of "
        f"{args.steps} steps ({args.flow} K={args.num_flows}, batch "
        f"{args.batch_size}, jit_compile {args.jit_compile}, TensorFlow "
        f"{tf.__version__})")
  print(json.dumps({"img_per_s": median, "rounds": rates,
                    "flow": args.flow, "num_flows": args.num_flows,
                    "batch_size": args.batch_size,
                    "jit_compile": args.jit_compile,
                    "steps_per_execution": args.steps_per_execution}))


if __name__ == "__main__":
  main()
