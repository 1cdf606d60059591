"""normflows' Glow at bench_glow.py's architecture: the PyTorch peer of
GlowModel's training step, run by `bench_glow.py --peer normflows`.

28x28x1 digits, L = 2 levels, K = 8 `nf.flows.GlowBlock`s a level (affine
coupling with scale sigmoid(h + 2), conv3x3(64)-ReLU-conv1x1(64)-ReLU-zero-
init conv3x3, LU-parametrized invertible 1x1 convolution, ActNorm), squeezes
with `nf.flows.Squeeze`, plain split (`nf.flows.Merge`), a `DiagGaussian`
base at each exit as normflows' own Glow example builds it (their means and
log scales are learned: 1,568 parameters, 2 x 784, that GlowModel's plain
split does not have), batch 64, float32, Adam(1e-3), eager PyTorch.
`--num-levels 3`: the same with three levels on the digits zero-padded to
32 x 32, GlowModel's defaults' architecture (`bench_glow.py --ours defaults`).

Runs in its own virtual environment, kept apart from the project's (the
same one as bench_flow_vae_torch.py's):

    python3 -m venv ../torchvenv       # beside the checkout
    ../torchvenv/bin/pip install torch==2.13.0 numpy normflows
    ../torchvenv/bin/python benchmarks/bench_glow_normflows.py

One measurement a process: --warmup steps (ActNorm's data initialization,
first allocations) excluded, then --steps timed. The last line is JSON:
img_per_s, peak_rss_mb, and the versions. The digits are ../shared/data/mnist's when
present, else random bytes (the throughput of a flow does not depend on
pixel values).

On cores that other processes keep busy, PyTorch's OpenMP threads wait for
each other at every parallel op (bench_flow_vae_torch.py): measure alone.
"""

import argparse
import gzip
import json
import pathlib
import resource
import time

import numpy as np
import normflows as nf
import torch

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"


def digits(n):
  """`n` digits [n, 1, 28, 28] uint8: ../shared/data/mnist's when present
  (read without TensorFlow), else random bytes."""
  files = sorted(SHARED_MNIST.glob("*images-idx3-ubyte.gz"))
  if files:
    with gzip.open(files[0], "rb") as f:
      images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(
          -1, 1, 28, 28)
  else:
    images = np.random.default_rng(0).integers(0, 256, (n, 1, 28, 28),
                                               np.uint8)
  return images[np.arange(n) % len(images)]


def glow(num_levels=2, num_steps=8, hidden_channels=64, image_shape=(1, 28, 28)):
  """normflows' multiscale Glow, as its README's Glow example builds it
  (unconditional). Level i = 0 is the top, the smallest image: its blocks
  see `channels * 2**(L + 1 - i)` channels, and each level ends in the
  squeeze that, read in the generative direction, leaves it."""
  channels, height, width = image_shape
  bases, merges, flows = [], [], []
  for i in range(num_levels):
    level_channels = channels * 2 ** (num_levels + 1 - i)
    flows.append([nf.flows.GlowBlock(level_channels, hidden_channels,
                                     split_mode="channel", scale=True)
                  for _ in range(num_steps)] + [nf.flows.Squeeze()])
    if i > 0:
      merges.append(nf.flows.Merge())
      factor = 2 ** (num_levels - i)
      latent_shape = (channels * factor, height // factor, width // factor)
    else:
      factor = 2 ** num_levels
      latent_shape = (channels * 2 * factor, height // factor, width // factor)
    bases.append(nf.distributions.DiagGaussian(latent_shape))
  return nf.MultiscaleFlow(bases, flows, merges, class_cond=False)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--warmup", type=int, default=15)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--num-levels", type=int, default=2, choices=(2, 3),
                      help="L; 3 runs on the digits zero-padded to 32 x 32 "
                           "(GlowModel's defaults' frame)")
  parser.add_argument("--profile", action="store_true",
                      help="instead of timing, print torch.profiler's self "
                           "CPU time by op over --steps steps (the twin of "
                           "profile_step.py's summary)")
  parser.add_argument("--threads", type=int, default=None,
                      help="torch.set_num_threads (default: torch's, one "
                           "per core)")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)

  border = {2: 0, 3: 2}[args.num_levels]
  side = 28 + 2 * border
  model = glow(num_levels=args.num_levels, image_shape=(1, side, side))
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  images = torch.from_numpy(np.pad(digits(args.batch_size * 50),
                                   [(0, 0), (0, 0), (border, border),
                                    (border, border)]))
  generator = torch.Generator().manual_seed(0)

  def step():
    batch = images[torch.randint(len(images), (args.batch_size,),
                                 generator=generator)]
    # Uniform dequantization into [0, 1), centred, as GlowModel's.
    x = (batch.float() + torch.rand(batch.shape, generator=generator)) / 256.
    loss = model.forward_kld(x - 0.5)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()

  for _ in range(args.warmup):
    float(step())
  if args.profile:
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
      for _ in range(args.steps):
        step()
    print(profile.key_averages().table(sort_by="self_cpu_time_total",
                                       row_limit=30))
    return
  start = time.perf_counter()
  for _ in range(args.steps):
    loss = step()
  float(loss)  # PyTorch on the CPU is synchronous; this reads the last one
  seconds = time.perf_counter() - start
  if not np.isfinite(float(loss)):
    raise SystemExit(f"non-finite loss {float(loss)}")
  print(json.dumps({
      "img_per_s": args.steps * args.batch_size / seconds,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.,
      "torch": torch.__version__, "normflows": nf.__version__,
      "threads": torch.get_num_threads(),
      "parameters": sum(p.numel() for p in model.parameters()),
      "loss": float(loss)}))


if __name__ == "__main__":
  main()
