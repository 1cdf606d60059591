"""`FlowModel`: the training mechanics every flow model shares.

A model subclasses `FlowModel` and writes what is its own:

```none
metric_names                  class attribute: the Mean metrics it reports,
                              "loss" first
check_batch(data)             the checked inputs of a Keras batch (eager
                              errors and graph assertions; runs outside XLA)
noise_spec(batch)             (stateless sampler, batch size, event shape)
                              of its per-step noise, or None
objective(batch, noise, training)
                              (scalar loss, {metric name: per-example or
                              scalar values})
serving_endpoints()           {signature: (fn, input_signature)}, what
                              tfp_flows.export writes
initialize_from(batch)        only with needs_initialization = True: the
                              data-dependent initialization (ActNorm)
```

and the base class does the rest, the same way for every model: `fit` (the
data-dependent initialization on the first global batch, the optimizer built
before the first step, `non_finite=` and its `NonFiniteGuard`), a
`train_step` that applies a step only if its loss and gradients are finite on
every replica (`skipped_steps` counts the others), noise for the global batch
from the stateless seed `[seed, step]`, metrics that a skipped step leaves
alone, `compile(jit_compile=...)` that compiles the step's arithmetic but
never its input checks, and the workarounds distribution needs. Every
private Keras/TensorFlow hook is in `tfp_flows._internal`.
"""

import functools
import inspect

import keras
import tensorflow as tf

from tfp_flows import _internal
from tfp_flows.callbacks import NonFiniteGuard, uses_ema

__all__ = ["FlowModel", "global_batch_noise", "images_of", "step_seed"]


class FlowModel(_internal.KerasTrainerHooks, keras.Model):
  """Base class of the flow models: a Keras 3 model whose subclasses write
  their objective, sampling and serving contract (module docstring).

  Dtypes follow Keras' dtype policy (the global one, or `dtype=` here):
  under `"float64"` everything is float64; under `"mixed_float16"` and
  `"mixed_bfloat16"` the networks compute in the low precision and
  everything a likelihood depends on is kept in the variables' float32
  (`likelihood_dtype`), and under `"mixed_float16"` `compile` wraps the
  optimizer in Keras' `LossScaleOptimizer`. A policy that would keep the
  likelihood itself in 16 bits (`"float16"`, `"bfloat16"`) is refused.

  Args:
    seed: seeds the training noise, drawn for step `t` from the stateless
      seed `[seed, t]`: a resumed run and a run under a distribution
      strategy draw what an uninterrupted single-device run would.
  """

  #: The `keras.metrics.Mean` trackers `train_step` / `test_step` report,
  #: each `{name}_tracker`; `objective` returns a value for each.
  metric_names = ("loss",)
  #: What `compile(jit_compile="auto")` means for this model when it runs
  #: outside a distribution strategy: XLA for the step's arithmetic or not.
  jit_compile_by_default = False
  #: Whether `initialize_from(batch)` must run once before training.
  needs_initialization = False

  def __init__(self, seed=0, **kwargs):
    super().__init__(**kwargs)
    _check_dtype_policy(self)
    self.seed = seed
    for name in self.metric_names:
      setattr(self, f"{name}_tracker", keras.metrics.Mean(name=name))
    # Non-trainable weights, so checkpoints keep them. (Their order is that
    # of `.keras` files saved before this base class existed.)
    if self.needs_initialization:
      self.initialized = self.add_weight(
          shape=(), initializer="zeros", trainable=False, name="initialized")
    self.skipped_steps = self.add_weight(
        shape=(), dtype="int64", initializer="zeros", trainable=False,
        aggregation="only_first_replica", name="skipped_steps")
    self._jit_compile_arithmetic = False

  def get_config(self):
    return {**super().get_config(), "seed": self.seed}

  @property
  def likelihood_dtype(self):
    """The dtype of everything a likelihood depends on (flow steps,
    log-dets, log-densities, noise, the loss): the variables' dtype, so
    float32 under the `mixed_*` policies, whose networks compute in 16 bits
    and have their outputs cast to this."""
    return tf.as_dtype(self.variable_dtype)

  # What a subclass writes ----------------------------------------------------

  def check_batch(self, data):
    """The model's inputs from a Keras `data` batch, checked."""
    return images_of(data)

  def noise_spec(self, batch):
    """`(sampler, batch_size, event_shape)` of a step's noise, `sampler` a
    stateless TensorFlow sampler (`tf.random.stateless_normal`); `None`: no
    noise."""
    return None

  def objective(self, batch, noise, training):
    """`(loss, values)`: the scalar loss of `batch` (the mean over this
    replica's examples) and `{name: values}` for every name in
    `metric_names` (per-example `[N]` or a scalar)."""
    raise NotImplementedError

  def initialize_from(self, batch):
    """Data-dependent initialization from a checked batch (eager, in
    cross-replica context); models with `needs_initialization`."""
    raise NotImplementedError

  def serving_endpoints(self):
    """`{signature name: (fn, [tf.TensorSpec, ...])}` for
    `tfp_flows.export.export_saved_model`, `serving_default` first."""
    raise NotImplementedError(
        f"{type(self).__name__} defines no serving signatures.")

  # Data-dependent initialization ---------------------------------------------

  @property
  def is_initialized(self):
    if not self.needs_initialization:
      return True
    return bool(self.initialized.numpy() > 0.5)

  def initialize(self, batch):
    """The data-dependent initialization from `batch`, once (a no-op after).

    Called in cross-replica context (as `fit` does, on the first global
    batch), its assignments reach every replica: all start from the same
    statistics.
    """
    if self.is_initialized:
      return
    self.initialize_from(self.check_batch(batch))
    self.initialized.assign(1.)

  def assert_initialized(self):
    """An op that fails, saying what to do, unless initialized."""
    if not self.needs_initialization:
      return tf.no_op()
    initialized = self.initialized.value
    return tf.debugging.assert_equal(
        initialized, tf.ones_like(initialized),
        message=f"{type(self).__name__} is not initialized (data-dependent "
                f"initialization). Call model.initialize(batch), fit, or "
                f"log_prob eagerly on a batch of data first.")

  # Training ------------------------------------------------------------------

  @property
  def metrics(self):
    return [getattr(self, f"{name}_tracker") for name in self.metric_names]

  def compile(self, *args, jit_compile="auto", **kwargs):
    """Keras' `compile`; `jit_compile` XLA-compiles the training step's
    arithmetic but not its input checks or noise.

    Keras' own `jit_compile` compiles all of `train_step`, and XLA drops
    `tf.debugging.Assert` (bad images would train silently) and draws other
    stateless random numbers than TensorFlow for the same runtime seed. So
    Keras compiles nothing here, and `train_step` checks the batch and draws
    the noise in TensorFlow, then runs the objective, its gradient and the
    optimizer update as one XLA function. `"auto"` means
    `jit_compile_by_default`; never under a distribution strategy (whose
    `merge_call`s XLA cannot hold) or with `run_eagerly`.

    `steps_per_execution` (Keras') > 1 runs that many steps per call, which
    pays for short steps (FlowVAE's; docs/RESULTS.md); it is refused on more
    than one replica, where Keras' loop fails (`_internal`).
    """
    # The user's value goes into the compile config, so a loaded model
    # compiles as this one; `jit_compile` (public) then turns Keras' own off.
    super().compile(*args, jit_compile=jit_compile, **kwargs)
    replicas = self.distribute_strategy.num_replicas_in_sync
    if self.steps_per_execution > 1 and replicas > 1:
      raise ValueError(
          f"{type(self).__name__}.compile: steps_per_execution="
          f"{self.steps_per_execution} cannot run on {replicas} replicas: "
          f"Keras' loop of steps fails there (" +
          _internal.KERAS_ISSUE_MULTI_REPLICA_STEPS_PER_EXECUTION +
          "). Use steps_per_execution=1 under a distribution strategy.")
    self.jit_compile = False
    self._jit_compile_arithmetic = not self.run_eagerly and (
        self.jit_compile_by_default if jit_compile == "auto"
        else bool(jit_compile))

  def compile_from_config(self, config):
    # Keras does not call an overridden `compile` when loading a model.
    self.compile(**keras.saving.deserialize_keras_object(config))
    self._build_optimizer()

  def fit(self, x=None, *args, non_finite="stop", **kwargs):
    """Keras' `fit`, after the data-dependent initialization (on the first
    batch) and with the optimizer built before the first step.

    With an optimizer that keeps a moving average of the weights
    (`use_ema`), validation scores the average (Keras' `SwapEMAWeights`),
    and Keras writes it into the weights when `fit` ends.

    `non_finite`: what to do after a step with a non-finite loss or gradient
    (never applied to the weights): `"stop"` raises
    `tfp_flows.callbacks.NonFiniteLossError`, `"skip"` goes on and counts it
    (`skipped_steps` in the logs). A `NonFiniteGuard` goes first among the
    callbacks, so a checkpointing callback writes only after it has seen
    the epoch.
    """
    arguments = inspect.signature(keras.Model.fit).bind(
        self, x, *args, **kwargs).arguments
    arguments.pop("self")
    self._check_steps_per_execution(arguments)
    if not self.is_initialized:
      self.initialize(_first_batch(x, arguments.get("y"),
                                   arguments.get("batch_size")))
    self._build_optimizer()
    if isinstance(x, tf.data.Dataset):
      arguments.setdefault("shuffle", False)  # a Dataset shuffles itself
    callbacks = list(arguments.get("callbacks") or [])
    if not any(isinstance(c, NonFiniteGuard) for c in callbacks):
      callbacks.insert(0, NonFiniteGuard(non_finite))
    if uses_ema(self) and not any(
        isinstance(c, keras.callbacks.SwapEMAWeights) for c in callbacks):
      # Validation scores the weights `fit` will leave (Keras writes the
      # average into them when it ends).
      callbacks.append(keras.callbacks.SwapEMAWeights())
    arguments["callbacks"] = callbacks
    return super().fit(**arguments)

  def _check_steps_per_execution(self, arguments):
    """Refuses a step count that Keras would round up to whole groups.

    With `compile(steps_per_execution=N)`, Keras runs N steps a call, and
    with `steps_per_epoch` (or `validation_steps`) not a multiple of N it
    runs whole groups past it on a repeating dataset, silently: the epochs
    and the schedule (annealing, learning rate) would no longer be the ones
    asked for. A finite dataset ends a group early and needs no check.
    """
    group = int(getattr(self, "steps_per_execution", 1) or 1)
    for name in ("steps_per_epoch", "validation_steps"):
      steps = arguments.get(name)
      if steps and group > 1 and steps % group:
        raise ValueError(
            f"{type(self).__name__}.fit: {name}={steps} is not a multiple of "
            f"compile(steps_per_execution={group}); Keras would run "
            f"{-(-steps // group) * group} steps in its place. Pick a "
            f"multiple, or a steps_per_execution that divides it.")

  def _build_optimizer(self):
    """Creates the optimizer's slot variables before the first `fit` step.

    Created inside the first step instead, they make `tf.function` trace
    `train_step` twice (once to lift the new variables): twice the tracing
    time and more peak memory (docs/RESULTS.md, bench_glow.py).
    """
    if self.optimizer is not None and not self.optimizer.built:
      # In the model's strategy: `fit` may be called outside `scope()`.
      with self.distribute_strategy.scope():
        self.optimizer.build(self.trainable_variables)

  def step_noise(self, batch, step):
    """This replica's rows of the noise of training step `step` (-1 for
    evaluation), drawn for the global batch (`global_batch_noise`)."""
    spec = self.noise_spec(batch)
    if spec is None:
      return None
    sampler, batch_size, event_shape = spec
    return global_batch_noise(
        functools.partial(sampler, dtype=self.likelihood_dtype), batch_size,
        event_shape, step_seed(self.seed, step))

  def train_step(self, data):
    # Outside XLA: XLA would drop the checks' Asserts, and its stateless
    # random numbers differ from TensorFlow's for the same seed (a run's
    # noise would then depend on the compiler).
    batch = self.check_batch(data)
    noise = self.step_noise(batch, self.optimizer.iterations)
    arithmetic = self._train_step_arithmetic
    if self._jit_compile_arithmetic and not tf.distribute.has_strategy():
      # Created per trace of `train_step`, not kept on the model, so no
      # SavedModel export picks up an XLA function.
      arithmetic = tf.function(arithmetic, jit_compile=True)
    return arithmetic(batch, noise)

  def _train_step_arithmetic(self, batch, noise):
    with tf.GradientTape() as tape, tf.control_dependencies(
        [self.assert_initialized()]):
      loss, values = self.objective(batch, noise, training=True)
    applied = self._apply_if_finite(tape, loss)
    self._update_metrics(values, applied)
    return self._logs(skipped_steps=self.skipped_steps.value)

  def test_step(self, data):
    batch = self.check_batch(data)
    # Step -1: evaluation noise that no training step draws.
    _, values = self.objective(batch, self.step_noise(batch, -1),
                               training=False)
    self._update_metrics(values)
    return self._logs()

  def _apply_if_finite(self, tape, loss):
    """One optimizer step on the per-replica mean `loss` on `tape`, unless
    the loss or a gradient is not finite on some replica.

    Under a distribution strategy the optimizer sums the replicas'
    gradients; dividing each by the number of replicas makes the sum the
    gradient of the global-batch mean (Keras' own `train_step` scales its
    loss for this too).

    A step whose loss or gradients hold a NaN or inf on any replica is not
    applied on any: the weights and the optimizer state (including its step
    counter) stay as they were, and `skipped_steps` counts it. So no
    non-finite value ever reaches the weights; `NonFiniteGuard` then stops
    training or lets it go on.

    With Keras' `LossScaleOptimizer` (`mixed_float16`) the gradients are of
    the scaled loss, and a non-finite gradient of a finite loss is an
    overflow of the scale: the loss scaler's business (it skips the step
    and halves the scale), not a skipped step. Only a non-finite loss is.

    Returns:
      Boolean scalar: whether the step's values count (applied, or left to
      the loss scaler).
    """
    variables = self.trainable_variables
    strategy = tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    loss_scaled = isinstance(self.optimizer,
                             keras.optimizers.LossScaleOptimizer)
    # Seeding the backward pass with scale/replicas differentiates
    # scale * loss / replicas without recording it on the caller's tape.
    output_gradient = tf.ones_like(loss) / replicas
    if loss_scaled:
      output_gradient *= tf.cast(self.optimizer.scale_loss(1.), loss.dtype)
    gradients = tape.gradient(loss, variables,
                              output_gradients=output_gradient)
    not_finite = 1. - tf.cast(tf.stack([
        tf.reduce_all(tf.math.is_finite(loss)),
        tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                       for g in gradients if g is not None])]), tf.float32)
    context = tf.distribute.get_replica_context()
    if replicas > 1:
      # One decision for every replica: the optimizer's all-reduce would
      # carry one replica's NaN to all of them. (ReduceOp has no MIN: count
      # the replicas that are not finite.)
      not_finite = context.all_reduce(tf.distribute.ReduceOp.SUM, not_finite)
    loss_finite, gradients_finite = tf.unstack(tf.equal(not_finite, 0.))
    if not loss_scaled:
      finite = loss_finite & gradients_finite
    else:
      finite = loss_finite
      if replicas > 1:
        # The loss scaler decides on each replica's own gradients (or the
        # first replica's): make every replica's as finite as the worst.
        overflow = tf.where(gradients_finite, 0., float("nan"))
        gradients = [None if g is None else g + tf.cast(overflow, g.dtype)
                     for g in gradients]

    def apply(gradients):
      self.optimizer.apply_gradients(zip(gradients, variables))

    def skip():
      self.skipped_steps.assign_add(1)

    # Under any strategy but the default one (even with a single replica),
    # `apply_gradients` may synchronize through `merge_call`.
    if (not tf.distribute.has_strategy() or
        _internal.strategy_supports_no_merge_call()):
      tf.cond(finite, lambda: apply(gradients), skip)
    else:
      # The optimizer's update calls `merge_call`, which a `cond` branch in
      # a replica context cannot; decide in the cross-replica context, as
      # Keras' LossScaleOptimizer does for the same reason. The gradients go
      # through `merge_call`'s arguments to arrive there as per-replica
      # values.
      def decide(distribution, finite, gradients):
        def apply_on_each_replica():
          distribution.extended.call_for_each_replica(apply, args=(gradients,))
        tf.cond(distribution.experimental_local_results(finite)[0],
                apply_on_each_replica, skip)
      context.merge_call(decide, args=(finite, gradients))
    return finite

  def _update_metrics(self, values, applied=True):
    """Adds `values` to the metrics; nothing for a step that was not
    applied (its values may be NaN, which would poison the means)."""
    weight = tf.cast(applied, tf.float32)
    for name in self.metric_names:
      value = tf.convert_to_tensor(values[name])
      value = tf.where(applied, value, tf.zeros_like(value))
      getattr(self, f"{name}_tracker").update_state(value, sample_weight=weight)

  def _logs(self, **values):
    """What a `train_step` / `test_step` returns: `{name: result}` of the
    metrics, and `values` (scalars) beside them.

    Across workers, Keras 3's TensorFlow trainer reduces each returned value
    with `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars
    (tensorflow/tensorflow#72388); there the results go out as vectors of
    one element, which that reduction turns back into scalars.
    """
    logs = {metric.name: metric.result() for metric in self.metrics}
    logs.update({name: tf.convert_to_tensor(value)
                 for name, value in values.items()})
    if _internal.in_multi_worker_mode(tf.distribute.get_strategy()):
      logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def _check_dtype_policy(model):
  """Refuses a dtype policy that would compute likelihoods in 16 bits."""
  policy = model.dtype_policy
  if tf.as_dtype(policy.variable_dtype) not in (tf.float32, tf.float64):
    raise ValueError(
        f"{type(model).__name__}: the dtype policy {policy.name!r} would keep "
        f"the weights and the likelihood (log-dets, log-densities) in "
        f"{policy.variable_dtype}, which cannot hold them; use "
        f"'mixed_{policy.compute_dtype}' (networks in "
        f"{policy.compute_dtype}, likelihood in float32), 'float32' or "
        f"'float64'.")


def images_of(data):
  """The inputs of a Keras `data` batch: `x` of `(x, ...)` or `x` itself."""
  return data[0] if isinstance(data, (tuple, list)) else data


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


def _first_batch(x, y, batch_size):
  """The first batch `fit` will see (with its targets, if any: a
  conditional model's labels), for the data-dependent initialization."""
  if isinstance(x, tf.data.Dataset):
    return next(iter(x.take(1)))
  batch_size = batch_size or 32
  if y is None:
    return x[:batch_size]
  return x[:batch_size], y[:batch_size]
