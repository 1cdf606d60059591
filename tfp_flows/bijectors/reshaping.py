"""Space-to-depth and flattening, composed from TFP's Reshape and Transpose."""

import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = ["squeeze", "channels_first_flatten"]


def squeeze(height, width, channels, name="squeeze"):
  """Glow's squeeze: `[H, W, C] -> [H/2, W/2, 4C]`, each 2x2 patch to depth.

  Volume-preserving (log-det 0): output channel `(2 i + j) C + c` of pixel
  `(p, q)` is input channel `c` of pixel `(2p + i, 2q + j)`.
  """
  if height % 2 or width % 2:
    raise ValueError(
        f"squeeze needs even height and width; got {height}x{width}. Pad or "
        f"crop images so each level's size is divisible by 2.")
  h, w, c = height // 2, width // 2, channels
  return tfb.Chain([
      tfb.Reshape(event_shape_out=[h, w, 4 * c], event_shape_in=[h, w, 2, 2, c]),
      tfb.Transpose(perm=[0, 2, 1, 3, 4]),
      tfb.Reshape(event_shape_out=[h, 2, w, 2, c],
                  event_shape_in=[height, width, channels]),
  ], name=name)


def channels_first_flatten(height, width, channels, name="flatten"):
  """`[H, W, C] -> [C * H * W]`, channel-major: the first `k * H * W`
  entries are channels `0..k-1`, so splitting the vector splits channels."""
  return tfb.Chain([
      tfb.Reshape(event_shape_out=[channels * height * width],
                  event_shape_in=[channels, height, width]),
      tfb.Transpose(perm=[2, 0, 1]),
  ], name=name)
