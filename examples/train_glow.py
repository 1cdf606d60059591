"""Trains Glow on MNIST by maximum likelihood and reports bits/dim.

    python examples/train_glow.py                                  # TFDS mnist
    python examples/train_glow.py --data-dir ../shared/data/mnist  # IDX files

At the defaults it trains 10 epochs of 500 steps of 64 digits (5,000 steps,
whatever the size of the training set: an epoch here is a number of steps,
not a pass), with the model and recipe docs/RESULTS.md chose by measurement.

Writes, under --output-dir (default runs/glow): TensorBoard logs (logs/), a
sample grid per epoch at temperatures 0.7 and 1.0 (samples/), a checkpoint
per epoch (backup/: rerunning the same command resumes from it; other
training flags are refused there), the flags (flags.json), every epoch's
metrics (history.csv, across resumed runs), a latent interpolation
between two test digits (interpolation.png), metrics.json with test bits/dim
and the learning curves (learning_curve.png). The trained
model goes to --export-dir (default saved_models/glow_mnist): glow.keras, and
a SavedModel for TF Serving in the next numbered version folder.

--conditional trains a class-conditional Glow (a learned prior per digit)
and draws one row of samples per digit. --plain gives the plain Glow of the
speed comparisons (standard normal latents, Glorot networks, centred
pixels).

--strategy mirrored trains on every local GPU; --strategy multi_worker on a
cluster described by TF_CONFIG, one process per machine running this same
command (README, "Many machines").

Exit codes: 0 done (also when a rerun finds every epoch done), 2 bad flags,
data or strategy, 3 a non-finite step with --non-finite stop. The harness
(strategy, seed, checkpoints, callbacks, exports, metrics.json) is
tfp_flows.training, usable from Python; this script parses the flags and
adds Glow's own model, data and reporting.
"""

import argparse
import inspect
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfp_flows import cli, data, optimizers, plotting, training  # noqa: E402
from tfp_flows.callbacks import SampleGridCallback  # noqa: E402
from tfp_flows.cli import (non_negative_float,  # noqa: E402
                           non_negative_int, open_unit_float, positive_float,
                           positive_int)
from tfp_flows.models import GLOW_RECIPE, PLAIN_GLOW, GlowModel  # noqa: E402
from tfp_flows.models.glow import DEFAULT_TOP_MIXTURE_COMPONENTS  # noqa: E402


def _default(name):
  return inspect.signature(GlowModel).parameters[name].default


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description="Train Glow on MNIST; report test bits/dim.",
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--data-dir", type=pathlib.Path, default=None,
                      help="folder with MNIST IDX files (gzipped or not); "
                           "default: TFDS mnist")
  parser.add_argument("--validation-size", type=non_negative_int, default=None,
                      help="digits held out for validation (default: 1000 "
                           "from --data-dir, 5000 from TFDS)")
  parser.add_argument("--test-size", type=non_negative_int, default=1000,
                      help="with a single set of IDX digits (no t10k files), "
                           "digits held out for testing")
  parser.add_argument("--epochs", type=positive_int, default=10,
                      help="epochs of --steps-per-epoch steps; each ends "
                           "with validation, a sample grid and a checkpoint")
  parser.add_argument("--steps-per-epoch", type=non_negative_int,
                      default=500,
                      help="training steps an epoch, over the shuffled "
                           "training digits repeated; 0: one pass over them "
                           "(TFDS mnist's 55,000 digits make 859 steps)")
  parser.add_argument("--batch-size", type=positive_int, default=64,
                      help="global batch size, split across replicas")
  parser.add_argument("--learning-rate", type=positive_float,
                      default=GLOW_RECIPE["learning_rate"])
  parser.add_argument("--warmup-steps", type=non_negative_int,
                      default=GLOW_RECIPE["warmup_steps"],
                      help="linear learning-rate warm-up")
  parser.add_argument("--ema-momentum", type=non_negative_float,
                      default=GLOW_RECIPE["ema_momentum"] or 0.,
                      help="momentum of the moving average of the weights "
                           "used for validation, test, samples and export; "
                           "0: none")
  parser.add_argument("--adam-beta-2", type=open_unit_float,
                      default=GLOW_RECIPE["beta_2"],
                      help="Adam's second-moment decay (Keras' default: "
                           "0.999)")
  parser.add_argument("--cosine-decay", action="store_true",
                      help="decay the learning rate to 0 by the last step")
  parser.add_argument("--max-shift", type=non_negative_int, default=0,
                      help="shift training digits by up to this many pixels")
  parser.add_argument("--global-clipnorm", type=non_negative_float,
                      default=0.,
                      help="clip each step's gradient to this global norm; "
                           "0: no clipping (docs/RESULTS.md: at 100 it "
                           "tamed the spikes of a 2,000-step run but did "
                           "not help a 30-epoch one)")
  parser.add_argument("--num-levels", type=positive_int, default=None,
                      help="L; 28 x 28 digits get the least zero border "
                           "the levels need (3 levels: 32 x 32) (default: "
                           f"{_default('num_levels')}, or 2 with --plain)")
  parser.add_argument("--padding", type=non_negative_int, default=None,
                      help="zero border (pixels a side) around the digits; "
                           "default: the least that --num-levels needs")
  parser.add_argument("--top-mixture-components", type=non_negative_int,
                      default=None,
                      help="components of the learned Gaussian mixture on "
                           "the top latents; 0: N(0, I) (default: "
                           f"{DEFAULT_TOP_MIXTURE_COMPONENTS}, or 0 with "
                           "--conditional)")
  parser.add_argument("--num-steps", type=positive_int, nargs="+",
                      default=[8],
                      help="K, steps of flow per level: one for every "
                           "level, or one per level, finest first")
  parser.add_argument("--hidden-channels", type=positive_int, default=64)
  parser.add_argument("--coupling", choices=["affine", "additive"],
                      default="affine")
  parser.add_argument("--hidden-initializer", default="glorot_uniform",
                      help="Keras initializer of the coupling networks' "
                           "hidden convolutions (e.g. he_normal)")
  parser.add_argument("--preprocessing", choices=["centre", "logit"],
                      default=_default("preprocessing"),
                      help="images to the flow's input: centred pixels "
                           "x - 1/2 or RealNVP's logit(0.05 + 0.9 x)")
  parser.add_argument("--plain", action="store_true",
                      help="the plain Glow of the speed comparisons: "
                           "standard normal latents, Glorot-initialized "
                           "networks")
  parser.add_argument("--conditional", action="store_true",
                      help="a class-conditional Glow (trains on labels)")
  parser.add_argument("--classification-weight", type=non_negative_float,
                      default=None,
                      help="with --conditional: weight of the classification "
                           "loss on the top latent (default: GlowModel's, "
                           "openai/glow's weight_y 0.01 on its scale: 0.01 "
                           "times the D the flow sees, 10.24 for 28x28 "
                           "digits in the 32x32 frame of 3 levels; 0 leaves "
                           "the loss out)")
  parser.add_argument("--conditional-flow", action="store_true",
                      help="with --conditional: the label also reaches "
                           "every coupling network and split prior, not "
                           "only the top prior")
  parser.add_argument("--seed", type=int, default=0)
  cli.add_training_flags(parser)
  parser.add_argument("--output-dir", type=pathlib.Path,
                      default=pathlib.Path("runs/glow"))
  parser.add_argument("--export-dir", type=pathlib.Path,
                      default=pathlib.Path("saved_models/glow_mnist"))
  return parser.parse_args(argv)


def interpolation_figure(model, images, labels, path, num_points=10):
  """Decodes a straight line between the latents of two digits (of the
  same class for a conditional model, whose latents are per class)."""
  if labels is None:
    pair, pair_labels, path_labels = images[:2], None, None
  else:
    same = np.flatnonzero(labels == labels[0])[:2]
    pair, pair_labels = images[same], labels[same]
    path_labels = np.full(num_points, labels[0], np.int32)
  latents = model.encode(pair, pair_labels)
  weights = np.linspace(0., 1., num_points, dtype=np.float32)[:, None]
  path_latents = (1. - weights) * latents[0] + weights * latents[1]
  decoded = model.decode(path_latents, path_labels).numpy()
  plotting.save_image_grids(
      path, [plotting.image_grid(decoded, num_columns=num_points)],
      ["latent interpolation between two test digits"])


def num_levels_of(args):
  """--num-levels, or its default: the peer comparisons' L = 2 for
  --plain, GlowModel's otherwise."""
  if args.num_levels is not None:
    return args.num_levels
  return 2 if args.plain else _default("num_levels")


def model_options(args):
  """GlowModel's options from the flags (all of them, for metrics.json)."""
  defaults = inspect.signature(GlowModel).parameters
  options = {name: defaults[name].default for name in
             ("hidden_initializer", "learned_prior", "num_classes",
              "classification_weight", "top_mixture_components")}
  num_steps = (args.num_steps[0] if len(args.num_steps) == 1
               else list(args.num_steps))
  options.update(num_levels=num_levels_of(args), num_steps=num_steps,
                 hidden_channels=args.hidden_channels, seed=args.seed,
                 coupling=args.coupling,
                 hidden_initializer=args.hidden_initializer,
                 preprocessing=args.preprocessing, padding=args.padding)
  if args.top_mixture_components is not None:
    options.update(top_mixture_components=args.top_mixture_components)
  if args.plain:
    options.update(PLAIN_GLOW, coupling=args.coupling)
  if args.conditional:
    options.update(num_classes=10)
    if args.classification_weight is not None:
      options.update(classification_weight=args.classification_weight)
    options.update(conditional_flow=args.conditional_flow)
  return options


def optimizer(args, steps):
  return optimizers.adam_with_warmup_and_ema(
      args.learning_rate, args.warmup_steps, args.ema_momentum or None,
      decay_steps=(max(1, steps - args.warmup_steps) if args.cosine_decay
                   else None),
      global_clipnorm=args.global_clipnorm or None, beta_2=args.adam_beta_2)


def train(args):
  # First: the strategy must exist before any other TensorFlow work.
  run = training.TrainingRun(args.output_dir, args.strategy,
                             args.cpu_replicas, seed=args.seed)
  for flag, given in (("--classification-weight",
                       args.classification_weight is not None),
                      ("--conditional-flow", args.conditional_flow)):
    if given and not args.conditional:
      raise SystemExit(f"train_glow.py: {flag} needs --conditional")
  if len(args.num_steps) not in (1, num_levels_of(args)):
    raise SystemExit(
        f"train_glow.py: --num-steps takes one K or one per level "
        f"(--num-levels {num_levels_of(args)}); got {len(args.num_steps)}")
  # A rerun resumes the checkpoint in --output-dir: only with these flags
  # (or others that say how long, where and how distributed), and may
  # score the test set on more or fewer digits.
  run.keep_flags(vars(args), may_change=("test_size",))
  splits = data.load_mnist(args.data_dir, args.validation_size,
                           args.test_size, args.seed, with_labels=True)
  print({name: images.shape for name, (images, _) in splits.items()})

  def dataset(split, batch_size, **kwargs):
    images, labels = splits[split]
    return data.image_dataset(images, batch_size,
                              labels=labels if args.conditional else None,
                              **kwargs)

  # A budget in steps, not passes: the same default run (and the same
  # compute) whatever the size of the training set.
  steps_per_epoch = (args.steps_per_epoch
                     or len(splits["train"][0]) // args.batch_size)
  steps = args.epochs * steps_per_epoch
  with run.scope():
    model = GlowModel(image_shape=splits["train"][0].shape[1:],
                      **model_options(args))
    model.compile(optimizer=optimizer(args, steps))
  run.fit(model, dataset("train", args.batch_size, shuffle=True,
                         seed=args.seed, max_shift=args.max_shift,
                         repeat=True),
          dataset("validation", 256), args.epochs,
          chief_callbacks=[SampleGridCallback(args.output_dir / "samples",
                                              num_samples=100)],
          non_finite=args.non_finite, steps_per_epoch=steps_per_epoch)

  # The weights are now the moving average, if one was kept (fit ends so).
  test_metrics = model.evaluate(dataset("test", 256), return_dict=True)
  print(f"test bits/dim: {test_metrics['bits_per_dim']:.4f} "
        f"({len(splits['test'][0])} digits)")
  if not run.is_chief:
    return
  test_images, test_labels = splits["test"]
  interpolation_figure(model, test_images,
                       test_labels if args.conditional else None,
                       args.output_dir / "interpolation.png")
  run.finish(model, args.export_dir, "glow.keras", {
      "test_bits_per_dim": test_metrics["bits_per_dim"],
      # The loss adds the weighted classification loss of a conditional
      # model; the test figure is the negative log-likelihood alone.
      "test_nats_per_image": test_metrics["bits_per_dim"]
                             * model.image_dims * np.log(2.),
      "global_clipnorm": args.global_clipnorm,
      "adam_beta_2": args.adam_beta_2,
      "data": str(args.data_dir or "tfds:mnist"),
      "split_sizes": {name: len(images)
                      for name, (images, _) in splits.items()},
      "model": {**model_options(args),
                "classification_weight": model.classification_weight,
                "padding": model.padding,
                "top_mixture_components": model.top_mixture_components},
  }, curve_metric="bits_per_dim", curve_label="bits/dim")


def main(argv=None):
  return training.exit_code(train, parse_args(argv), prog="train_glow.py")


if __name__ == "__main__":
  sys.exit(main())
