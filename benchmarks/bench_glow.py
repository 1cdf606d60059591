"""Training throughput and peak memory: GlowModel against TFP's tfb.Glow.

Identical architecture: 28x28x1 MNIST, L = 2 levels, K = 8 steps, coupling
networks conv3x3(64)-ReLU-conv1x1(64)-ReLU-zero-init conv3x3, affine
coupling with scale sigmoid(h + 2), plain split (no learned prior at the
exits), batch 64, float32, Adam(1e-3). Each measurement runs in a fresh
process; the two implementations alternate (ABBA...) so drift hits both;
warm-up steps (tracing, first allocations) are excluded. Reports medians.

    pip install -e ".[bench]"
    python benchmarks/bench_glow.py            # 5 rounds, about 15 minutes
    python benchmarks/bench_glow.py --peer defaults

`--peer defaults` compares the plain GlowModel above with GlowModel at its
defaults (learned priors, logit preprocessing, three levels on the digits
zero-padded to 32 x 32, a 100-component top mixture) compiled with its
default recipe (`compile()`: Adam after a warm-up): what the quality
options cost per step. `--peer-hidden-channels`, `--peer-num-steps` and
`--peer-num-levels` (and `--peer-top-mixture-components`) change that
peer's width, depth, levels (and top mixture; its other options stay the
defaults), to price a wider or deeper default, or the defaults at the plain
model's L = 2:

    python benchmarks/bench_glow.py --peer defaults --peer-hidden-channels 128
    python benchmarks/bench_glow.py --peer defaults --peer-num-levels 2

`--plain-num-levels 3` gives the plain GlowModel the defaults' three levels
(and so their 32 x 32 frame, the least zero border three levels need): the
defaults against the plain model at the same width and depth, so that the
ratio prices the quality options alone (priors, logit, mixture, recipe),
not the architecture's extra level:

    python benchmarks/bench_glow.py --peer defaults --plain-num-levels 3

`--peer normflows` compares the plain GlowModel with normflows' Glow at the
same architecture in eager PyTorch (benchmarks/bench_glow_normflows.py, run
with --torch-python: a virtual environment holding torch and normflows, as
that file's docstring makes it; default ../torchvenv beside the checkout,
or $TORCH_PYTHON):

    python benchmarks/bench_glow.py --peer normflows

`--ours defaults` puts GlowModel at its defaults (and its default recipe) in
the place of the plain model, and gives the peer (tfb.Glow or normflows) the
defaults' architecture: three levels of K = 8, width 64, on the digits
zero-padded to 32 x 32 (the peers keep their plain splits and Adam(1e-3)):
the defaults' speed against the peers, as a user running them sees it:

    python benchmarks/bench_glow.py --ours defaults --peer tfp
    python benchmarks/bench_glow.py --ours defaults --peer normflows

The last line is JSON: img_per_s, peer_img_per_s, ratio (median of the
per-round ratios), peak_rss_mb, peer_peak_rss_mb.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).resolve().parent
SHARED_MNIST = HERE.parents[1] / "shared/data/mnist"
# Beside the checkout, as bench_glow_normflows.py's docstring makes it.
DEFAULT_TORCH_PYTHON = str(HERE.parents[1] / "torchvenv" / "bin" / "python")


def _images(n):
  """Real digits when ../shared/data/mnist exists, else random bytes (the
  throughput of a flow does not depend on pixel values)."""
  import numpy as np
  if SHARED_MNIST.is_dir():
    from tfp_flows import data
    images = data.load_mnist_idx(SHARED_MNIST, 0, 0)["train"]
    return images[np.arange(n) % len(images)]
  return np.random.default_rng(0).integers(0, 256, (n, 28, 28, 1), np.uint8)


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.


def run_ours(batch_size, warmup, steps, jit_compile, defaults=False,
             hidden_channels=64, num_steps=8, num_levels=None,
             top_mixture_components=None, steps_per_execution=1):
  """img/s of GlowModel: plain (PLAIN_GLOW; `num_levels`, default 2, with
  the least zero border they need) or at its defaults."""
  import keras
  from tfp_flows import data
  from tfp_flows.models import PLAIN_GLOW, GlowModel

  images = _images(batch_size * 50)
  # The plain model is the peer comparisons' L = 2; the defaults' L is
  # GlowModel's unless given.
  levels = {} if defaults and num_levels is None else {
      "num_levels": num_levels or 2}
  mixture = {} if top_mixture_components is None else {
      "top_mixture_components": top_mixture_components}
  plain = {} if defaults else {**PLAIN_GLOW, "padding": None}
  model = GlowModel(image_shape=(28, 28, 1), num_steps=num_steps,
                    hidden_channels=hidden_channels, **levels, **mixture,
                    **plain)
  model.compile(optimizer=None if defaults else keras.optimizers.Adam(1e-3),
                jit_compile=jit_compile,
                steps_per_execution=steps_per_execution)
  times = {}

  class Clock(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      float(logs["loss"])  # wait for the step to finish
      if batch + 1 in (warmup, warmup + steps):
        times[batch + 1] = time.perf_counter()

  model.fit(data.image_dataset(images, batch_size, shuffle=True, repeat=True),
            steps_per_epoch=warmup + steps, epochs=1, verbose=0,
            callbacks=[Clock()])
  return steps * batch_size / (times[warmup + steps] - times[warmup])


def _frame(num_levels):
  """The zero border and image side of the peers at `num_levels` (2: the
  digits as they are; 3: the 32 x 32 frame GlowModel's defaults use)."""
  border = {2: 0, 3: 2}[num_levels]
  return border, 28 + 2 * border


def run_tfp(batch_size, warmup, steps, num_levels=2):
  import numpy as np
  import tensorflow as tf
  import tensorflow_probability as tfp
  import tf_keras
  tfb, tfd = tfp.bijectors, tfp.distributions

  border, side = _frame(num_levels)
  glow = tfb.Glow(
      output_shape=(side, side, 1), num_glow_blocks=num_levels,
      num_steps_per_block=8,
      coupling_bijector_fn=lambda shape: tfb.GlowDefaultNetwork(
          shape, num_hidden=64),
      # Plain split: the exit "network" returns an identity bijector.
      exit_bijector_fn=lambda shape, output_chan: (lambda x: tfb.Identity()))
  dist = tfd.TransformedDistribution(
      tfd.Sample(tfd.Normal(0., 1.), sample_shape=[side * side]), glow)
  optimizer = tf_keras.optimizers.Adam(1e-3)
  images = _images(batch_size * 50)
  images = np.pad(images, [(0, 0), (border, border), (border, border), (0, 0)])
  dataset = iter(tf.data.Dataset.from_tensor_slices(images).shuffle(
      len(images)).repeat().batch(batch_size, drop_remainder=True).prefetch(
          tf.data.AUTOTUNE))

  @tf.function
  def train_step(batch):
    x = (tf.cast(batch, tf.float32) + tf.random.uniform(tf.shape(batch))) / 256.
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(dist.log_prob(x - 0.5))
    variables = glow.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  for _ in range(warmup):
    float(train_step(next(dataset)))
  start = time.perf_counter()
  for _ in range(steps):
    loss = train_step(next(dataset))
  float(loss)
  return steps * batch_size / (time.perf_counter() - start)


def worker(args):
  if args.worker in ("ours", "defaults"):
    img_per_s = run_ours(args.batch_size, args.warmup, args.steps, args.jit,
                         defaults=args.worker == "defaults",
                         steps_per_execution=args.steps_per_execution,
                         **({"hidden_channels": args.peer_hidden_channels,
                             "num_steps": args.peer_num_steps,
                             "num_levels": args.peer_num_levels,
                             "top_mixture_components":
                                 args.peer_top_mixture_components}
                            if args.worker == "defaults" else
                            {"num_levels": args.plain_num_levels}))
  else:
    img_per_s = run_tfp(args.batch_size, args.warmup, args.steps,
                        num_levels=args.peer_architecture_levels)
  print(json.dumps({"img_per_s": img_per_s, "peak_rss_mb": _peak_rss_mb()}))


# The options a worker process needs, passed on as given.
WORKER_OPTIONS = ("batch_size", "warmup", "steps", "peer_hidden_channels",
                  "peer_num_steps", "peer_num_levels",
                  "peer_top_mixture_components", "plain_num_levels",
                  "steps_per_execution", "peer_architecture_levels")


def measure(which, args):
  if which == "normflows":
    command = [args.torch_python, str(HERE / "bench_glow_normflows.py"),
               "--batch-size", str(args.batch_size), "--warmup",
               str(args.warmup), "--steps", str(args.steps),
               "--num-levels", str(args.peer_architecture_levels)]
    return _run_worker(which, command)
  if which == "ours" and args.ours == "defaults":
    which = "defaults"
  command = [sys.executable, __file__, "--worker", which] + (
      ["--jit"] if args.jit else [])
  for name in WORKER_OPTIONS:
    if getattr(args, name) is not None:
      command += ["--" + name.replace("_", "-"), str(getattr(args, name))]
  return _run_worker(which, command)


def _run_worker(which, command):
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  if result.returncode != 0:
    raise RuntimeError(f"{which} worker failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--warmup", type=int, default=15)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--jit", action="store_true",
                      help="compile GlowModel's train step with XLA")
  parser.add_argument("--steps-per-execution", type=int, default=1,
                      help="GlowModel's compile(steps_per_execution=...): "
                           "steps a tf.function call runs (a divisor of "
                           "--warmup and --steps, so the clock's batches "
                           "are reported)")
  parser.add_argument("--peer", choices=["tfp", "defaults", "normflows"],
                      default="tfp",
                      help="what the plain GlowModel is compared with")
  parser.add_argument("--torch-python",
                      default=os.environ.get("TORCH_PYTHON",
                                             DEFAULT_TORCH_PYTHON),
                      help="Python with torch and normflows, for --peer "
                           "normflows (default: $TORCH_PYTHON or "
                           "../torchvenv/bin/python)")
  parser.add_argument("--peer-hidden-channels", type=int, default=64,
                      help="the defaults peer's coupling-network width")
  parser.add_argument("--peer-num-steps", type=int, default=8,
                      help="the defaults peer's steps per level (K)")
  parser.add_argument("--peer-num-levels", type=int, default=None,
                      help="the defaults peer's levels (L; default: "
                           "GlowModel's)")
  parser.add_argument("--peer-top-mixture-components", type=int,
                      default=None,
                      help="the defaults peer's top mixture components "
                           "(default: GlowModel's)")
  parser.add_argument("--plain-num-levels", type=int, default=None,
                      help="the plain GlowModel's levels (default 2, as "
                           "tfb.Glow's); 3 puts it in the defaults' 32 x 32 "
                           "frame")
  parser.add_argument("--ours", choices=["plain", "defaults"],
                      default="plain",
                      help="the GlowModel compared: plain (L = 2, the "
                           "peers' architecture) or at its defaults (the "
                           "peers then get the defaults' L = 3, 32 x 32)")
  parser.add_argument("--worker", choices=["ours", "tfp", "defaults"],
                      help=argparse.SUPPRESS)
  parser.add_argument("--peer-architecture-levels", type=int, default=2,
                      choices=(2, 3), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args)
  if args.ours == "defaults":
    if args.peer == "defaults":
      parser.error("--ours defaults compares the defaults with a peer: "
                   "--peer tfp or normflows")
    args.peer_architecture_levels = 3
  if args.peer in ("tfp", "normflows") and args.plain_num_levels not in (
      None, 2):
    parser.error(f"--peer {args.peer} compares the identical architecture, "
                 "L = 2 here, so --plain-num-levels must be 2")
  if args.peer == "normflows" and not pathlib.Path(
      args.torch_python).is_file():
    parser.error(f"no Python at {args.torch_python}; make the PyTorch venv "
                 "as bench_glow_normflows.py's docstring says, or pass "
                 "--torch-python / set TORCH_PYTHON")

  ours, peer = [], []
  peer_name = {"tfp": "tfb.Glow", "defaults": "GlowModel defaults",
               "normflows": "normflows Glow"}[args.peer]
  for round_index in range(args.rounds):
    order = (("ours", args.peer) if round_index % 2 == 0
             else (args.peer, "ours"))
    results = {which: measure(which, args) for which in order}
    ours.append(results["ours"])
    peer.append(results[args.peer])
    print(f"round {round_index + 1}: GlowModel ({args.ours}) "
          f"{results['ours']['img_per_s']:7.1f} "
          f"img/s ({results['ours']['peak_rss_mb']:.0f} MB)   {peer_name} "
          f"{results[args.peer]['img_per_s']:7.1f} img/s "
          f"({results[args.peer]['peak_rss_mb']:.0f} MB)", flush=True)
  ratios = [o["img_per_s"] / p["img_per_s"] for o, p in zip(ours, peer)]
  print(json.dumps({
      "img_per_s": statistics.median(o["img_per_s"] for o in ours),
      "peer_img_per_s": statistics.median(p["img_per_s"] for p in peer),
      "ratio": statistics.median(ratios),
      "peak_rss_mb": statistics.median(o["peak_rss_mb"] for o in ours),
      "peer_peak_rss_mb": statistics.median(p["peak_rss_mb"] for p in peer),
      "ours": args.ours, "peer": args.peer, "rounds": args.rounds,
      # normflows' worker reports torch's and normflows' versions, threads
      # and parameter count.
      **{f"peer_{key}": peer[-1][key] for key in (
          "torch", "normflows", "threads", "parameters") if key in peer[-1]},
      "peer_hidden_channels": args.peer_hidden_channels,
      "peer_num_steps": args.peer_num_steps,
      "peer_num_levels": args.peer_num_levels,
      "peer_top_mixture_components": args.peer_top_mixture_components,
      "plain_num_levels": args.plain_num_levels,
      "batch_size": args.batch_size,
      "jit_compile": args.jit,
  }))


if __name__ == "__main__":
  main()
