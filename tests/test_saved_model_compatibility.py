"""`.keras` files saved by tfp_flows 0.1.0 before the models shared the
`FlowModel` base class (commit 3d54af1, files in tests/data/saved_v0_1_0,
written by its own code) still load, compute what they computed then, and
train on."""

import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfp_flows.models import EnergyFlowModel, FlowVAE, GlowModel

SAVED = pathlib.Path(__file__).parent / "data" / "saved_v0_1_0"


@pytest.fixture(scope="module")
def expected():
  return dict(np.load(SAVED / "expected.npz"))


def _load(name):
  return keras.models.load_model(SAVED / name)


def test_glow_loads_initialized_with_its_log_prob(expected):
  model = _load("glow.keras")
  assert isinstance(model, GlowModel)
  assert model.is_initialized  # the flag kept its place in the file
  assert int(model.skipped_steps.numpy()) == 0
  assert int(model.optimizer.iterations.numpy()) == 2
  np.testing.assert_allclose(model.log_prob(expected["images"]),
                             expected["glow_log_prob"], rtol=1e-6)
  history = model.fit(expected["images"], batch_size=8, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("flow", ["planar", "radial", "none"])
def test_flow_vae_loads_with_its_elbo(expected, flow):
  model = _load(f"flow_vae_{flow}.keras")
  assert isinstance(model, FlowVAE) and model.flow == flow
  binary = (expected["images"] > 128).astype(np.float32)
  np.testing.assert_allclose(model.elbo(binary),
                             expected[f"flow_vae_{flow}_elbo"], rtol=1e-5)
  history = model.fit(binary, batch_size=8, epochs=1, verbose=0)
  assert int(model.optimizer.iterations.numpy()) == 4
  assert np.isfinite(history.history["loss"][0])


def test_energy_flow_model_loads_with_its_density(expected):
  model = _load("energy_radial.keras")
  assert isinstance(model, EnergyFlowModel)
  np.testing.assert_allclose(model.log_prob(expected["energy_points"]),
                             expected["energy_log_prob"], rtol=1e-5,
                             atol=1e-6)


def test_import_tfp_flows_is_enough_to_load_a_saved_model():
  """A user's fresh process: `import tfp_flows`, then Keras' loader, with
  no `tfp_flows.models` import of its own (the classes register on import
  of the package)."""
  script = ("import sys, keras, tfp_flows; "
            "model = keras.saving.load_model(sys.argv[1]); "
            "print(type(model).__name__)")
  result = subprocess.run([sys.executable, "-c", script,
                           str(SAVED / "glow.keras")],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == "GlowModel"
