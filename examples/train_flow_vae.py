"""Trains a VAE with a flow posterior on binarized MNIST.

    python examples/train_flow_vae.py --data-dir ../shared/data/binarized_mnist
    python examples/train_flow_vae.py --flow radial --num-flows 10
    python examples/train_flow_vae.py --flow sylvester_householder --num-flows 4
    python examples/train_flow_vae.py --flow none        # diagonal Gaussian

Without --data-dir, TFDS downloads `binarized_mnist`. Training minimizes the
annealed free energy of Rezende & Mohamed (2015); the test set is scored by
the ELBO and by the importance-sampled log-likelihood with --eval-samples
samples per digit (papers report -log p(x) in nats).

Writes, under --output-dir (default runs/flow_vae_<flow>_<K>): TensorBoard
logs (logs/), digits / reconstructions / samples per epoch (images/), a
checkpoint per epoch (backup/: rerunning the same command resumes from it;
other training flags are refused there),
every epoch's metrics (history.csv, across resumed runs), the flags
(flags.json, written at the start), learning_curve.png and metrics.json.
The run ends with the weights of the epoch with the best validation ELBO
(backup/best/, --no-restore-best for the last epoch's);
metrics.json says which epoch that was. The model goes to --export-dir
(default saved_models/flow_vae_<flow>_<K>): flow_vae.keras, and a SavedModel
for TF Serving in the next numbered version folder.

--strategy mirrored trains on every local GPU; --strategy multi_worker on a
cluster described by TF_CONFIG, one process per machine running this same
command (README, "Many machines").

Exit codes: 0 done (also when a rerun finds every epoch done), 2 bad flags,
data or strategy, 3 a non-finite step with --non-finite stop. The harness
(strategy, seed, checkpoints, callbacks, exports, metrics.json) is
tfp_flows.training, usable from Python; this script parses the flags and
adds the VAE's own model, data and reporting.
"""

import argparse
import inspect
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import cli, data, training  # noqa: E402
from tfp_flows.bijectors import family_names  # noqa: E402
from tfp_flows.callbacks import (ReconstructionGridCallback,  # noqa: E402
                                 TimeLimit, save_vae_grids)
from tfp_flows.cli import (non_negative_float, non_negative_int,  # noqa: E402
                           positive_float, positive_int, rate_float)
from tfp_flows.evaluation import importance_log_likelihood  # noqa: E402
from tfp_flows.models import FlowVAE  # noqa: E402
from tfp_flows.optimizers import LinearWarmup  # noqa: E402

OPTIMIZERS = {
    "adam": lambda lr, **kw: keras.optimizers.Adam(lr, **kw),
    # The Sylvester flows' code (riannevdberg/sylvester-flows): Adamax.
    "adamax": lambda lr, **kw: keras.optimizers.Adamax(lr, epsilon=1e-7, **kw),
    # The planar flows' paper: RMSprop with momentum 0.9.
    "rmsprop": lambda lr, **kw: keras.optimizers.RMSprop(lr, momentum=0.9,
                                                          **kw),
}


def make_optimizer(name, learning_rate, weight_decay=0.):
  """`OPTIMIZERS[name]` with decoupled weight decay (Loshchilov & Hutter
  2019; Keras' `weight_decay`): every step multiplies each kernel by
  `1 - learning_rate * weight_decay`. Biases are not decayed: pulling them
  to 0 regularizes nothing (the decoder's output bias holds the pixels'
  log-odds). Nor is FlowVAE's flow head: its kernel learns at
  `flow_head_lr_multiplier` times the rate (0.03), and decay at the full
  rate would pull the flow to the identity 30 times faster than it can
  learn; per-variable decay rates Keras does not have."""
  optimizer = OPTIMIZERS[name](learning_rate, weight_decay=weight_decay or None)
  optimizer.exclude_from_weight_decay(var_names=["bias", "flow_head"])
  return optimizer


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description="Train a flow-posterior VAE on binarized MNIST; report test "
                  "ELBO and importance-sampled log-likelihood.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                      help="folder with binarized_mnist_{train,valid,test}.amat"
                           " (TFDS builds from it offline); default: download")
  parser.add_argument("--train-size", type=non_negative_int, default=0,
                      help="train on the first N training digits; 0: all")
  parser.add_argument("--flow", choices=family_names() + ("none",),
                      default="planar",
                      help="the posterior's flow family; none: a diagonal "
                           "Gaussian")
  parser.add_argument("--num-flows", type=positive_int, default=10)
  parser.add_argument("--latent-dim", type=positive_int, default=40)
  parser.add_argument("--hidden-units", type=positive_int, nargs="+",
                      default=[400, 400])
  parser.add_argument("--epochs", type=positive_int, default=20)
  parser.add_argument("--batch-size", type=positive_int, default=100,
                      help="global batch size, split across replicas")
  parser.add_argument("--learning-rate", type=positive_float, default=1e-3)
  parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
  parser.add_argument("--weight-decay", type=non_negative_float, default=0.,
                      help="decoupled weight decay of the kernels (Keras' "
                           "optimizer weight_decay: each step scales them by "
                           "1 - learning rate * this); 0: none")
  parser.add_argument("--dropout", type=rate_float, default=0.,
                      help="dropout rate after every hidden layer of the "
                           "encoder and decoder, in training "
                           "(FlowVAE.dropout); 0: none")
  parser.add_argument("--lr-decay", choices=("none", "cosine"), default="none",
                      help="cosine: the learning rate falls to 0 along a "
                           "half cosine over --epochs")
  parser.add_argument("--max-minutes", type=positive_float, default=None,
                      help="stop training after this many minutes (the "
                           "first step that ends past them; the epoch is "
                           "then validated and checkpointed as usual): a "
                           "wall-clock budget")
  # Not the paper's 10,000: that is a fiftieth of its 500,000 updates but
  # all of this script's default 20 epochs (10,000 updates), which then end
  # 13 nats behind 1,000 (docs/RESULTS.md, "The example's defaults").
  parser.add_argument("--annealing-steps", type=non_negative_int,
                      default=1_000,
                      help="beta_t = min(1, 0.01 + t / this); 0: no annealing"
                           " (the paper: 10000, for 500,000 updates)")
  parser.add_argument("--flow-head-lr-multiplier", type=positive_float,
                      default=inspect.signature(FlowVAE).parameters[
                          "flow_head_lr_multiplier"].default,
                      help="learning-rate multiplier of the flow head's "
                           "kernel (FlowVAE.flow_head_lr_multiplier)")
  parser.add_argument("--eval-samples", type=positive_int, default=1000,
                      help="importance samples per test digit (papers: 5000)")
  parser.add_argument("--eval-size", type=non_negative_int, default=0,
                      help="test digits to score by importance sampling; "
                           "0: all")
  parser.add_argument("--steps-per-execution", type=positive_int,
                      default=None,
                      help="training steps per call (Keras' compile("
                           "steps_per_execution)): the progress bar and "
                           "callbacks see every N-th step; default 20 on one "
                           "device, 1 on several replicas (where Keras' loop "
                           "of steps fails, keras-team/keras#19246)")
  parser.add_argument("--restore-best", action=argparse.BooleanOptionalAction,
                      default=True,
                      help="end with the weights of the epoch with the best "
                           "validation ELBO (kept on disk across kills), "
                           "not the last epoch's; the test figures and the "
                           "saved model are of those weights")
  parser.add_argument("--seed", type=int, default=0)
  cli.add_training_flags(parser)
  parser.add_argument("--output-dir", type=pathlib.Path, default=None)
  parser.add_argument("--export-dir", type=pathlib.Path, default=None)
  args = parser.parse_args(argv)
  name = f"flow_vae_{args.flow}" + (
      f"_{args.num_flows}" if args.flow != "none" else "")
  args.output_dir = args.output_dir or pathlib.Path("runs") / name
  args.export_dir = args.export_dir or pathlib.Path("saved_models") / name
  return args


def train(args):
  # First: the strategy must exist before any other TensorFlow work.
  run = training.TrainingRun(args.output_dir, args.strategy,
                             args.cpu_replicas, seed=args.seed)
  # flags.json: the flags of a run that has not finished (metrics.json holds
  # them at the end); benchmarks/flow_vae_runs.py records killed runs with
  # them. A rerun may score the test set otherwise, not train otherwise.
  run.keep_flags(vars(args), may_change=("eval_samples", "eval_size"))
  splits = data.load_binarized_mnist(args.data_dir)
  if args.train_size:
    splits["train"] = splits["train"][:args.train_size]
  print({name: images.shape for name, images in splits.items()})
  with run.scope():
    model = FlowVAE(latent_dim=args.latent_dim, flow=args.flow,
                    num_flows=args.num_flows, hidden_units=args.hidden_units,
                    image_shape=splits["train"].shape[1:],
                    annealing_steps=args.annealing_steps, seed=args.seed,
                    flow_head_lr_multiplier=args.flow_head_lr_multiplier,
                    dropout=args.dropout)
    # Many steps per call: at a few milliseconds a step, the per-call cost
    # of fit's loop is a large share (docs/RESULTS.md).
    steps_per_execution = args.steps_per_execution or (
        20 if run.num_replicas == 1 else 1)
    learning_rate = args.learning_rate
    if args.lr_decay == "cosine":
      steps_per_epoch = -(-len(splits["train"]) // args.batch_size)
      learning_rate = LinearWarmup(args.learning_rate, warmup_steps=0,
                                   decay_steps=args.epochs * steps_per_epoch)
    model.compile(optimizer=make_optimizer(args.optimizer, learning_rate,
                                           args.weight_decay),
                  steps_per_execution=steps_per_execution)
  test = splits["test"]
  run.fit(model, data.image_dataset(splits["train"], args.batch_size,
                                    shuffle=True, seed=args.seed),
          data.image_dataset(splits["validation"], 1000), args.epochs,
          chief_callbacks=[ReconstructionGridCallback(
              test, args.output_dir / "images")],
          non_finite=args.non_finite,
          keep_best=("val_elbo", "max") if args.restore_best else None,
          callbacks=[TimeLimit(60. * args.max_minutes)]
          if args.max_minutes else ())

  test_metrics = model.evaluate(data.image_dataset(test, 1000),
                                return_dict=True)
  if not run.is_chief:
    return
  eval_images = test[:args.eval_size] if args.eval_size else test
  start = time.perf_counter()
  log_likelihood = importance_log_likelihood(
      model, eval_images, num_samples=args.eval_samples, seed=args.seed)
  eval_seconds = time.perf_counter() - start
  print(f"test -ELBO {-test_metrics['elbo']:.2f} nats; test -log p(x) "
        f"{-log_likelihood.mean():.2f} nats (importance sampling, "
        f"S = {args.eval_samples}, {len(eval_images)} digits)")
  save_vae_grids(model, test, args.output_dir / "final_images.png",
                 suptitle=f"FlowVAE {args.flow} K={model.num_flows}")
  run.finish(model, args.export_dir, "flow_vae.keras", {
      "test_negative_elbo": -test_metrics["elbo"],
      "test_negative_log_likelihood": float(-log_likelihood.mean()),
      "test_negative_log_likelihood_stderr": float(
          log_likelihood.std(ddof=1) / np.sqrt(len(log_likelihood))
          if len(log_likelihood) > 1 else np.nan),
      "importance_samples": args.eval_samples,
      "importance_digits": len(eval_images),
      "eval_seconds": eval_seconds,
      "config": vars(args),
  }, curve_metric="elbo", curve_label="ELBO (nats)")


def main(argv=None):
  return training.exit_code(train, parse_args(argv), prog="train_flow_vae.py")


if __name__ == "__main__":
  sys.exit(main())
