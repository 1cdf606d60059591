"""A non-finite loss never reaches the weights: the step is not applied, and
training stops with the last good checkpoint intact (`non_finite="stop"`),
or goes on and counts it (`"skip"`)."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import data
from tfp_flows.callbacks import NonFiniteGuard, NonFiniteLossError
from tfp_flows.models import FlowVAE, GlowModel


def _binary_images(n, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform(size=(n, 8, 8, 1)) < 0.3).astype(np.float32)


# Data can no longer carry a NaN into a step (the models reject it with a
# message, tests/test_bad_input_models.py); what is left is a loss that
# overflows on its own. These models make one at the training steps listed in
# `bad_steps`, counting every step run (applied or skipped) from 0.
def _is_bad_step(model):
  run = model.optimizer.iterations + model.skipped_steps
  return tf.reduce_any(tf.equal(run, tf.constant(list(model.bad_steps) or [-1],
                                                 tf.int64)))


class _FaultInjection:
  """Makes the training loss and metric values `fault` in `bad_steps`."""

  bad_steps = ()
  fault = np.nan

  def objective(self, batch, noise, training):
    loss, values = super().objective(batch, noise, training)
    if not training:
      return loss, values
    bad = _is_bad_step(self)
    return tf.where(bad, self.fault, loss), {
        name: tf.where(bad, self.fault, v) for name, v in values.items()}


class FaultyFlowVAE(_FaultInjection, FlowVAE):
  fault = np.inf


class FaultyGlow(_FaultInjection, GlowModel):
  fault = np.nan


def _flow_vae(bad_steps=(), steps_per_execution=1):
  model = FaultyFlowVAE(latent_dim=2, flow="planar", num_flows=2,
                        hidden_units=(16,), image_shape=(8, 8, 1))
  model.bad_steps = bad_steps
  model.compile(optimizer=keras.optimizers.Adam(1e-2),
                steps_per_execution=steps_per_execution)
  return model


def _values(model):
  return [w.numpy().copy() for w in model.weights]


def _all_finite(model):
  return all(np.all(np.isfinite(w.numpy())) for w in model.weights)


@pytest.mark.parametrize("make_model", ["flow_vae", "glow"])
def test_skip_leaves_out_the_bad_step_and_counts_it(make_model):
  images = _binary_images(64)
  if make_model == "glow":
    images = np.round(images * 255)
    model = FaultyGlow(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                       hidden_channels=4)
    model.bad_steps = (1,)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.initialize(images[:16])
  else:
    model = _flow_vae(bad_steps=(1,))
  # The second of four batches is bad.
  with pytest.warns(RuntimeWarning, match="skipped 1 step"):
    history = model.fit(data.image_dataset(images, 16), epochs=1, verbose=0,
                        non_finite="skip")
  assert int(model.optimizer.iterations.numpy()) == 3
  assert int(model.skipped_steps.numpy()) == 1
  assert history.history["skipped_steps"] == [1]
  assert _all_finite(model)
  # The epoch's metrics average the good batches, not the NaN.
  assert np.isfinite(history.history["loss"][0])


def test_stop_raises_and_keeps_the_last_good_checkpoint(tmp_path):
  clean = _binary_images(64)
  backup = tmp_path / "backup"

  def callbacks():
    return [keras.callbacks.BackupAndRestore(str(backup),
                                             delete_checkpoint=False)]

  model = _flow_vae()
  model.fit(data.image_dataset(clean, 16), epochs=1, verbose=0,
            callbacks=callbacks())
  after_epoch_1 = _values(model)

  resumed = _flow_vae(bad_steps=(4,))  # the first step of epoch 2
  with pytest.raises(NonFiniteLossError, match="epoch 2, batch 1"):
    resumed.fit(data.image_dataset(clean, 16), epochs=2, verbose=0,
                callbacks=callbacks())
  # The bad step was not applied: the weights are the restored epoch-1 ones,
  # and only the count of skipped steps moved.
  for weight, got, expected in zip(resumed.weights, _values(resumed),
                                   after_epoch_1, strict=True):
    if "skipped_steps" not in weight.path:
      np.testing.assert_array_equal(got, expected, err_msg=weight.path)
  assert int(resumed.skipped_steps.numpy()) == 1
  # The checkpoint is still the finished epoch 1, and finite.
  metadata = json.loads((backup / "training_metadata.json").read_text())
  assert metadata["epoch"] == 1
  restored = _flow_vae()
  restored.optimizer.build(restored.trainable_variables)
  restored.load_weights(backup / "latest.weights.h5")
  assert _all_finite(restored)
  for got, expected in zip(_values(restored), after_epoch_1, strict=True):
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_bad_step_inside_a_group_of_steps(policy):
  """With `steps_per_execution=4`, Keras calls back after each group: the
  guard acts at the end of the group holding the bad step (the second), the
  bad step is not applied and the group's three finite ones are."""
  model = _flow_vae(bad_steps=(1,), steps_per_execution=4)
  images = data.image_dataset(_binary_images(128), 16)  # two groups
  if policy == "stop":
    with pytest.raises(NonFiniteLossError,
                       match=r"epoch 1, in batches 1-4 \(steps_per_execution"
                             r"=4; the group's finite steps were applied\)"):
      model.fit(images, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 3
  else:
    with pytest.warns(RuntimeWarning, match="skipped 1 step.*batches 1-4"):
      history = model.fit(images, epochs=1, verbose=0, non_finite="skip")
    assert int(model.optimizer.iterations.numpy()) == 7
    assert history.history["skipped_steps"] == [1]
    assert np.isfinite(history.history["loss"][0])
  assert int(model.skipped_steps.numpy()) == 1
  assert _all_finite(model)


def test_guard_refuses_to_let_a_checkpoint_hold_non_finite_weights():
  model = _flow_vae()
  guard = NonFiniteGuard("stop")
  guard.set_model(model)
  model.encoder_layers[0].kernel.assign(
      tf.fill(model.encoder_layers[0].kernel.shape, np.nan))
  with pytest.raises(NonFiniteLossError, match="encoder_0"):
    guard.on_epoch_end(0)


def test_unknown_policy_is_rejected_by_name():
  with pytest.raises(ValueError, match="non_finite must be one of"):
    _flow_vae().fit(data.image_dataset(_binary_images(16), 16), epochs=1,
                    verbose=0, non_finite="ignore")


def test_finite_training_warns_nothing_and_skips_nothing():
  model = _flow_vae()
  with warnings.catch_warnings():
    warnings.simplefilter("error", RuntimeWarning)
    history = model.fit(data.image_dataset(_binary_images(64), 16), epochs=2,
                        verbose=0)
  assert history.history["skipped_steps"] == [0, 0]
  assert int(model.optimizer.iterations.numpy()) == 8
