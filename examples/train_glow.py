"""Trains Glow on MNIST by maximum likelihood and reports bits/dim.

    python examples/train_glow.py                                  # TFDS mnist
    python examples/train_glow.py --data-dir ../shared/data/mnist  # IDX files

Writes, under --output-dir (default runs/glow): TensorBoard logs (logs/), a
sample grid per epoch at temperatures 0.7 and 1.0 (samples/), a checkpoint
per epoch (backup/: rerunning the same command resumes from it), every
epoch's metrics (history.csv, across resumed runs), a latent interpolation
between two test digits (interpolation.png), metrics.json with test bits/dim
and the learning curves (learning_curve.png). The trained
model goes to --export-dir (default saved_models/glow_mnist): glow.keras, and
a SavedModel for TF Serving in the next numbered version folder.

--strategy mirrored trains on every local GPU; --strategy multi_worker on a
cluster described by TF_CONFIG, one process per machine running this same
command (README, "Many machines").
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import cli, data, distribute, plotting  # noqa: E402
from tfp_flows.callbacks import (NonFiniteLossError,  # noqa: E402
                                 SampleGridCallback, epoch_log, read_epoch_log)
from tfp_flows.cli import (non_negative_float,  # noqa: E402
                           non_negative_int, positive_float, positive_int)
from tfp_flows.export import export_saved_model  # noqa: E402
from tfp_flows.models import GlowModel  # noqa: E402


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
  parser.add_argument("--epochs", type=positive_int, default=10)
  parser.add_argument("--batch-size", type=positive_int, default=64,
                      help="global batch size, split across replicas")
  parser.add_argument("--learning-rate", type=positive_float, default=1e-3)
  parser.add_argument("--global-clipnorm", type=non_negative_float,
                      default=0.,
                      help="clip each step's gradient to this global norm; "
                           "0: no clipping (docs/RESULTS.md: at 100 it "
                           "tamed the spikes of a 2,000-step run but did "
                           "not help a 30-epoch one)")
  parser.add_argument("--num-levels", type=positive_int, default=2)
  parser.add_argument("--num-steps", type=positive_int, default=8)
  parser.add_argument("--hidden-channels", type=positive_int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  cli.add_training_flags(parser)
  parser.add_argument("--output-dir", type=pathlib.Path,
                      default=pathlib.Path("runs/glow"))
  parser.add_argument("--export-dir", type=pathlib.Path,
                      default=pathlib.Path("saved_models/glow_mnist"))
  return parser.parse_args(argv)


def interpolation_figure(model, images, path, num_points=10):
  """Decodes a straight line between the latents of two digits."""
  latents = model.encode(images[:2])
  weights = np.linspace(0., 1., num_points, dtype=np.float32)[:, None]
  path_latents = (1. - weights) * latents[0] + weights * latents[1]
  decoded = model.decode(path_latents).numpy()
  plotting.save_image_grids(
      path, [plotting.image_grid(decoded, num_columns=num_points)],
      ["latent interpolation between two test digits"])


def main(argv=None):
  args = parse_args(argv)
  try:
    strategy = distribute.make_strategy(args.strategy, args.cpu_replicas)
  except ValueError as error:
    print(f"train_glow.py: {error}", file=sys.stderr)
    return 2
  chief = distribute.is_chief(strategy)
  keras.utils.set_random_seed(args.seed)
  try:
    splits = data.load_mnist(args.data_dir, args.validation_size,
                             args.test_size, args.seed)
  except data.DataError as error:
    print(f"train_glow.py: {error}", file=sys.stderr)
    return 2
  print({name: images.shape for name, images in splits.items()})

  with strategy.scope():
    model = GlowModel(image_shape=splits["train"].shape[1:],
                      num_levels=args.num_levels, num_steps=args.num_steps,
                      hidden_channels=args.hidden_channels, seed=args.seed)
    model.compile(optimizer=keras.optimizers.Adam(
        args.learning_rate, global_clipnorm=args.global_clipnorm or None))
  train = data.image_dataset(splits["train"], args.batch_size, shuffle=True,
                             seed=args.seed)
  validation = data.image_dataset(splits["validation"], 256)
  output_dir = args.output_dir
  # Every epoch's metrics, appended across resumed runs (before the
  # checkpoint: see epoch_log).
  callbacks = [epoch_log(output_dir / "history.csv")] if chief else []
  callbacks += [
      # Weights, optimizer state and epoch after every epoch; restored when
      # the same command is run again. Kept after the last epoch, so a rerun
      # of a finished run trains no further. Two generations, so a run killed
      # while writing one restarts from the other.
      keras.callbacks.BackupAndRestore(
          str(distribute.worker_dir(output_dir / "backup", strategy)),
          delete_checkpoint=False, double_checkpoint=True),
  ]
  if chief:
    callbacks += [keras.callbacks.TensorBoard(str(output_dir / "logs")),
                  SampleGridCallback(output_dir / "samples")]
  start = time.perf_counter()
  try:
    model.fit(train, validation_data=validation,
                        epochs=args.epochs, callbacks=callbacks,
                        non_finite=args.non_finite)
  except NonFiniteLossError as error:
    print(f"train_glow.py: {error} Rerunning the same command resumes from "
          f"the last checkpoint; --non-finite skip goes past such steps.",
          file=sys.stderr)
    return 3
  train_seconds = time.perf_counter() - start

  test_metrics = model.evaluate(data.image_dataset(splits["test"], 256),
                                return_dict=True)
  print(f"test bits/dim: {test_metrics['bits_per_dim']:.4f} "
        f"({len(splits['test'])} digits)")
  if not chief:
    return 0
  interpolation_figure(model, splits["test"], output_dir / "interpolation.png")
  args.export_dir.mkdir(parents=True, exist_ok=True)
  model_path = args.export_dir / "glow.keras"
  model.save(model_path)
  saved_model_path = export_saved_model(model, args.export_dir)
  metrics = {
      "test_bits_per_dim": test_metrics["bits_per_dim"],
      "test_nats": test_metrics["loss"],
      "epochs": args.epochs,
      "steps": int(model.optimizer.iterations.numpy()),
      "train_seconds_this_run": train_seconds,
      "global_clipnorm": args.global_clipnorm,
      "strategy": args.strategy,
      "replicas": strategy.num_replicas_in_sync,
      "history": read_epoch_log(output_dir / "history.csv"),
      "data": str(args.data_dir or "tfds:mnist"),
      "split_sizes": {name: len(images) for name, images in splits.items()},
  }
  (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
  plotting.save_learning_curves(output_dir / "learning_curve.png",
                                metrics["history"], "bits_per_dim", "bits/dim")
  print(f"wrote {output_dir / 'metrics.json'}, {model_path}; SavedModel for "
        f"TF Serving: {saved_model_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
