"""Glow's affine coupling layer, with its network evaluated once per pass."""

import tensorflow as tf
import tensorflow_probability as tfp

# TFP's FFJORD keeps log-dets computed with the transformation in this
# cache (internal TFP API, through tfp_flows._internal).
from tfp_flows import _internal

tfb = tfp.bijectors

__all__ = ["AffineCoupling"]


class AffineCoupling(tfb.Bijector):
  r"""Affine (or additive) coupling over the channel axis of `[..., H, W, C]`.

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

  With `additive=True` (NICE; Glow's "additive coupling") the network gives
  only `shift` `[..., H, W, C // 2]` and `scale = 1`: volume-preserving,
  log|det J| = 0.

  TFP's `RealNVP` (and `tfb.Glow`, built on the same pattern) evaluates the
  network once in `inverse` and again in `inverse_log_det_jacobian`. Here the
  transformation and its log-det come out of one network evaluation and the
  log-det is left in TFP's bijector cache (the mechanism TFP's FFJORD uses),
  so a `TransformedDistribution.log_prob` costs one network call per coupling.

  Bad input fails fast, statically (no run-time cost), with a `TypeError` or
  `ValueError` naming the argument, the expected and the received: the
  network must be callable; an input must have shape `[..., H, W, C]` with a
  static `C >= 2`; the network's output must have the input's dtype and
  shape `[..., H, W, 2 * (C // 2)]` (additive: `[..., H, W, C // 2]`).
  (Unchecked, a network with too few output channels, e.g. one shift and
  one scale for all of `x_b`, had them broadcast over `x_b`.)

  Subclasses change which channels condition which (`_split`, `_join`) and
  how the network's output becomes a shift and a log-scale
  (`_shift_and_log_scale_from`); `SplitPrior` is one.

  Args:
    shift_and_log_scale_fn: callable mapping `x_a` of shape
      `[..., H, W, C_a]` to `[..., H, W, 2 * (C // 2)]`: shift, then raw
      scale (additive: `[..., H, W, C // 2]`, the shift).
    additive: whether the coupling is additive (no scale).

  Raises:
    TypeError: if `shift_and_log_scale_fn` is not callable.
  """

  _network_name = "shift_and_log_scale_fn"  # in error messages
  _cache = _internal.BijectorCacheWithGreedyAttrs(
      forward_name="_augmented_forward", inverse_name="_augmented_inverse")

  def __init__(self, shift_and_log_scale_fn, additive=False,
               validate_args=False, name="affine_coupling"):
    parameters = dict(locals())
    if not callable(shift_and_log_scale_fn):
      raise TypeError(
          f"{type(self).__name__}: `{self._network_name}` must be callable "
          f"(a Keras model or a function of the conditioning channels "
          f"[..., H, W, C_a]); got {type(shift_and_log_scale_fn).__name__}.")
    with tf.name_scope(name) as name:
      self._shift_and_log_scale_fn = shift_and_log_scale_fn
      self._additive = bool(additive)
      super().__init__(
          forward_min_event_ndims=3, validate_args=validate_args,
          parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  @property
  def shift_and_log_scale_fn(self):
    return self._shift_and_log_scale_fn

  @property
  def additive(self):
    return self._additive

  def _shift_and_log_scale_from(self, output):
    """`(shift, log_scale)` from the network's output (`log_scale` None
    for an additive coupling)."""
    if self._additive:
      return output, None
    shift, raw_scale = tf.split(output, 2, axis=-1)
    return shift, tf.math.log_sigmoid(raw_scale + 2.)

  def _output_channels(self, transformed_channels):
    return transformed_channels * (1 if self._additive else 2)

  def _shift_and_log_scale(self, conditioner):
    """`shift` and `log(scale)` from one call of the network on `x_a`."""
    output = self._shift_and_log_scale_fn(conditioner)
    output_dtype = getattr(output, "dtype", None)
    if (output_dtype is not None
        and tf.as_dtype(output_dtype) != conditioner.dtype):
      raise TypeError(
          f"{type(self).__name__}: `{self._network_name}` must return the "
          f"dtype of its input ({conditioner.dtype.name}); got "
          f"{tf.as_dtype(output_dtype).name}.")
    output = tf.convert_to_tensor(output, dtype=conditioner.dtype)
    # The exact channel count needs C (`_check_network_channels`); what
    # x_a alone determines is checked here, before `tf.split` needs it.
    channels = (tf.compat.dimension_value(output.shape[-1])
                if output.shape.rank else None)
    if (not output.shape[:-1].is_compatible_with(conditioner.shape[:-1])
        or (channels is not None and not self._additive and channels % 2)):
      raise ValueError(
          f"{type(self).__name__}: `{self._network_name}` must map its "
          f"input of shape {conditioner.shape} to shape "
          f"{conditioner.shape[:-1]} + [{self._output_description}]; got "
          f"shape {output.shape}.")
    return self._shift_and_log_scale_from(output)

  @property
  def _output_description(self):
    return ("C // 2 (the shift)" if self._additive
            else "2 * (C // 2) (shift, then raw scale)")

  def _check_network_channels(self, conditioner, transformed, shift):
    """ValueError unless the network gave a shift (and scale) per
    transformed channel; a smaller count would broadcast unnoticed."""
    expected = tf.compat.dimension_value(transformed.shape[-1])
    got = tf.compat.dimension_value(shift.shape[-1])
    if got is not None and got != expected:
      raise ValueError(
          f"{type(self).__name__}: `{self._network_name}` must map its "
          f"input of shape {conditioner.shape} to shape "
          f"{transformed.shape[:-1].concatenate(self._output_channels(expected))}"
          f" ({self._output_description}, C // 2 = {expected}); got shape "
          f"{shift.shape[:-1].concatenate(self._output_channels(got))}.")

  def _split(self, x, arg_name):
    """`(conditioning, transformed)` channels of `x`: the first
    `C - C // 2` condition the last `C // 2`."""
    channels = self._static_channels(x, arg_name)
    return tf.split(x, [channels - channels // 2, channels // 2], axis=-1)

  def _join(self, conditioning, transformed):
    return tf.concat([conditioning, transformed], axis=-1)

  def _static_channels(self, x, arg_name):
    if x.shape.rank is not None and x.shape.rank < 3:
      raise ValueError(
          f"{type(self).__name__}: `{arg_name}` must have shape "
          f"[..., H, W, C] (rank >= 3); got shape {x.shape}.")
    channels = tf.compat.dimension_value(x.shape[-1]) if x.shape.rank else None
    if channels is None or channels < 2:
      raise ValueError(
          f"{type(self).__name__}: `{arg_name}` needs a static channel axis "
          f"of size >= 2 (C - C // 2 channels condition the other C // 2); "
          f"got shape {x.shape}.")
    return channels

  def _log_det(self, transformed, log_scale):
    if log_scale is None:  # additive: volume-preserving
      return tf.zeros(tf.shape(transformed)[:-3], transformed.dtype)
    return tf.reduce_sum(log_scale, axis=[-3, -2, -1])

  def _augmented_forward(self, x):
    x_a, x_b = self._split(x, "x")
    shift, log_scale = self._shift_and_log_scale(x_a)
    self._check_network_channels(x_a, x_b, shift)
    y_b = x_b + shift
    if log_scale is not None:
      y_b *= tf.exp(log_scale)
    fldj = self._log_det(x_b, log_scale)
    return self._join(x_a, y_b), {"fldj": fldj, "ildj": -fldj}

  def _augmented_inverse(self, y):
    y_a, y_b = self._split(y, "y")
    shift, log_scale = self._shift_and_log_scale(y_a)
    self._check_network_channels(y_a, y_b, shift)
    x_b = y_b if log_scale is None else y_b * tf.exp(-log_scale)
    ildj = -self._log_det(y_b, log_scale)
    return self._join(y_a, x_b - shift), {"ildj": ildj, "fldj": -ildj}

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
