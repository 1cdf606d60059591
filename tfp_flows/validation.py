"""Argument checks shared across the package's functions."""

import operator

__all__ = ["positive_int"]


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
