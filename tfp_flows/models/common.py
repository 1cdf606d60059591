"""Pieces the models share: the optimizer step of a custom `train_step`,
the annealing schedule, the reparametrized diagonal Gaussian, and unpacking
Keras' `data` argument."""

import math

import keras
import tensorflow as tf

__all__ = ["HALF_LOG_2PI", "annealed_beta", "build_optimizer",
           "diagonal_normal_sample", "global_batch_noise", "images_of",
           "add_skipped_steps", "check_values", "checked_latents",
           "metric_logs", "minimize", "prepare_fit",
           "skip_symbolic_build", "step_seed"]

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


def minimize(model, tape, loss):
  """One `model.optimizer` step on the per-replica mean `loss` on `tape`,
  unless the loss or a gradient is not finite.

  Under a distribution strategy the optimizer sums the replicas' gradients;
  dividing each by the number of replicas makes the sum the gradient of the
  global-batch mean (Keras' own `train_step` scales its loss for this too).

  A step whose loss or gradients hold a NaN or inf on any replica is not
  applied on any: the weights and the optimizer state (including its step
  counter) stay as they were, and `model.skipped_steps` counts it. So no
  non-finite value ever reaches the weights; `NonFiniteGuard` (added by the
  models' `fit`) then stops training or lets it go on.

  Returns:
    Boolean scalar: whether the step was applied.
  """
  variables = model.trainable_variables
  strategy = tf.distribute.get_strategy()
  replicas = strategy.num_replicas_in_sync
  # Seeding the backward pass with 1/replicas differentiates loss / replicas
  # without recording the division on the caller's tape.
  gradients = tape.gradient(loss, variables,
                            output_gradients=tf.ones_like(loss) / replicas)
  finite = tf.reduce_all(
      [tf.reduce_all(tf.math.is_finite(loss))] +
      [tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None])
  context = tf.distribute.get_replica_context()
  if replicas > 1:
    # One decision for every replica: the optimizer's all-reduce would carry
    # one replica's NaN to all of them.
    # (ReduceOp has no MIN: count the replicas that are not finite.)
    not_finite = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                    1. - tf.cast(finite, tf.float32))
    finite = tf.equal(not_finite, 0.)

  def apply(gradients):
    model.optimizer.apply_gradients(zip(gradients, variables))

  def skip():
    model.skipped_steps.assign_add(1)

  # Under any strategy but the default one (even with a single replica),
  # `apply_gradients` may synchronize through `merge_call`.
  if (not tf.distribute.has_strategy() or
      tf.__internal__.distribute.strategy_supports_no_merge_call()):
    tf.cond(finite, lambda: apply(gradients), skip)
  else:
    # The optimizer's update calls `merge_call`, which a `cond` branch in a
    # replica context cannot; decide in the cross-replica context, as Keras'
    # LossScaleOptimizer does for the same reason. The gradients go through
    # `merge_call`'s arguments to arrive there as per-replica values.
    def decide(distribution, finite, gradients):
      def apply_on_each_replica():
        distribution.extended.call_for_each_replica(apply, args=(gradients,))
      tf.cond(distribution.experimental_local_results(finite)[0],
              apply_on_each_replica, skip)
    context.merge_call(decide, args=(finite, gradients))
  return finite


def add_skipped_steps(model):
  """The model's count of training steps not applied (non-finite loss or
  gradients): a non-trainable weight, so checkpoints keep it."""
  return model.add_weight(shape=(), dtype="int64", initializer="zeros",
                          trainable=False, aggregation="only_first_replica",
                          name="skipped_steps")


def prepare_fit(model, x, kwargs, non_finite):
  """What the models' `fit` does before Keras' own: builds the optimizer,
  leaves shuffling to a `tf.data.Dataset`, and puts a `NonFiniteGuard`
  first among the callbacks (before any checkpointing callback, so a
  checkpoint is written only after the guard has seen the epoch)."""
  from tfp_flows.callbacks import NonFiniteGuard  # callbacks import models

  build_optimizer(model)
  if isinstance(x, tf.data.Dataset):
    kwargs.setdefault("shuffle", False)  # a Dataset shuffles itself
  callbacks = list(kwargs.get("callbacks") or [])
  if not any(isinstance(c, NonFiniteGuard) for c in callbacks):
    callbacks.insert(0, NonFiniteGuard(non_finite))
  kwargs["callbacks"] = callbacks
  return kwargs


def build_optimizer(model):
  """Creates the optimizer's slot variables before the first `fit` step.

  Created inside the first step instead, they make `tf.function` trace
  `train_step` twice (once to lift the new variables): twice the tracing
  time and more peak memory (docs/RESULTS.md, bench_glow.py).
  """
  if model.optimizer is not None and not model.optimizer.built:
    # In the model's strategy: `fit` may be called outside `scope()`.
    with model.distribute_strategy.scope():
      model.optimizer.build(model.trainable_variables)


def global_batch_noise(sample, batch_size, event_shape, seed):
  """This replica's rows of noise drawn for the whole global batch.

  `sample(shape, seed)` is a stateless sampler (`tf.random.stateless_normal`
  or `stateless_uniform`). Without a strategy it draws `[batch_size,
  *event_shape]`. Under one, every replica draws the same noise for the
  global batch from the same `seed` and keeps the rows of its own examples,
  so a step is the same computation as on one device with the same global
  batch: the replicas' noise neither repeats across replicas nor depends on
  their number. The replicas' batch sizes are gathered (the last batch of an
  epoch may split unevenly).
  """
  seed = tf.cast(seed, tf.int64)
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  context = tf.distribute.get_replica_context()
  if replicas == 1 or context is None:
    return sample(tf.concat([[batch_size], event_shape], 0), seed=seed)
  sizes = context.all_gather(tf.reshape(tf.cast(batch_size, tf.int32), [1]),
                             axis=0)
  offset = tf.reduce_sum(sizes[:context.replica_id_in_sync_group])
  noise = sample(tf.concat([[tf.reduce_sum(sizes)], event_shape], 0),
                 seed=seed)
  return noise[offset:offset + batch_size]


def step_seed(seed, step):
  """The stateless seed `[seed, step]` of training step `step`: the noise of a
  step is a function of the step alone, so a resumed run draws what an
  uninterrupted one would have."""
  return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])


def skip_symbolic_build(model, iterator=None, data_batch=None):
  """`_maybe_symbolic_build` for models built whole in `__init__`.

  Keras' TensorFlow trainer, under a distribution strategy, takes the first
  batch, averages it across replicas and builds the model symbolically from
  it. Our models have every weight from `__init__` and use no compiled
  loss or metrics, so there is nothing to build (their `fit` builds the
  optimizer); and the average fails for uint8 images under
  `MultiWorkerMirroredStrategy`, whose collectives take no uint8. A model
  that is somehow not built falls back to Keras' path.
  """
  if not model.built:
    return keras.Model._maybe_symbolic_build(model, iterator=iterator,
                                            data_batch=data_batch)
  return None


def metric_logs(metrics, **values):
  """What a `train_step` / `test_step` returns: `{name: result}` of the
  metrics, and `values` (scalars) beside them.

  Across workers, Keras 3's TensorFlow trainer reduces each returned value
  with `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars
  (tensorflow/tensorflow#72388); there the results go out as vectors of one
  element, which that reduction turns back into scalars.
  """
  logs = {metric.name: metric.result() for metric in metrics}
  logs.update({name: tf.convert_to_tensor(value)
               for name, value in values.items()})
  strategy = tf.distribute.get_strategy()
  if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
      strategy.extended._in_multi_worker_mode()):  # Keras' own test
    logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
  return logs


def check_values(tensor, ok, message, culprits):
  """`tensor`, once the boolean scalar `ok` holds.

  Otherwise eagerly a `ValueError`, and in a graph (`fit`, exports) an
  `InvalidArgumentError`, each starting with `message` and showing up to
  five offending values from `culprits`.
  """
  if tf.executing_eagerly():
    if not bool(ok):
      raise ValueError(f"{message}; got {culprits.numpy()[:5].tolist()}.")
    return tensor
  with tf.control_dependencies([tf.debugging.Assert(
      ok, [f"{message}; got", culprits[:5]], summarize=5)]):
    return tf.identity(tensor)


def checked_latents(latents, dim, model_name):
  """Float32 latents `[N, dim]`, finite, or an error saying what is wrong."""
  latents = tf.convert_to_tensor(latents, tf.float32)
  if latents.shape.rank is not None and (
      latents.shape.rank != 2 or latents.shape[-1] not in (None, dim)):
    raise ValueError(f"{model_name}: latents must have shape [N, {dim}]; got "
                     f"{latents.shape}.")
  finite = tf.math.is_finite(latents)
  return check_values(latents, tf.reduce_all(finite),
                      f"{model_name}: latents must be finite",
                      tf.boolean_mask(latents, tf.logical_not(finite)))
