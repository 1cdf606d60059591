"""Every private TensorFlow, TensorFlow Probability and Keras name the
package uses, each behind one function or class, and nowhere else.

These are not public API and may change in any release; `setup.cfg` pins the
minor versions each was checked against:

```none
tensorflow-probability 0.25.0   dtype_util, tensor_util, assert_util,
                                cache_util, parameter_properties
tensorflow 2.21.0               tf.__internal__.distribute
keras 3.15.1                    Model._maybe_symbolic_build,
                                StrategyExtended._in_multi_worker_mode;
                                and a known bug, keras-team/keras#19246
```

On an upgrade, check each function here against the new sources (the
comment above it says what it relies on) and run the tests. Bijectors import
this module too, so it imports Keras only inside the functions that need it:
the bijector layer stays free of Keras.
"""

import tensorflow as tf

# TFP's own bijectors build on these; they are what make a custom bijector
# keep `tf.Variable` parameters as references (so gradients reach them),
# find the parameters' common dtype the TFP way, and cache log-dets computed
# together with the transformation.
from tensorflow_probability.python.internal import assert_util as _assert_util
from tensorflow_probability.python.internal import cache_util as _cache_util
from tensorflow_probability.python.internal import dtype_util as _dtype_util
from tensorflow_probability.python.internal import (
    parameter_properties as _parameter_properties)
from tensorflow_probability.python.internal import tensor_util as _tensor_util

__all__ = ["BIJECTOR_NOT_IMPLEMENTED", "BijectorCacheWithGreedyAttrs",
           "KerasTrainerHooks", "assert_finite", "common_dtype",
           "convert_nonref_to_tensor", "in_multi_worker_mode", "is_ref",
           "strategy_supports_no_merge_call"]


# TensorFlow Probability 0.25.0 ----------------------------------------------

def common_dtype(args, dtype_hint=None):
  """The dtype shared by `args` (tensors, variables, `DeferredTensor`s,
  Python numbers), or `dtype_hint` when none has one
  (`dtype_util.common_dtype`)."""
  return _dtype_util.common_dtype(args, dtype_hint=dtype_hint)


def convert_nonref_to_tensor(value, dtype=None, name=None):
  """`value` as a `Tensor`, except `tf.Variable`s and other references,
  which are kept so gradients reach them
  (`tensor_util.convert_nonref_to_tensor`)."""
  return _tensor_util.convert_nonref_to_tensor(value, dtype=dtype, name=name)


def is_ref(value):
  """Whether `value` is a variable-like reference (`tensor_util.is_ref`)."""
  return _tensor_util.is_ref(value)


def assert_finite(value, message):
  """A `ValueError` now for a constant holding NaN or inf, else an assertion
  op (`assert_util.assert_finite`)."""
  return _assert_util.assert_finite(value, message=message)


# The cache TFP's FFJORD keeps log-dets computed with the transformation in.
BijectorCacheWithGreedyAttrs = _cache_util.BijectorCacheWithGreedyAttrs

# A parameter with no constraining bijector of its own.
BIJECTOR_NOT_IMPLEMENTED = _parameter_properties.BIJECTOR_NOT_IMPLEMENTED


# TensorFlow 2.21.0 ----------------------------------------------------------

def strategy_supports_no_merge_call():
  """Whether the current strategy can apply gradients in replica context
  without `merge_call` (what Keras' `LossScaleOptimizer` asks too)."""
  return tf.__internal__.distribute.strategy_supports_no_merge_call()


# Keras 3.15.1 ---------------------------------------------------------------

#: Keras 3's TensorFlow trainer cannot run `steps_per_execution > 1` on more
#: than one replica: its `tf.while_loop` of steps fails at the first call
#: with "You must feed a value for placeholder tensor 'while/cond/...'", for
#: a plain `keras.Sequential` too (keras-team/keras#19246, open; checked with
#: Keras 3.15.1 and TensorFlow 2.21, MirroredStrategy on 2 logical CPUs;
#: one replica works). tests/test_distributed.py keeps checking it fails.
KERAS_ISSUE_MULTI_REPLICA_STEPS_PER_EXECUTION = (
    "https://github.com/keras-team/keras/issues/19246")


def in_multi_worker_mode(strategy):
  """Whether `strategy` spans several workers: Keras' own test
  (`strategy.extended._in_multi_worker_mode()`), which decides how its
  trainer reduces a step's outputs."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
          strategy.extended._in_multi_worker_mode())


class KerasTrainerHooks:
  """Overrides of Keras' TensorFlow trainer for models built whole in
  `__init__`; mixed into `tfp_flows.models.FlowModel`.

  Keras' trainer, under a distribution strategy, takes the first batch,
  averages it across replicas and builds the model symbolically from it
  (`Model._maybe_symbolic_build`). Our models have every weight from
  `__init__` and use no compiled loss or metrics, so there is nothing to
  build (their `fit` builds the optimizer); and the average fails for uint8
  images under `MultiWorkerMirroredStrategy`, whose collectives take no
  uint8. A model that is somehow not built falls back to Keras' path.
  """

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    if not self.built:
      return super()._maybe_symbolic_build(iterator=iterator,
                                           data_batch=data_batch)
    return None
