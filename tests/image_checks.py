"""Comparing uint8 images that two computations quantize from the same
float image."""

import numpy as np


def assert_equal_up_to_rounding(actual, expected):
  """`actual` and `expected` differ by at most one pixel level.

  `GlowModel` quantizes with `floor(x * 256)`. The same float image computed
  by a SavedModel's graph (which Grappler rewrites) and by eager ops, or for
  another batch size (oneDNN picks kernels by shape), differs by float noise;
  a pixel within that noise of a level boundary
  then lands on the neighbouring level. A flaky export test (one of 256
  pixels, on CI's machine) is how this was found. A wrong latent or a wrong
  mixture component moves many pixels by many levels.
  """
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.dtype == expected.dtype == np.uint8
  assert actual.shape == expected.shape
  difference = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
  assert difference.max() <= 1, (
      f"{np.count_nonzero(difference > 1)} pixels differ by more than one "
      f"level (at most {difference.max()})")


def equal_up_to_rounding(actual, expected):
  """Whether `assert_equal_up_to_rounding` holds."""
  try:
    assert_equal_up_to_rounding(actual, expected)
  except AssertionError:
    return False
  return True
