"""Glow's learned prior at a split, as a bijector into the standard normal."""

import tensorflow as tf

from tfp_flows.bijectors.affine_coupling import AffineCoupling

__all__ = ["SplitPrior"]


class SplitPrior(AffineCoupling):
  r"""The learned prior of the channels that leave Glow at a split, as a map.

  Kingma & Dhariwal (2018) give the `C // 2` channels factored out at a split
  the prior `N(mean(x_kept), exp(log_std(x_kept))^2)`, computed from the
  `C - C // 2` channels that stay (openai/glow's `split2d_prior`). The same
  density is the standard normal pulled back through the affine map that
  standardizes them, data-to-latent:

  ```none
  x_exit, x_kept = x[..., :C // 2], x[..., C // 2:]
  mean, log_std = nn(x_kept)              # each [..., H, W, C // 2]
  forward:  y = concat((x_exit - mean) * exp(-log_std), x_kept)
  inverse:  x = concat(y_exit * exp(log_std) + mean, y_kept)
  log|det J| = -sum over H, W, C // 2 of log_std      (forward)
  ```

  So a `tfd.TransformedDistribution(N(0, I), flow)` whose flow holds this
  bijector has the learned prior, and sampling draws `y_exit ~ N(0, I)` and
  maps it back. With a zero-initialized network it starts as the identity
  (the standard normal prior). It is an affine coupling with the roles of
  the halves swapped and an unbounded scale: a prior's scale must be free
  to shrink and grow, where a coupling's is kept in (0, 1).

  Args:
    mean_and_log_std_fn: callable mapping `x_kept` `[..., H, W, C - C // 2]`
      to `[..., H, W, 2 * (C // 2)]`: mean, then log standard deviation.

  Raises:
    TypeError: if `mean_and_log_std_fn` is not callable.
  """

  _network_name = "mean_and_log_std_fn"

  def __init__(self, mean_and_log_std_fn, validate_args=False,
               name="split_prior"):
    parameters = dict(mean_and_log_std_fn=mean_and_log_std_fn,
                      validate_args=validate_args, name=name)
    super().__init__(mean_and_log_std_fn, validate_args=validate_args,
                     name=name)
    # TFP's `copy()` rebuilds a bijector from its own constructor's arguments.
    self._parameters = self._no_dependency(parameters)

  @property
  def mean_and_log_std_fn(self):
    return self.shift_and_log_scale_fn

  @property
  def _output_description(self):
    return "2 * (C // 2) (mean, then log standard deviation)"

  def _shift_and_log_scale_from(self, output):
    mean, log_std = tf.split(output, 2, axis=-1)
    return -mean, -log_std

  def _split(self, x, arg_name):
    """`(conditioning, transformed)` = `(x_kept, x_exit)`."""
    channels = self._static_channels(x, arg_name)
    exit_part, kept = tf.split(x, [channels // 2, channels - channels // 2],
                               axis=-1)
    return kept, exit_part

  def _join(self, conditioning, transformed):
    return tf.concat([transformed, conditioning], axis=-1)
