"""Pieces of Rezende & Mohamed's (2015) annealed free energy, shared by
`FlowVAE` and `EnergyFlowModel`: the base density `q_0`, the prior, and the
inverse-temperature schedule."""

import math

import tensorflow as tf

__all__ = ["annealed_beta", "diagonal_normal_sample",
           "standard_normal_log_prob"]

_HALF_LOG_2PI = 0.5 * math.log(2. * math.pi)


def standard_normal_log_prob(x):
  """`log N(x; 0, I)`, summed over the last axis: the one Gaussian
  log-density of the models (`diagonal_normal_sample` shifts it by the
  log-scales)."""
  return -tf.reduce_sum(0.5 * tf.square(x) + _HALF_LOG_2PI, axis=-1)


def diagonal_normal_sample(loc, log_scale, noise):
  """`z = loc + exp(log_scale) noise` and `log N(z; loc, diag exp(2 log_scale))`
  from standard-normal `noise`, summed over the last axis. The log-density is
  written in `noise` directly: no division by the scale."""
  z = loc + tf.exp(log_scale) * noise
  return z, standard_normal_log_prob(noise) - tf.reduce_sum(log_scale, axis=-1)


def annealed_beta(step, initial_beta, annealing_steps, dtype=tf.float32):
  """Rezende & Mohamed's inverse temperature `min(1, initial_beta +
  step / annealing_steps)`, in `dtype`; 1 throughout when
  `annealing_steps == 0`."""
  step = tf.cast(step, dtype)
  if annealing_steps == 0:
    return tf.ones_like(step)
  return tf.minimum(tf.ones_like(step), initial_beta + step / annealing_steps)
