"""Trains the PyTorch twin of FlowVAE (bench_flow_vae_torch.py's model) on
binarized MNIST for a wall-clock budget, then scores the test digits by
importance sampling: the PyTorch side of flow_vae_equal_budget.py.

Runs in the twin's own virtual environment (bench_flow_vae_torch.py's
docstring makes it):

    ../torchvenv/bin/python benchmarks/train_flow_vae_torch.py --minutes 20 \\
        --num-flows 10 --eval-samples 1000

The recipe is FlowVAE's (examples/train_flow_vae.py's flags of the same
names and defaults): batch 100, Adam(1e-3, eps 1e-7) (or --optimizer
adamax, as Keras' Adamax), the annealed free
energy with beta_t = min(1, 0.01 + t / annealing_steps), one z_0 per digit,
the flow head's kernel multiplier and near-identity start, and the weights of the epoch with the
best validation ELBO at the end (--no-keep-best: the last epoch's). The
clock runs from the first step and includes the per-epoch validation, as
tfp_flows.callbacks.TimeLimit's does; training stops after the first step
that ends past the budget, and that (partial) epoch is validated.

Evaluation: log p(x) ~ logsumexp_s(log p(x, z_K^s) - log q_K(z_K^s | x))
- log S, the estimator of tfp_flows.evaluation.importance_log_likelihood.
The last line is JSON: test_negative_log_likelihood (mean over digits),
its standard error, test_negative_elbo, epochs, steps, train_seconds.
"""

import argparse
import copy
import json
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_flow_vae_torch import EVENT_SIZE, SHARED, FlowVAE  # noqa: E402


def load_split(name):
  """`[N, 784]` uint8 digits of binarized_mnist_{train,valid,test}.amat."""
  path = SHARED / "binarized_mnist" / f"binarized_mnist_{name}.amat"
  if not path.is_file():
    raise SystemExit(f"train_flow_vae_torch.py: {path} not found (it needs "
                     f"the binarized MNIST .amat files beside the checkout)")
  return np.loadtxt(path, dtype=np.uint8)


def near_identity_start(model, seed, scale=0.1):
  """FlowVAE's start for the planar head: zero kernel, and as bias K
  volume-preserving shears near the identity (tfp_flows.bijectors.planar's
  `_near_identity`, with NumPy's generator in place of TF's stateless one:
  `w ~ N(0, scale^2 I)`, `b = 0`, `u = log(e - 1) w / |w|^2 + v`, `v` normal
  and orthogonal to `w`, so that `u_hat = v`)."""
  dim, num_flows = model.latent_dim, model.num_flows
  noise = np.random.default_rng(seed).normal(size=(num_flows, 2 * dim + 1))
  w = scale * noise[:, dim:2 * dim]
  w_norm_sq = np.sum(w * w, axis=-1, keepdims=True)
  v = scale * noise[:, :dim]
  v -= np.sum(v * w, axis=-1, keepdims=True) / w_norm_sq * w
  u = np.log(np.e - 1.) * w / w_norm_sq + v
  bias = np.concatenate([u, w, np.zeros((num_flows, 1))], axis=-1)
  with torch.no_grad():
    model.flow_head.weight.zero_()
    model.flow_head.bias.copy_(torch.from_numpy(bias.reshape(-1)).float())


def negative_log_weights(model, images, num_samples, chunk):
  """`[N, S]` of `-(log p(x, z_K) - log q_K(z_K | x))` for float images
  `[N, 784]`, `chunk` samples of every digit at a time."""
  pieces = []
  for start in range(0, num_samples, chunk):
    count = min(chunk, num_samples - start)
    repeated = images.repeat_interleave(count, dim=0)
    noise = torch.randn(repeated.shape[0], model.latent_dim)
    pieces.append(model.free_energy(repeated, noise, torch.tensor(1.))
                  .view(images.shape[0], count))
  return torch.cat(pieces, dim=1)


@torch.no_grad()
def mean_elbo(model, images, batch_size=1000):
  total = 0.
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    total -= negative_log_weights(model, batch, 1, 1).sum().item()
  return total / images.shape[0]


@torch.no_grad()
def importance_log_likelihood(model, images, num_samples, digits_per_call=10,
                              chunk=100):
  """`[N]` estimates of `log p(x)` with `num_samples` samples per digit."""
  out = []
  for start in range(0, images.shape[0], digits_per_call):
    log_w = -negative_log_weights(
        model, images[start:start + digits_per_call], num_samples, chunk)
    out.append(torch.logsumexp(log_w, dim=1) - math.log(num_samples))
  return torch.cat(out).numpy()


# examples/train_flow_vae.py's choices, with Keras' epsilon (PyTorch's
# defaults are 1e-8). PyTorch's Adamax adds it inside the running maximum of
# |g|, Keras' to that maximum in the denominator: negligible beside |g|.
OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--minutes", type=float, required=True)
  parser.add_argument("--num-flows", type=int, default=10)
  parser.add_argument("--latent-dim", type=int, default=40)
  parser.add_argument("--batch-size", type=int, default=100)
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam",
                      help="as train_flow_vae.py's --optimizer")
  parser.add_argument("--annealing-steps", type=int, default=1_000)
  parser.add_argument("--keep-best", action=argparse.BooleanOptionalAction,
                      default=True)
  parser.add_argument("--eval-samples", type=int, default=1000)
  parser.add_argument("--eval-size", type=int, default=0,
                      help="test digits to score; 0: all")
  parser.add_argument("--mode", choices=("eager", "compile"),
                      default="compile")
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  if not 0 < args.minutes < math.inf:
    parser.error(f"--minutes must be > 0; got {args.minutes}")

  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  train = torch.from_numpy(load_split("train")).float()
  valid = torch.from_numpy(load_split("valid")).float()
  test = torch.from_numpy(load_split("test")).float()
  if args.eval_size:
    test = test[:args.eval_size]
  model = FlowVAE(latent_dim=args.latent_dim, num_flows=args.num_flows)
  if args.num_flows:
    near_identity_start(model, args.seed)
  optimizer = OPTIMIZERS[args.optimizer](model.parameters(),
                                         lr=args.learning_rate, eps=1e-7)

  def loss_fn(images, beta):
    noise = torch.randn(images.shape[0], model.latent_dim)
    return model.free_energy(images, noise, beta).mean()

  loss = torch.compile(loss_fn) if args.mode == "compile" else loss_fn
  num_batches = train.shape[0] // args.batch_size
  budget = 60. * args.minutes
  best_elbo, best_state, best_epoch = -math.inf, None, None
  step, epoch, out_of_time = 0, 0, False
  start = time.perf_counter()
  while not out_of_time:
    order = torch.randperm(train.shape[0])[:num_batches * args.batch_size]
    for batch in train[order].view(num_batches, args.batch_size, -1):
      beta = torch.tensor(min(1., 0.01 + step / args.annealing_steps)
                          if args.annealing_steps else 1.)
      optimizer.zero_grad(set_to_none=True)
      loss(batch, beta).backward()
      optimizer.step()
      step += 1
      if time.perf_counter() - start >= budget:
        out_of_time = True
        break
    epoch += 1
    val_elbo = mean_elbo(model, valid)
    print(f"epoch {epoch} ({step} steps, {time.perf_counter() - start:.0f} s):"
          f" validation ELBO {val_elbo:.2f}", flush=True)
    if args.keep_best and val_elbo > best_elbo:
      best_elbo, best_epoch = val_elbo, epoch
      best_state = copy.deepcopy(model.state_dict())
  train_seconds = time.perf_counter() - start
  if best_state is not None:
    model.load_state_dict(best_state)

  test_elbo = mean_elbo(model, test)
  eval_start = time.perf_counter()
  log_likelihood = importance_log_likelihood(model, test, args.eval_samples)
  eval_seconds = time.perf_counter() - eval_start
  result = {
      "test_negative_log_likelihood": float(-log_likelihood.mean()),
      "test_negative_log_likelihood_stderr": float(
          log_likelihood.std(ddof=1) / np.sqrt(len(log_likelihood))),
      "test_negative_elbo": -test_elbo, "importance_samples": args.eval_samples,
      "importance_digits": len(log_likelihood), "epochs": epoch,
      "steps": step, "best_epoch": best_epoch, "train_seconds": train_seconds,
      "eval_seconds": eval_seconds, "mode": args.mode,
      "threads": args.threads, "torch": torch.__version__,
      "event_size": EVENT_SIZE}
  print(f"test -ELBO {-test_elbo:.2f} nats; test -log p(x) "
        f"{result['test_negative_log_likelihood']:.2f} nats (S = "
        f"{args.eval_samples}, {len(log_likelihood)} digits)")
  print(json.dumps(result))


if __name__ == "__main__":
  main()
