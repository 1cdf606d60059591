"""Importance-sampled log-likelihood of a latent-variable model, as papers
report `-log p(x)` (Burda et al. 2016; Rezende & Mohamed 2015, Table 2)."""

import math

import numpy as np
import tensorflow as tf
import tqdm.auto as tqdm

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
  """
  num_images = len(images)
  if num_images == 0:
    raise ValueError("importance_log_likelihood: `images` is empty.")
  if int(num_samples) < 1 or int(batch_size) < 1 or int(max_rows) < 1:
    raise ValueError(
        f"importance_log_likelihood: num_samples, batch_size and max_rows must "
        f"be >= 1; got {num_samples}, {batch_size}, {max_rows}.")
  batch_size = min(int(batch_size), num_images)
  chunk = max(1, min(int(num_samples), int(max_rows) // batch_size))
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
        log_sum = np.logaddexp(log_sum, chunk_log_sum_exp(
            batch, tf.constant(num), tf.constant(chunk_seed, tf.int64)).numpy())
        bar.update()
      result[start:start + len(batch)] = log_sum - math.log(num_samples)
  return result
