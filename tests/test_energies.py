"""The paper's 2-D energies and the flow fit to them."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import energies
from tfp_flows.models import EnergyFlowModel


def _sigmoid(x):
  return 1. / (1. + math.exp(-x))


# (energy, z, U(z)) worked by hand from the paper's formulas.
HAND_COMPUTED = [
    # ||z|| = 2 and z1 = 2: both terms vanish but exp(-(4/0.6)^2/2) ~ 2e-10.
    ("U1", (2., 0.), -math.log1p(math.exp(-0.5 * (4. / 0.6) ** 2))),
    # 0.5 (2/0.4)^2 - log(2 exp(-0.5 (2/0.6)^2)) = 12.5 + 50/9 - log 2.
    ("U1", (0., 0.), 12.5 + 50. / 9. - math.log(2.)),
    ("U2", (1., 1.), 0.),  # w1(1) = sin(pi/2) = 1
    ("U2", (0., 0.4), 0.5),
    ("U3", (1., 1.), -math.log1p(math.exp(-0.5 * (3. / 0.35) ** 2))),
    ("U3", (0., 0.), -math.log1p(math.exp(
        -0.5 * (3. * math.exp(-0.5 / 0.36) / 0.35) ** 2))),
    # w1(1) = 1, w3(1) = 3 sigmoid(0) = 1.5: offsets -1 and 0.5.
    ("U4", (1., 0.), -math.log(math.exp(-0.5 * (1. / 0.4) ** 2) +
                               math.exp(-0.5 * (0.5 / 0.35) ** 2))),
    ("U4", (3., -1.), -math.log(
        math.exp(-0.5 * ((-1. - math.sin(1.5 * math.pi)) / 0.4) ** 2) +
        math.exp(-0.5 * ((-1. - math.sin(1.5 * math.pi) +
                          3. * _sigmoid(2. / 0.3)) / 0.35) ** 2))),
]


@pytest.mark.parametrize("name, z, expected", HAND_COMPUTED)
def test_energies_at_hand_computed_points(name, z, expected):
  value = energies.energy(name)(tf.constant(z, tf.float64))
  np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(energies.ENERGIES))
def test_energies_are_finite_far_from_the_modes(name):
  """logsumexp keeps U finite where both exponentials underflow."""
  z = tf.constant([[30., -30.], [0., 50.], [-40., 0.]], tf.float32)
  values = energies.energy(name)(z)
  assert np.all(np.isfinite(values))
  # The naive log of a sum of exponentials gives inf here.
  assert np.all(values > -np.log(2.) - 1e-6)


def test_unknown_energy_is_named():
  with pytest.raises(ValueError, match="energy must be one of"):
    energies.energy("U5")


@pytest.mark.parametrize("flow, num_flows", [("planar", 4), ("radial", 4)])
def test_fit_lowers_the_free_energy_and_q_integrates_to_one(flow, num_flows):
  model = EnergyFlowModel("U1", flow, num_flows, batch_size=200,
                          annealing_steps=0, seed=1)
  before, _ = model.free_energy(num_samples=20000)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  dummy = tf.data.Dataset.from_tensors(0.).repeat()
  model.fit(dummy, steps_per_epoch=400, epochs=1, verbose=0)
  after, stderr = model.free_energy(num_samples=20000)
  assert after < before - 1., (before, after)
  # F >= -log Z; U1's log Z by quadrature.
  log_unnormalized, area = energies.log_density_grid(
      lambda z: -energies.u1(z), limit=6., size=400)
  log_z = np.log(np.exp(log_unnormalized).sum() * area)
  assert after > -log_z - 4. * stderr
  # q_K from the inverse integrates to one: U1 lives well inside [-6, 6]^2.
  log_q, area = energies.log_density_grid(model.log_prob, limit=6., size=300)
  np.testing.assert_allclose(np.exp(log_q).sum() * area, 1., atol=0.02)


def test_log_prob_inverts_sample_and_log_prob():
  model = EnergyFlowModel("U3", "planar", 6, seed=2)
  noise = tf.random.stateless_normal([50, 2], seed=[0, 1])
  z, log_q = model.sample_and_log_prob(noise)
  np.testing.assert_allclose(model.log_prob(tf.identity(z)), log_q,
                             rtol=1e-4, atol=1e-4)


def test_energy_model_weights_are_tracked_and_saved(tmp_path):
  model = EnergyFlowModel("U2", "radial", 3, seed=3)
  names = {v.path.split("/")[-1] for v in model.trainable_variables}
  assert names == {"base_loc", "base_log_scale", "params"}
  path = tmp_path / "energy.keras"
  model.save(path)
  restored = keras.models.load_model(path)
  z = tf.constant([[0.5, -0.3], [2., 1.]])
  np.testing.assert_array_equal(model.log_prob(z), restored.log_prob(z))


def test_box_wall_is_zero_inside_the_strip_and_gaussian_outside():
  z = tf.constant([[-4., 3.], [3.9, -2.], [4.2, 0.], [-4.6, 1.]], tf.float64)
  wall = energies.box_wall(z, 4.)
  np.testing.assert_allclose(
      wall, [0., 0., 0.5 * (0.2 / 0.2) ** 2, 0.5 * (0.6 / 0.2) ** 2],
      rtol=1e-12)
  boxed = energies.energy("U3", box=4.)
  np.testing.assert_allclose(boxed(z), energies.u3(z) + wall, rtol=1e-12)


def test_boxed_u2_normalizer_matches_its_closed_form():
  """exp(-U2) is a N(w1, 0.4^2) profile in z2 for every z1, so Z is
  sqrt(2 pi) 0.4 times the z1-length of the box: 8 plus 2 half-Gaussian
  walls of scale 0.2."""
  gaussian = math.sqrt(2. * math.pi)
  z = gaussian * 0.4 * (8. + 2. * 0.2 * gaussian / 2.)
  np.testing.assert_allclose(energies.log_normalizer("U2", box=4.),
                             math.log(z), rtol=1e-9)


def test_u1_normalizer_is_unchanged_by_the_box():
  np.testing.assert_allclose(energies.log_normalizer("U1", box=4.),
                             energies.log_normalizer("U1"), atol=1e-5)


@pytest.mark.parametrize("name", ["U2", "U3", "U4"])
def test_unboxed_u2_to_u4_have_no_normalizer(name):
  with pytest.raises(ValueError, match="infinite mass.*box"):
    energies.log_normalizer(name)


@pytest.mark.parametrize("box", [0., -1.])
def test_box_must_be_positive(box):
  with pytest.raises(ValueError, match="box must be a positive half width"):
    energies.energy("U2", box=box)


def test_boxed_fit_stays_in_the_box_and_its_kl_is_non_negative():
  """The unboxed U2 fit drifts along z1 (infinite mass); boxed, F + log Z is
  a KL: >= 0, and most of q_K stays in the strip."""
  model = EnergyFlowModel("U2", "planar", 4, batch_size=200,
                          annealing_steps=0, seed=1, box=4.)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  dummy = tf.data.Dataset.from_tensors(0.).repeat()
  model.fit(dummy, steps_per_epoch=400, epochs=1, verbose=0)
  free_energy, stderr = model.free_energy(num_samples=20000)
  kl = free_energy + energies.log_normalizer("U2", box=4.)
  assert -4. * stderr < kl < 2., kl
  noise = tf.random.stateless_normal([20000, 2], seed=[5, 0])
  z, _ = model.sample_and_log_prob(noise)
  assert np.mean(np.abs(z[:, 0]) <= 4.5) > 0.9
  assert keras.models.clone_model(model).box == 4.
