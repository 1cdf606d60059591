"""Importance-sampled log-likelihood of a latent-variable model, as papers
report `-log p(x)` (Burda et al. 2016; Rezende & Mohamed 2015, Table 2)."""

import math

import numpy as np
import tensorflow as tf
import tqdm.auto as tqdm

from tfp_flows.validation import positive_int

__all__ = ["importance_log_likelihood"]


def importance_log_likelihood(model, images, num_samples=5000, batch_size=100,
                              max_rows=50_000, seed=0, progress=True):
  r"""Per-example `log p(x)` in nats, by importance sampling from `q(z|x)`.

  ```none
  log p(x) ~= logsumexp_s [log p(x|z_s) + log p(z_s) - log q(z_s|x)] - log S,
  z_s ~ q(z|x),  s = 1..S
  ```

  A lower bound in expectation that tightens as `S` grows (`S = 1` is the
  ELBO). Work runs in chunks of at most `max_rows` decoder evaluations
  (`images_per_batch x samples_per_chunk`), so memory stays bounded for any
  `S`; the running log-sum-exp is kept in float64.

  Args:
    model: has `log_importance_weights(images, num_samples, seed)` returning
      `[num_samples, N]` log-weights (e.g. `tfp_flows.models.FlowVAE`).
    images: `[N, ...]` array or tensor.
    num_samples: `S`, samples per image.
    batch_size: images per batch.
    max_rows: bound on `batch_size x samples per chunk`.
    seed: stateless seed; the estimate is a deterministic function of it.
    progress: show a progress bar.

  Returns:
    float64 NumPy array `[N]` of `log p(x)` estimates.

  Raises:
    TypeError: `model` lacks `log_importance_weights`, or a count is not an
      int.
    ValueError: a count is < 1; `images` is empty, not `[N, ...]`, of the
      wrong shape for `model.image_shape` (when the model has one), or holds
      NaN or inf; or the model rejects a batch (e.g. FlowVAE and non-binary
      pixels), reported with the rows of that batch.
  """
  if not callable(getattr(model, "log_importance_weights", None)):
    raise TypeError(
        "importance_log_likelihood: model must have a "
        "log_importance_weights(images, num_samples, seed) method (e.g. "
        f"tfp_flows.models.FlowVAE); got {type(model).__name__}.")
  where = "importance_log_likelihood"
  num_samples = positive_int(num_samples, "num_samples", where)
  batch_size = positive_int(batch_size, "batch_size", where)
  max_rows = positive_int(max_rows, "max_rows", where)
  _check_images(model, images)
  num_images = len(images)
  batch_size = min(batch_size, num_images)
  chunk = max(1, min(num_samples, max_rows // batch_size))
  num_chunks = math.ceil(num_samples / chunk)

  @tf.function(reduce_retracing=True)
  def chunk_log_sum_exp(batch, num, chunk_seed):
    log_weights = model.log_importance_weights(batch, num, seed=chunk_seed)
    return tf.reduce_logsumexp(log_weights, axis=0)

  result = np.empty(num_images, np.float64)
  num_batches = math.ceil(num_images / batch_size)
  with tqdm.tqdm(total=num_batches * num_chunks, disable=not progress,
                 desc=f"log p(x), S={num_samples}", unit="chunk") as bar:
    for start in range(0, num_images, batch_size):
      batch = tf.convert_to_tensor(images[start:start + batch_size])
      log_sum = np.full(len(batch), -np.inf)
      for c in range(num_chunks):
        num = min(chunk, num_samples - c * chunk)
        # A distinct stateless seed per (batch, chunk): no sample reused.
        chunk_seed = seed * 1_000_003 + start * num_chunks + c
        try:
          log_sum_exp = chunk_log_sum_exp(
              batch, tf.constant(num), tf.constant(chunk_seed, tf.int64))
        except tf.errors.InvalidArgumentError as error:
          # A model's run-time input check fails inside the tf.function;
          # say which rows, without the graph's traceback in the message.
          raise ValueError(
              f"importance_log_likelihood: the model rejected images"
              f"[{start}:{start + len(batch)}]: "
              f"{_assertion_text(error.message)}") from error
        log_sum = np.logaddexp(log_sum, log_sum_exp.numpy())
        bar.update()
      result[start:start + len(batch)] = log_sum - math.log(num_samples)
  return result


def _check_images(model, images):
  """Shape and finiteness of `images`: static, and one host-side pass over
  the values (negligible beside `S` decoder evaluations per image)."""
  shape = tuple(getattr(images, "shape", np.shape(images)))
  if len(shape) == 0:
    raise ValueError("importance_log_likelihood: images must have shape "
                     "[N, ...]; got a scalar.")
  if shape[0] == 0:
    raise ValueError("importance_log_likelihood: `images` is empty "
                     f"(shape {shape}).")
  image_shape = getattr(model, "image_shape", None)
  if image_shape is not None and tuple(shape[1:]) != tuple(image_shape):
    raise ValueError(
        f"importance_log_likelihood: the model takes images of shape "
        f"[N, {', '.join(map(str, image_shape))}]; got shape {shape}.")
  values = np.asarray(images)
  if values.dtype.kind == "f":
    finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if not finite.all():
      bad = np.flatnonzero(~finite)
      raise ValueError(
          f"importance_log_likelihood: images hold NaN or inf (image indices "
          f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}).")


def _assertion_text(message):
  """The first line of a failed TensorFlow assertion's message."""
  for line in message.splitlines():
    if "assertion failed" in line:
      return line.strip()
  return message.splitlines()[0] if message else message
