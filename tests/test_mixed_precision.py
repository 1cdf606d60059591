"""Keras dtype policies: the models under `float64` and the mixed policies
set globally (as GPU users do), the loss scaler of `mixed_float16` beside
the models' own non-finite step skipping (on one device and across
replicas), the policies the models refuse, and exports of a
mixed-precision model. (Every model under every policy, with its values
against float32: tests/test_dtype_matrix.py.)"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import export
from tfp_flows.callbacks import NonFiniteLossError
from tfp_flows.layers import AffineCouplingLayer
from tfp_flows.models import EnergyFlowModel, FlowVAE, GlowModel


def _binary_images(n, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform(size=(n, 8, 8, 1)) < 0.3).astype(np.float32)


def _digits(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1),
                                              dtype=np.uint8)


def _flow_vae(**kwargs):
  return FlowVAE(latent_dim=2, flow="planar", num_flows=2, hidden_units=(16,),
                 image_shape=(8, 8, 1), **kwargs)


def _glow(**kwargs):
  return GlowModel(image_shape=(8, 8, 1), num_levels=1, num_steps=1,
                   hidden_channels=4, **kwargs)


@pytest.fixture
def global_policy():
  """Sets Keras' global dtype policy for one test, then restores it."""
  previous = keras.config.dtype_policy()
  yield keras.config.set_dtype_policy
  keras.config.set_dtype_policy(previous)


# The failures the dtype issue quoted, under a global policy ---------------

@pytest.mark.parametrize("policy", ["float64", "mixed_float16",
                                    "mixed_bfloat16"])
def test_models_run_under_a_global_policy(global_policy, policy):
  global_policy(policy)
  likelihood_dtype = "float64" if policy == "float64" else "float32"
  # FlowVAE.elbo failed in diagonal_normal_sample (float32 noise times a
  # float64 / float16 scale).
  vae = _flow_vae()
  assert vae.elbo(_binary_images(4)).dtype == likelihood_dtype
  # GlowModel failed in `initialize` (dequantization cast to float32) or in
  # AffineCoupling (a float16 network output added to a float32 half).
  glow = _glow()
  log_prob = glow.log_prob(_digits(4))
  assert log_prob.dtype == likelihood_dtype
  assert np.all(np.isfinite(log_prob.numpy()))
  np.testing.assert_array_equal(glow.decode(glow.encode(_digits(4))),
                                _digits(4))
  energy = EnergyFlowModel("U1", num_flows=2, batch_size=8)
  assert energy.log_prob(tf.zeros([3, 2])).dtype == likelihood_dtype


def test_coupling_layer_under_mixed_float16_keeps_the_coupling_in_float32(
    global_policy):
  global_policy("mixed_float16")
  layer = AffineCouplingLayer(hidden_channels=4)
  layer.build((None, 2, 2, 4))
  assert layer.network.layers[0].compute_dtype == "float16"
  x = tf.random.stateless_normal([3, 2, 2, 4], seed=(1, 2))
  bijector = layer.bijector()
  y = bijector.forward(x)
  assert y.dtype == tf.float32
  assert bijector.forward_log_det_jacobian(x, event_ndims=3).dtype == tf.float32
  np.testing.assert_allclose(bijector.inverse(tf.identity(y)), x, atol=1e-5)


# Policies the models cannot run -----------------------------------------

@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
@pytest.mark.parametrize("make_model", [
    _flow_vae, _glow, lambda **kw: EnergyFlowModel("U1", **kw)],
    ids=["flow_vae", "glow", "energy_flow"])
def test_a_16_bit_policy_is_refused_at_construction(make_model, policy,
                                                     global_policy):
  message = f"dtype policy '{policy}'.*mixed_{policy}"
  with pytest.raises(ValueError, match=message):
    make_model(dtype=policy)
  global_policy(policy)
  with pytest.raises(ValueError, match=message):
    make_model()


# Loss scaling beside the models' non-finite step skipping -----------------

# Keras' default initial scale, 2**15, overflows these small models' real
# float16 gradients a few times before it settles; the tests start from a
# scale that does not, so every overflow is the injected one.
INITIAL_SCALE = 16.


def _loss_scaled_adam():
  return keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2),
                                             initial_scale=INITIAL_SCALE)


class _OverflowingFlowVAE(FlowVAE):
  """Its gradients overflow the loss scale while the scale is at least
  `INITIAL_SCALE`, with the loss itself unchanged and finite: what a
  too-large loss scale does."""

  def objective(self, batch, noise, training):
    loss, values = super().objective(batch, noise, training)
    if not training:
      return loss, values
    overflow = tf.cast(self.optimizer.scale_loss(1.) >= INITIAL_SCALE,
                       loss.dtype)
    return loss + overflow * _overflowing_zero(self.trainable_weights), values


def _overflowing_zero(weights):
  """Zero, with a gradient of 3e38 per weight: inf once scaled by >= 2."""
  return tf.add_n([tf.reduce_sum(3e38 * (w - tf.stop_gradient(w)))
                   for w in weights])


def test_a_loss_scale_overflow_is_not_a_skipped_step():
  model = _OverflowingFlowVAE(latent_dim=2, flow="planar", num_flows=2,
                              hidden_units=(16,), image_shape=(8, 8, 1),
                              dtype="mixed_float16")
  model.compile(optimizer=_loss_scaled_adam())
  initial = [w.numpy().copy() for w in model.trainable_weights]
  # non_finite="stop": a skipped step would raise NonFiniteLossError.
  history = model.fit(_binary_images(32), batch_size=8, epochs=1, verbose=0,
                      non_finite="stop")
  # The first step overflowed: the loss scaler halved the scale and applied
  # nothing; the other three were applied. None was a skipped step.
  assert float(model.optimizer.dynamic_scale.numpy()) == INITIAL_SCALE / 2
  assert int(model.optimizer.iterations.numpy()) == 3
  assert int(model.skipped_steps.numpy()) == 0
  assert history.history["skipped_steps"] == [0]
  assert np.isfinite(history.history["loss"]).all()
  assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)
  assert any(not np.array_equal(w.numpy(), v)
             for w, v in zip(model.trainable_weights, initial, strict=True))


class _NonFiniteLossFlowVAE(FlowVAE):
  """An infinite loss in the second step run."""

  def objective(self, batch, noise, training):
    loss, values = super().objective(batch, noise, training)
    if not training:
      return loss, values
    bad = tf.equal(self.optimizer.iterations + self.skipped_steps, 1)
    return tf.where(bad, np.inf, loss), {
        name: tf.where(bad, np.inf, v) for name, v in values.items()}


@pytest.mark.parametrize("non_finite", ["skip", "stop"])
def test_a_non_finite_loss_under_loss_scaling_is_a_skipped_step(non_finite):
  model = _NonFiniteLossFlowVAE(latent_dim=2, flow="planar", num_flows=2,
                                hidden_units=(16,), image_shape=(8, 8, 1),
                                dtype="mixed_float16")
  model.compile(optimizer=_loss_scaled_adam())
  if non_finite == "stop":
    with pytest.raises(NonFiniteLossError):
      model.fit(_binary_images(32), batch_size=8, epochs=1, verbose=0)
  else:
    # The skip policy says so, once, naming the step.
    with pytest.warns(RuntimeWarning, match=r"skipped 1 step.*batch 2"):
      model.fit(_binary_images(32), batch_size=8, epochs=1, verbose=0,
                non_finite="skip")
    assert int(model.optimizer.iterations.numpy()) == 3
  assert int(model.skipped_steps.numpy()) == 1
  # The loss scaler never saw the skipped step: its scale is untouched.
  assert float(model.optimizer.dynamic_scale.numpy()) == INITIAL_SCALE
  assert all(np.all(np.isfinite(w.numpy())) for w in model.weights)


OVERFLOW_ON_ONE_REPLICA_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfp_flows import data
    from tfp_flows.models import FlowVAE

    class OverflowOnSecondReplica(FlowVAE):
        # Gradients that overflow the scale on replica 1 only, in the first
        # step; the loss unchanged. Keras' loss scaler decides on replica
        # 0's gradients, so only the all-reduced decision sees it.
        def objective(self, batch, noise, training):
            loss, values = super().objective(batch, noise, training)
            if not training:
                return loss, values
            context = tf.distribute.get_replica_context()
            bad = (tf.equal(self.optimizer.iterations, 0)
                   & tf.equal(context.replica_id_in_sync_group, 1)
                   & (self.optimizer.scale_loss(1.) >= 16.))
            # Zero, with a gradient of 3e38 per weight (inf once scaled).
            zero = tf.add_n([tf.reduce_sum(3e38 * (w - tf.stop_gradient(w)))
                             for w in self.trainable_weights])
            return loss + tf.cast(bad, loss.dtype) * zero, values

    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(64, 8, 8, 1)) < 0.3).astype(np.float32)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = OverflowOnSecondReplica(
            latent_dim=2, flow="planar", num_flows=2, hidden_units=(16,),
            image_shape=(8, 8, 1), dtype="mixed_float16")
        model.compile(optimizer=keras.optimizers.LossScaleOptimizer(
            keras.optimizers.Adam(1e-2), initial_scale=16.))
    history = model.fit(data.image_dataset(images, 16), epochs=1, verbose=0)
    replicas_agree = all(
        np.array_equal(*[v.numpy() for v in
                         strategy.experimental_local_results(w._value)])
        for w in model.weights)
    print(json.dumps({
        "scale": float(model.optimizer.dynamic_scale.numpy()),
        "iterations": int(model.optimizer.iterations.numpy()),
        "skipped_steps": int(model.skipped_steps.numpy()),
        "losses": history.history["loss"],
        "replicas_agree": replicas_agree,
        "finite": all(np.all(np.isfinite(w.numpy())) for w in model.weights),
    }))
""")


@pytest.mark.slow  # MirroredStrategy in a subprocess
def test_an_overflow_on_one_replica_is_handled_on_both():
  result = subprocess.run(
      [sys.executable, "-c", OVERFLOW_ON_ONE_REPLICA_SCRIPT],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  # Four global steps: the first overflowed (on one replica), so nothing was
  # applied and the scale halved, on both replicas alike.
  assert report["scale"] == 8.
  assert report["iterations"] == 3
  assert report["skipped_steps"] == 0
  assert report["replicas_agree"] and report["finite"]
  assert np.isfinite(report["losses"]).all()


# Exports -----------------------------------------------------------------

@pytest.mark.parametrize("make_model", [_flow_vae, _glow],
                         ids=["flow_vae", "glow"])
@pytest.mark.parametrize("policy", ["float64", "mixed_float16"])
def test_exports_keep_float32_signatures(make_model, policy, tmp_path):
  model = make_model(dtype=policy)
  if isinstance(model, GlowModel):
    model.initialize(_digits(16))
  path = export.export_saved_model(model, tmp_path / "model")
  loaded = tf.saved_model.load(str(path))
  for name, signature in loaded.signatures.items():
    specs = list(signature.structured_input_signature[1].values())
    specs += list(signature.structured_outputs.values())
    for spec in specs:
      assert spec.dtype in (tf.float32, tf.int32, tf.uint8), (name, spec)
