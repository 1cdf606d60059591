"""Glow's affine coupling layer, with its network evaluated once per pass."""

import tensorflow as tf
import tensorflow_probability as tfp

# TFP's FFJORD keeps log-dets computed with the transformation in this
# cache (internal TFP API, through tfp_flows._internal).
from tfp_flows import _internal

tfb = tfp.bijectors

__all__ = ["AffineCoupling"]


class AffineCoupling(tfb.Bijector):
  r"""Affine coupling over the channel axis of `[..., H, W, C]` images.

  Kingma & Dhariwal (2018), Sec. 3.3, in their data-to-latent direction. The
  first `C_a = C - C // 2` channels condition an affine map of the rest:

  ```none
  x_a, x_b = x[..., :C_a], x[..., C_a:]
  shift, raw_scale = nn(x_a)            # each [..., H, W, C // 2]
  scale = sigmoid(raw_scale + 2)        # in (0, 1): bounded, stable
  forward:  y = concat(x_a, (x_b + shift) * scale)
  inverse:  x = concat(y_a, y_b / scale - shift)
  log|det J| = sum over H, W, C // 2 of log(scale)   (forward)
  ```

  `sigmoid(h + 2)` starts near 0.88 with a zero-initialized last layer, so
  the layer starts close to the identity and can neither explode nor divide
  by a vanishing scale by more than its own bound.

  TFP's `RealNVP` (and `tfb.Glow`, built on the same pattern) evaluates the
  network once in `inverse` and again in `inverse_log_det_jacobian`. Here the
  transformation and its log-det come out of one network evaluation and the
  log-det is left in TFP's bijector cache (the mechanism TFP's FFJORD uses),
  so a `TransformedDistribution.log_prob` costs one network call per coupling.

  Bad input fails fast, statically (no run-time cost), with a `TypeError` or
  `ValueError` naming the argument, the expected and the received: the
  network must be callable; an input must have shape `[..., H, W, C]` with a
  static `C >= 2`; the network's output must have the input's dtype and
  shape `[..., H, W, 2 * (C // 2)]`. (Unchecked, a network with too few
  output channels, e.g. one shift and one scale for all of `x_b`, had them
  broadcast over `x_b`.)

  Args:
    shift_and_log_scale_fn: callable mapping `x_a` of shape
      `[..., H, W, C_a]` to `[..., H, W, 2 * (C // 2)]`: shift, then raw scale.

  Raises:
    TypeError: if `shift_and_log_scale_fn` is not callable.
  """

  _cache = _internal.BijectorCacheWithGreedyAttrs(
      forward_name="_augmented_forward", inverse_name="_augmented_inverse")

  def __init__(self, shift_and_log_scale_fn, validate_args=False,
               name="affine_coupling"):
    parameters = dict(locals())
    if not callable(shift_and_log_scale_fn):
      raise TypeError(
          f"AffineCoupling: `shift_and_log_scale_fn` must be callable (a "
          f"Keras model or a function of x_a [..., H, W, C_a]); got "
          f"{type(shift_and_log_scale_fn).__name__}.")
    with tf.name_scope(name) as name:
      self._shift_and_log_scale_fn = shift_and_log_scale_fn
      super().__init__(
          forward_min_event_ndims=3, validate_args=validate_args,
          parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  @property
  def shift_and_log_scale_fn(self):
    return self._shift_and_log_scale_fn

  def _shift_and_log_scale(self, conditioner):
    """`shift` and `log(scale)` from one call of the network on `x_a`."""
    output = self._shift_and_log_scale_fn(conditioner)
    output_dtype = getattr(output, "dtype", None)
    if (output_dtype is not None
        and tf.as_dtype(output_dtype) != conditioner.dtype):
      raise TypeError(
          f"AffineCoupling: `shift_and_log_scale_fn` must return the dtype "
          f"of its input x_a ({conditioner.dtype.name}); got "
          f"{tf.as_dtype(output_dtype).name}.")
    output = tf.convert_to_tensor(output, dtype=conditioner.dtype)
    # The exact channel count needs C (`_check_network_channels`); what
    # x_a alone determines is checked here, before `tf.split` needs it.
    channels = (tf.compat.dimension_value(output.shape[-1])
                if output.shape.rank else None)
    if (not output.shape[:-1].is_compatible_with(conditioner.shape[:-1])
        or (channels is not None and channels % 2)):
      raise ValueError(
          f"AffineCoupling: `shift_and_log_scale_fn` must map x_a of shape "
          f"{conditioner.shape} to shape {conditioner.shape[:-1]} + "
          f"[2 * (C // 2)] (shift, then raw scale); got shape "
          f"{output.shape}.")
    shift, raw_scale = tf.split(output, 2, axis=-1)
    return shift, tf.math.log_sigmoid(raw_scale + 2.)

  @staticmethod
  def _check_network_channels(conditioner, transformed, shift):
    """ValueError unless the network gave a shift (and scale) per channel
    of `x_b`; a smaller count would broadcast over `x_b` unnoticed."""
    expected = tf.compat.dimension_value(transformed.shape[-1])
    got = tf.compat.dimension_value(shift.shape[-1])
    if got is not None and got != expected:
      raise ValueError(
          f"AffineCoupling: `shift_and_log_scale_fn` must map x_a of shape "
          f"{conditioner.shape} to shape "
          f"{transformed.shape[:-1].concatenate(2 * expected)} (shift and "
          f"raw scale, C // 2 = {expected} channels each); got shape "
          f"{shift.shape[:-1].concatenate(2 * got)}.")

  @staticmethod
  def _halves(x, arg_name):
    if x.shape.rank is not None and x.shape.rank < 3:
      raise ValueError(
          f"AffineCoupling: `{arg_name}` must have shape [..., H, W, C] "
          f"(rank >= 3); got shape {x.shape}.")
    channels = tf.compat.dimension_value(x.shape[-1]) if x.shape.rank else None
    if channels is None or channels < 2:
      raise ValueError(
          f"AffineCoupling: `{arg_name}` needs a static channel axis of size "
          f">= 2 (C - C // 2 channels condition the other C // 2); got shape "
          f"{x.shape}.")
    return tf.split(x, [channels - channels // 2, channels // 2], axis=-1)

  def _augmented_forward(self, x):
    x_a, x_b = self._halves(x, "x")
    shift, log_scale = self._shift_and_log_scale(x_a)
    self._check_network_channels(x_a, x_b, shift)
    y = tf.concat([x_a, (x_b + shift) * tf.exp(log_scale)], axis=-1)
    fldj = tf.reduce_sum(log_scale, axis=[-3, -2, -1])
    return y, {"fldj": fldj, "ildj": -fldj}

  def _augmented_inverse(self, y):
    y_a, y_b = self._halves(y, "y")
    shift, log_scale = self._shift_and_log_scale(y_a)
    self._check_network_channels(y_a, y_b, shift)
    x = tf.concat([y_a, y_b * tf.exp(-log_scale) - shift], axis=-1)
    ildj = -tf.reduce_sum(log_scale, axis=[-3, -2, -1])
    return x, {"ildj": ildj, "fldj": -ildj}

  def _forward(self, x):
    return self._augmented_forward(x)[0]

  def _inverse(self, y):
    return self._augmented_inverse(y)[0]

  def _forward_log_det_jacobian(self, x):
    cached = self._cache.forward_attributes(x)
    if "fldj" not in cached:  # x was not transformed yet: one pass now
      cached.update(self._augmented_forward(x)[1])
    return cached["fldj"]

  def _inverse_log_det_jacobian(self, y):
    cached = self._cache.inverse_attributes(y)
    if "ildj" not in cached:
      cached.update(self._augmented_inverse(y)[1])
    return cached["ildj"]
