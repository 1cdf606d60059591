"""PyTorch twin of bench_flow_vae.py: FlowVAE's training step (planar K = 40,
latent 40, MLP 784-400-400, batch 100, float32) written in plain PyTorch,
for a side-by-side speed comparison with tfp_flows. `--num-flows 0` is the
diagonal-Gaussian VAE (`FlowVAE(flow="none")`).

Runs in its own virtual environment, kept apart from the project's:

    python3 -m venv ../torchvenv       # beside the checkout
    ../torchvenv/bin/pip install torch==2.13.0 numpy
    ../torchvenv/bin/python benchmarks/bench_flow_vae_torch.py
    ../torchvenv/bin/python benchmarks/bench_flow_vae_torch.py --mode compile
    ../torchvenv/bin/python benchmarks/bench_flow_vae_torch.py --num-flows 0

The model, loss and optimizer are those of `FlowVAE(flow="planar")`'s
`train_step`: the same layers and parameter count, Keras' initializers,
the annealed free energy with one sample of `z_0` per example, Adam 1e-3.
`--mode compile` runs the loss (forward and backward) through
`torch.compile`; the optimizer step stays eager.

Each round is --steps steps over data already in memory; the first
(warm-up, and in compile mode compiling) round is excluded. Prints
images/second per round and their median; the last line is JSON with
`img_per_s`.

On cores that other processes keep busy, PyTorch's OpenMP threads wait for
each other at every parallel op: with 2 threads on 2 loaded cores a step
took 2 s instead of 30 ms. Measure on an idle machine, or set
OMP_WAIT_POLICY=PASSIVE (or --threads 1) to see the step's own cost.
"""

import argparse
import json
import math
import os
import pathlib
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
HALF_LOG_2PI = 0.5 * math.log(2. * math.pi)
NUM_IMAGES = 20_000
EVENT_SIZE = 28 * 28
# FlowVAE's default flow_head_lr_multiplier (this venv has no tfp_flows to
# read it from).
FLOW_HEAD_LR_MULTIPLIER = 0.03


def dense(in_features, out_features):
  """A `torch.nn.Linear` initialized as Keras' `Dense` (Glorot-uniform
  kernel, zero bias), so the first losses compare with the TF model's."""
  layer = nn.Linear(in_features, out_features)
  nn.init.xavier_uniform_(layer.weight)
  nn.init.zeros_(layer.bias)
  return layer


class FlowVAE(nn.Module):
  """`tfp_flows.models.FlowVAE(flow="planar")`, layer for layer."""

  def __init__(self, latent_dim=40, num_flows=40, hidden_units=(400, 400)):
    super().__init__()
    self.latent_dim = latent_dim
    self.num_flows = num_flows
    widths = (EVENT_SIZE,) + tuple(hidden_units)
    self.encoder = nn.Sequential(*[
        module for i in range(len(hidden_units))
        for module in (dense(widths[i], widths[i + 1]), nn.ReLU())])
    self.posterior_head = dense(widths[-1], 2 * latent_dim)
    # Per step [u (D), w (D), b (1)], as PLANAR.param_size(D) in tfp_flows;
    # none for the diagonal model.
    self.flow_head = (dense(widths[-1], num_flows * (2 * latent_dim + 1))
                      if num_flows else None)
    widths = (latent_dim,) + tuple(reversed(hidden_units))
    self.decoder = nn.Sequential(*[
        module for i in range(len(hidden_units))
        for module in (dense(widths[i], widths[i + 1]), nn.ReLU())])
    self.logits_head = dense(widths[-1], EVENT_SIZE)

  def free_energy(self, images, noise, beta):
    """Per-example annealed free energy `[N]` of flattened float images
    `[N, 784]` for standard-normal `noise` `[N, D]`:
    `log q_0(z_0) - sum_k log|det| - beta (log p(x|z_K) + log p(z_K))`."""
    h = self.encoder(images)
    loc, log_scale = self.posterior_head(h).chunk(2, dim=-1)
    z = loc + torch.exp(log_scale) * noise
    log_q0 = -(0.5 * noise.square() + log_scale + HALF_LOG_2PI).sum(-1)
    log_det = 0.
    if self.num_flows:
      z, log_det = self.flow(h, z)
    logits = self.logits_head(self.decoder(z))
    log_likelihood = -F.binary_cross_entropy_with_logits(
        logits, images, reduction="none").sum(-1)
    log_prior = -(0.5 * z.square() + HALF_LOG_2PI).sum(-1)
    return log_q0 - log_det - beta * (log_likelihood + log_prior)

  def flow(self, h, z):
    """The planar flow of encoder features `h` applied to `z`, and its
    summed log-det."""
    dim = self.latent_dim
    params = (FLOW_HEAD_LR_MULTIPLIER * (h @ self.flow_head.weight.T) +
              self.flow_head.bias).view(-1, self.num_flows, 2 * dim + 1)
    u, w, b = params[..., :dim], params[..., dim:2 * dim], params[..., 2 * dim]
    # Rezende & Mohamed's App. A.1 for all K steps at once, as
    # planar_constrained_params does. These are the plain formulas;
    # tfp_flows adds guards for extreme values (w = 0, softplus underflow,
    # w^T u_hat -> -1, sech^2 h underflow) that agree with them to rounding
    # elsewhere but cost it a few more ops per step.
    w_dot_u = (w * u).sum(-1)
    u_hat = u + ((F.softplus(w_dot_u) - 1. - w_dot_u)
                 / (w * w).sum(-1)).unsqueeze(-1) * w
    c = (w * u_hat).sum(-1)  # w^T u_hat > -1
    log_det = torch.zeros_like(b[:, 0])
    # Split into steps once (as tfp_flows' families do): the backward of an
    # unbind is one stack, that of indexing [:, k] a full-size tensor per
    # step.
    for u_hat_k, w_k, b_k, c_k in zip(u_hat.unbind(1), w.unbind(1),
                                      b.unbind(1), c.unbind(1)):
      tanh_h = torch.tanh((w_k * z).sum(-1) + b_k)
      z = z + u_hat_k * tanh_h.unsqueeze(-1)
      log_det = log_det + torch.log1p(c_k * (1. - tanh_h.square()))
    return z, log_det


def loss_fn(model, images, beta):
  """Mean free energy of a batch, one fresh `z_0` per example (drawn here,
  as FlowVAE's train_step does, so compile mode includes the sampling)."""
  noise = torch.randn(images.shape[0], model.latent_dim)
  return model.free_energy(images, noise, beta).mean()


def load_images():
  """The first NUM_IMAGES binarized MNIST training digits, `[N, 784]` uint8,
  or random pixels of the same sparsity when the file is absent."""
  path = SHARED / "binarized_mnist" / "binarized_mnist_train.amat"
  if path.is_file():
    return np.loadtxt(path, dtype=np.uint8, max_rows=NUM_IMAGES)
  # Speed does not depend on the pixels.
  return (np.random.default_rng(0).random((NUM_IMAGES, EVENT_SIZE)) < 0.13
          ).astype(np.uint8)


def batches(images, batch_size):
  """Endless full batches `[B, 784]` float32, reshuffled each pass; each
  pass is gathered at once, like tf.data's prefetched pipeline keeps the
  shuffling out of the step."""
  num_batches = images.shape[0] // batch_size
  while True:
    order = torch.randperm(images.shape[0])[:num_batches * batch_size]
    yield from images[order].float().view(num_batches, batch_size, -1)


def beta_at(step):
  """FlowVAE's schedule min(1, 0.01 + t / 10000), as a tensor: a Python
  float would be a constant to torch.compile and recompile every step."""
  return torch.tensor(min(1., 0.01 + step / 10_000), dtype=torch.float32)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-flows", type=int, default=40)
  parser.add_argument("--latent-dim", type=int, default=40)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--mode", choices=("eager", "compile"), default="eager")
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  args = parser.parse_args()

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  images = torch.from_numpy(load_images())
  model = FlowVAE(latent_dim=args.latent_dim, num_flows=args.num_flows)
  # Keras' Adam epsilon (1e-7; PyTorch's default is 1e-8).
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
  loss = torch.compile(loss_fn) if args.mode == "compile" else loss_fn
  # Unlike FlowVAE.fit, no check for a non-finite loss or gradient before
  # the update: the annealed loss stays finite over these few steps.
  data = batches(images, args.batch_size)
  step = 0
  rates = []
  for round_ in range(args.rounds + 1):
    start = time.perf_counter()
    for _ in range(args.steps):
      optimizer.zero_grad(set_to_none=True)
      loss(model, next(data), beta_at(step)).backward()
      optimizer.step()
      step += 1
    seconds = time.perf_counter() - start
    rate = args.steps * args.batch_size / seconds
    if round_:  # round 0 warms up (and compiles)
      rates.append(rate)
      print(f"round {round_}: {rate:,.0f} img/s", flush=True)
    else:
      warm_up = seconds
  median = statistics.median(rates)
  print(f"median {median:,.0f} img/s over {args.rounds} rounds of "
        f"{args.steps} steps (planar K={args.num_flows}, batch "
        f"{args.batch_size}, PyTorch {torch.__version__} {args.mode}, "
        f"{args.threads} threads; warm-up round {warm_up:.1f} s)")
  print(json.dumps({"img_per_s": median, "rounds": rates, "mode": args.mode,
                    "num_flows": args.num_flows,
                    "batch_size": args.batch_size, "threads": args.threads,
                    "torch": torch.__version__}))


if __name__ == "__main__":
  main()
