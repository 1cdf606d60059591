"""Pieces the models share: the annealing schedule, the reparametrized
diagonal Gaussian, and unpacking Keras' `data` argument."""

import math

import tensorflow as tf

__all__ = ["HALF_LOG_2PI", "annealed_beta", "diagonal_normal_sample",
           "images_of"]

HALF_LOG_2PI = 0.5 * math.log(2. * math.pi)


def annealed_beta(step, initial_beta, annealing_steps):
  """Rezende & Mohamed's inverse temperature `min(1, initial_beta +
  step / annealing_steps)`; 1 throughout when `annealing_steps == 0`."""
  step = tf.cast(step, tf.float32)
  if annealing_steps == 0:
    return tf.ones_like(step)
  return tf.minimum(1., initial_beta + step / annealing_steps)


def diagonal_normal_sample(loc, log_scale, noise):
  """`z = loc + exp(log_scale) noise` and `log N(z; loc, diag exp(2 log_scale))`
  from standard-normal `noise`, summed over the last axis. The log-density is
  written in `noise` directly: no division by the scale."""
  z = loc + tf.exp(log_scale) * noise
  log_prob = -tf.reduce_sum(0.5 * tf.square(noise) + log_scale + HALF_LOG_2PI,
                            axis=-1)
  return z, log_prob


def images_of(data):
  """The inputs of a Keras `data` batch: `x` of `(x, ...)` or `x` itself."""
  return data[0] if isinstance(data, (tuple, list)) else data
