"""Argument types shared by the example scripts: bad flags fail at parse
time with a message naming the flag, not deep inside training."""

import argparse

__all__ = ["add_training_flags", "positive_int", "non_negative_int",
           "positive_float", "non_negative_float", "open_unit_float",
           "rate_float"]


def positive_int(text):
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
  return value


def non_negative_int(text):
  value = int(text)
  if value < 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
  return value


def positive_float(text):
  value = float(text)
  if not value > 0:
    raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
  return value


def non_negative_float(text):
  value = float(text)
  if not value >= 0:
    raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
  return value


def rate_float(text):
  """A float in [0, 1), as a dropout rate must be."""
  value = float(text)
  if not 0 <= value < 1:
    raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
  return value


def open_unit_float(text):
  """A float in (0, 1), as a decay rate or momentum must be."""
  value = float(text)
  if not 0 < value < 1:
    raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
  return value


def add_training_flags(parser):
  """The training examples' flags for distribution and non-finite steps:
  --strategy, --cpu-replicas, --non-finite."""
  from tfp_flows import distribute  # noqa: imports TensorFlow
  from tfp_flows.callbacks import NON_FINITE_POLICIES

  parser.add_argument("--strategy", choices=distribute.STRATEGIES,
                      default="default",
                      help="tf.distribute strategy (multi_worker reads "
                           "TF_CONFIG)")
  parser.add_argument("--cpu-replicas", type=positive_int, default=None,
                      help="with --strategy mirrored and no GPU: split the "
                           "CPU into this many replicas")
  parser.add_argument("--non-finite", choices=NON_FINITE_POLICIES,
                      default="stop",
                      help="after a step with a non-finite loss (never "
                           "applied): stop, keeping the last checkpoint, or "
                           "skip it and go on")
