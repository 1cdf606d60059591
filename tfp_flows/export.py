"""SavedModels for TF Serving: `GlowModel` and `FlowVAE` with named signatures.

```none
saved_models/<name>/<version>/     the layout TF Serving watches (it serves
    saved_model.pb                 the highest version in <name>/)
    variables/
```

Signatures (`serving_default` is the first of each list):

```none
GlowModel  log_prob  images uint8 [N, H, W, C]  -> log_prob (nats), bits_per_dim  [N]
           sample    num_samples int32 [], temperature float32 []
                                                -> images uint8 [num_samples, H, W, C]
           encode    images uint8 [N, H, W, C]  -> latents float32 [N, D]
           decode    latents float32 [N, D]     -> images uint8 [N, H, W, C]
FlowVAE    elbo      images uint8 [N, H, W, C]  -> elbo (nats) [N]
           encode    images uint8 [N, H, W, C]  -> mean, latents float32 [N, D]
           decode    latents float32 [N, D]     -> probs float32 [N, H, W, C]
           sample    num_samples int32 []       -> images uint8 (binary), probs
```

The graphs hold only core TensorFlow ops: loading and serving them needs
neither `tfp_flows`, TensorFlow Probability nor Keras. Randomness in
`log_prob`, `elbo` and `encode` is stateless with a fixed seed (the same
numbers as the model's own methods with their default `seed=0`), so
repeated requests agree; `sample` draws fresh latents on every call.

Signatures speak float32 whatever the model's dtype policy: a
`mixed_float16` / `mixed_bfloat16` model computes its likelihood in float32
anyway, and a `float64` model's float outputs are rounded to float32 here
(its float32 inputs are cast up by the model).

Each model writes its own signatures (`serving_endpoints()`, in its
module), with the request checks below; this module writes them out.
Keras' `ExportArchive` writes the archive: it tracks exactly the model's
variables (the Keras objects themselves are not saved).
"""

import os
import pathlib
import shutil

import keras
import tensorflow as tf

__all__ = ["checked_num_samples", "checked_shape", "export_saved_model",
           "images_spec", "latents_spec", "next_version"]


def next_version(export_dir):
  """One more than the highest numbered version in `export_dir` (1 if none)."""
  export_dir = pathlib.Path(export_dir)
  versions = [int(p.name) for p in export_dir.glob("*")
              if p.is_dir() and p.name.isdigit()]
  return max(versions, default=0) + 1


def export_saved_model(model, export_dir, version=None):
  """Writes `model` as SavedModel version `version` under `export_dir`.

  Args:
    model: a model with `serving_endpoints()` (`GlowModel`, with ActNorm
      initialized, i.e. trained or having seen data; `FlowVAE`).
    export_dir: the model's folder, e.g. `saved_models/glow_mnist`.
    version: a positive integer; default `next_version(export_dir)`.

  Returns:
    The path of the version folder written.

  The archive is written beside the target and renamed into place, so a
  server polling `export_dir` never sees a half-written version, and an
  existing version is never overwritten.
  """
  if not callable(getattr(model, "serving_endpoints", None)):
    raise TypeError(f"export_saved_model: expected a GlowModel or FlowVAE "
                    f"(a model with serving_endpoints()); got "
                    f"{type(model).__name__}.")
  endpoints = model.serving_endpoints()
  export_dir = pathlib.Path(export_dir)
  version = next_version(export_dir) if version is None else version
  if not isinstance(version, int) or version < 1:
    raise ValueError(f"export_saved_model: version must be a positive "
                     f"integer; got {version!r}.")
  target = export_dir / str(version)
  if target.exists():
    raise FileExistsError(f"export_saved_model: {target} exists; versions "
                          f"are never overwritten (pass another version).")

  archive = keras.export.ExportArchive()
  archive.track(model)
  for name, (fn, input_signature) in endpoints.items():
    archive.add_endpoint(name, _float32_outputs(fn),
                         input_signature=input_signature)
  export_dir.mkdir(parents=True, exist_ok=True)
  # A dot-name: TF Serving only loads all-digit folder names.
  partial = export_dir / f".partial-{version}-{os.getpid()}"
  shutil.rmtree(partial, ignore_errors=True)
  try:
    archive.write_out(str(partial), verbose=False)
    os.rename(partial, target)
  finally:
    shutil.rmtree(partial, ignore_errors=True)
  return target


def _float32_outputs(fn):
  """`fn` with its floating outputs as float32 (the module docstring)."""

  def endpoint(*args):
    return {name: tf.cast(value, tf.float32) if value.dtype.is_floating
            else value for name, value in fn(*args).items()}

  return endpoint


def images_spec(image_shape):
  """The signature input `images`: uint8 `[N, *image_shape]`."""
  return tf.TensorSpec([None, *image_shape], tf.uint8, name="images")


def latents_spec(dim):
  """The signature input `latents`: float32 `[N, dim]`."""
  return tf.TensorSpec([None, dim], tf.float32, name="latents")


def checked_shape(tensor, trailing_shape, what):
  """`tensor` once it has shape `[N, *trailing_shape]`; otherwise the request
  fails with a message naming the input and the expected shape (the
  signature's shape is not enforced when it is called, and the first op
  that notices would name a reshape deep inside the flow)."""
  message = f"{what} must have shape {list(('N',) + tuple(trailing_shape))}"
  message = message.replace("'", "")
  # The runtime shape, not the static one: the signature's static shape is
  # what a request claims, not what it holds, and anything computed from the
  # static rank (tf.rank, tf.size of the shape) is folded into a constant.
  # So compare the runtime shape padded with -1 (never a dimension) to a
  # fixed length: wrong ranks then differ in some position too.
  shape = tf.shape(tensor)
  length = len(trailing_shape) + 8
  padded = tf.concat([shape, -tf.ones([length], tf.int32)], 0)[1:length]
  expected = tf.constant(
      list(trailing_shape) + [-1] * (length - 1 - len(trailing_shape)),
      tf.int32)
  has_shape = tf.reduce_all(tf.equal(padded, expected))
  with tf.control_dependencies([tf.debugging.Assert(
      has_shape, [message + "; got", shape], summarize=8)]):
    return tf.identity(tensor)


def checked_num_samples(num_samples):
  """`num_samples`, or a request error unless it is >= 0."""
  with tf.control_dependencies([tf.debugging.assert_non_negative(
      num_samples, message="sample: num_samples must be >= 0")]):
    return tf.identity(num_samples)
