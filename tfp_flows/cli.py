"""Argument types shared by the example scripts: bad flags fail at parse
time with a message naming the flag, not deep inside training."""

import argparse

__all__ = ["positive_int", "non_negative_int", "positive_float"]


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
