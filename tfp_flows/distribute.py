"""Distribution strategies for the examples: one device, all local devices,
or many machines.

```none
default        tf.distribute.get_strategy(): one device
mirrored       MirroredStrategy: every local GPU (or the CPU), one process
multi_worker   MultiWorkerMirroredStrategy: one process per machine, the
               cluster described by TF_CONFIG (see README, "Many machines")
```

Under `multi_worker` every worker runs the same script: the chief (task
`chief`, or `worker` 0 without one) writes the run's files and exports; the
other workers keep their own checkpoints under `worker_<id>/`, so each
resumes from its own copy (the weights are the same on every worker) whether
or not the machines share a file system.
"""

import json
import os
import pathlib

import tensorflow as tf

__all__ = ["STRATEGIES", "StrategyError", "make_strategy", "is_chief",
           "worker_dir"]

STRATEGIES = ("default", "mirrored", "multi_worker")


class StrategyError(ValueError):
  """A strategy that cannot be made as asked (a configuration error)."""


def make_strategy(name, cpu_replicas=None):
  """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

  Create it before any other TensorFlow work: `MultiWorkerMirroredStrategy`
  must start its collectives, and logical CPU devices must be configured,
  before the runtime is initialized.

  Args:
    name: one of `STRATEGIES`.
    cpu_replicas: with `"mirrored"` on a machine without GPUs, split the CPU
      into this many logical devices, one replica each (to try or test
      multi-replica training without GPUs; no faster than one replica).

  Raises:
    StrategyError: an unknown name, `cpu_replicas` without `"mirrored"` or
      after TensorFlow started, or a missing or malformed `TF_CONFIG`.
  """
  if cpu_replicas is not None and name != "mirrored":
    raise StrategyError(f"--cpu-replicas goes with --strategy mirrored; "
                        f"got --strategy {name}.")
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if cpu_replicas is not None and not tf.config.list_physical_devices("GPU"):
      _split_cpu(cpu_replicas)
      return tf.distribute.MirroredStrategy(
          [f"/cpu:{i}" for i in range(cpu_replicas)])
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    config = os.environ.get("TF_CONFIG")
    if not config:
      raise StrategyError(
          "--strategy multi_worker needs the TF_CONFIG environment variable "
          "naming the cluster and this process's task, e.g. "
          """TF_CONFIG='{"cluster": {"worker": ["host1:12345", """
          """"host2:12345"]}, "task": {"type": "worker", "index": 0}}'.""")
    try:
      json.loads(config)
    except json.JSONDecodeError as error:
      raise StrategyError(f"TF_CONFIG is not valid JSON: {error}") from None
    try:
      return tf.distribute.MultiWorkerMirroredStrategy()
    except ValueError as error:  # TF_CONFIG that does not describe a cluster
      raise StrategyError(f"TF_CONFIG: {error}") from error
  raise StrategyError(f"strategy must be one of {STRATEGIES}; got {name!r}.")


def _split_cpu(replicas):
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
  except RuntimeError:  # TensorFlow's runtime has started: devices are fixed
    found = len(tf.config.list_logical_devices("CPU"))
    if found != replicas:
      raise StrategyError(
          f"cannot split the CPU into {replicas} replicas: TensorFlow has "
          f"started with {found} logical CPU(s). Make the strategy before "
          f"any other TensorFlow work (in a notebook: restart the kernel)."
      ) from None


def _task(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return None, 0, {}
  return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_chief(strategy):
  """Whether this process writes the run's shared files (always, outside a
  multi-worker cluster)."""
  task_type, task_id, cluster = _task(strategy)
  if task_type is None or task_type == "chief":
    return True
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_dir(path, strategy):
  """`path` on the chief; `path/worker_<id>` on any other worker."""
  path = pathlib.Path(path)
  if is_chief(strategy):
    return path
  task_type, task_id, _ = _task(strategy)
  return path / f"{task_type}_{task_id}"
