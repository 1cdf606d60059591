"""A small Glow training script on `tfp_flows.training`, for the tests that
need whole processes: `kill -9` (test_killed_runs.py) and one process per
worker (test_multi_worker.py).

    python tests/harness_glow.py DIGITS_DIR OUTPUT_DIR EXPORT_DIR \\
        --epochs 3 [--strategy mirrored --cpu-replicas 2]

A user's own script, as the harness's docstring shows it: a tiny Glow (one
step a level, 8 channels, the default learned priors) with Adam after a
warm-up and a moving average of the weights (not `compile()`'s default, which
has none: the average is optimizer state a resumed or distributed run must
restore and keep in sync too) on the IDX digits
in DIGITS_DIR, 64 of them held out for validation, in global batches of 32,
with the examples' sample grid on the chief; exit codes from
`training.exit_code`.
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfp_flows import data, optimizers, training  # noqa: E402
from tfp_flows.callbacks import SampleGridCallback  # noqa: E402
from tfp_flows.models import GlowModel  # noqa: E402


def train(digits_dir, output_dir, export_dir, epochs, strategy="default",
          cpu_replicas=None):
  run = training.TrainingRun(output_dir, strategy, cpu_replicas, seed=0)
  splits = data.load_mnist(digits_dir, validation_size=64)
  with run.scope():
    model = GlowModel(image_shape=splits["train"].shape[1:], num_levels=2,
                      num_steps=1, hidden_channels=8, seed=0)
    model.compile(optimizer=optimizers.adam_with_warmup_and_ema(
        warmup_steps=10, ema_momentum=0.9))
  run.fit(model, data.image_dataset(splits["train"], 32, shuffle=True),
          data.image_dataset(splits["validation"], 256), epochs,
          chief_callbacks=[SampleGridCallback(run.output_dir / "samples",
                                              num_samples=16)])
  test = model.evaluate(data.image_dataset(splits["test"], 256),
                        return_dict=True)
  run.finish(model, export_dir, "glow.keras",
             {"test_bits_per_dim": test["bits_per_dim"]},
             curve_metric="bits_per_dim", curve_label="bits/dim")


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  for name in ("digits_dir", "output_dir", "export_dir"):
    parser.add_argument(name, type=pathlib.Path)
  parser.add_argument("--epochs", type=int, required=True)
  parser.add_argument("--strategy", default="default")
  parser.add_argument("--cpu-replicas", type=int, default=None)
  sys.exit(training.exit_code(train, **vars(parser.parse_args())))
