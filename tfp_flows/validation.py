"""Argument and input checks shared across the package's functions: errors
that name the argument, eagerly and inside graphs."""

import operator

import tensorflow as tf

__all__ = ["as_int_at_least", "check_values", "checked_latents",
           "positive_int"]


def as_int_at_least(value, minimum):
  """`value` as a Python int when it is an integer (Python or NumPy, never
  a bool) >= `minimum`; None otherwise, for the caller's own error that
  names the argument. A float such as 2.0 is refused: counts and sizes are
  ints, and a float is more often a bug than a count."""
  if isinstance(value, bool):
    return None
  try:
    value = operator.index(value)
  except TypeError:
    return None
  return value if value >= minimum else None


def positive_int(value, name, where):
  """`value` as an int >= 1, or a `TypeError` / `ValueError` naming the
  argument `name` of `where`. Booleans are refused: an int to Python, never
  meant as a count."""
  if isinstance(value, bool):
    raise TypeError(f"{where}: {name} must be an int >= 1; got {value!r}.")
  try:
    value = operator.index(value)
  except TypeError:
    raise TypeError(f"{where}: {name} must be an int >= 1; got {value!r} "
                    f"({type(value).__name__}).") from None
  if value < 1:
    raise ValueError(f"{where}: {name} must be >= 1; got {value}.")
  return value


def check_values(tensor, ok, message, culprits):
  """`tensor`, once the boolean scalar `ok` holds.

  Otherwise eagerly a `ValueError`, and in a graph (`fit`, exports) an
  `InvalidArgumentError`, each starting with `message` and showing up to
  five offending values: `culprits()`, a callable returning a tensor of
  them, called only when the check fails (in a graph, inside the failing
  branch of a `tf.cond`). Gathering them is a pass over `tensor` as costly
  as the check itself, and checks run on every training step.
  """
  if tf.executing_eagerly():
    if not bool(ok):
      raise ValueError(f"{message}; got {culprits().numpy()[:5].tolist()}.")
    return tensor

  def fail():
    with tf.control_dependencies([tf.debugging.Assert(
        False, [f"{message}; got", culprits()[:5]], summarize=5)]):
      return tf.identity(ok)

  with tf.control_dependencies([tf.cond(ok, lambda: tf.identity(ok), fail)]):
    return tf.identity(tensor)


def checked_latents(latents, dim, model_name, dtype=tf.float32):
  """Latents `[N, dim]` in `dtype` (the model's likelihood dtype; a float
  tensor of another precision is cast to it), finite, or an error saying
  what is wrong."""
  if tf.is_tensor(latents) and latents.dtype.is_floating:
    latents = tf.cast(latents, dtype)
  latents = tf.convert_to_tensor(latents, dtype)
  if latents.shape.rank is not None and (
      latents.shape.rank != 2 or latents.shape[-1] not in (None, dim)):
    raise ValueError(f"{model_name}: latents must have shape [N, {dim}]; got "
                     f"{latents.shape}.")
  finite = tf.math.is_finite(latents)
  return check_values(latents, tf.reduce_all(finite),
                      f"{model_name}: latents must be finite",
                      lambda: tf.boolean_mask(latents, tf.logical_not(finite)))
