"""Every public bijector and flow path in every dtype and execution mode a
user can reach: {float32, float64} x {eager, tf.function, XLA}, values of
both directions and both log-dets, and gradients for inputs and parameters,
each against the eager float64 result. And every model under every Keras
dtype policy it accepts: {float32, float64, mixed_float16, mixed_bfloat16},
its likelihood against the float32 model's with the same weights and noise,
and a few `fit` steps.

A new bijector or flow family goes into `CASES`, a new model into `MODELS`
(DEVELOPERS.md).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import (ActNorm, AffineCoupling, InvertibleConv1x1,
                                 Planar, Radial, SplitPrior,
                                 Sylvester, channels_first_flatten,
                                 family_names, get_family,
                                 householder_product, orthonormalize,
                                 squeeze)
from tfp_flows.models import EnergyFlowModel, FlowVAE, GlowModel

tfb = tfp.bijectors

DTYPES = (tf.float32, tf.float64)
MODES = ("eager", "function", "xla")
# Relative to the scale of the float64 values: float32 rounding amplified a
# little by the maps (their Jacobians here are O(1)); float64 to its own.
TOLERANCE = {tf.float32: 2e-5, tf.float64: 1e-11}


def _rng(seed):
  return np.random.default_rng(seed)


def _planar():
  rng = _rng(0)
  params = [rng.normal(size=(3,)), rng.normal(size=(3,)), rng.normal()]
  return (lambda u, w, b: Planar(u, w, b)), params, rng.normal(size=(4, 3)), 1


def _radial():
  rng = _rng(1)
  params = [rng.normal(size=(3,)), rng.normal(), rng.normal()]
  return ((lambda z0, raw_alpha, raw_beta: Radial.from_unconstrained(
      z0, raw_alpha, raw_beta)), params, rng.normal(size=(4, 3)), 1)


def _sylvester(q_from, q_shape, seed):
  """A Sylvester flow on R^3 whose `Q` is built from unconstrained values
  in the case's dtype and mode (Householder vectors or a matrix to
  orthonormalize), so the construction is differentiated too."""
  def case():
    rng = _rng(seed)
    m = q_shape[-1] if q_from is orthonormalize else 3
    triangle = lambda: np.triu(rng.normal(size=(m, m)), 1) + np.diag(
        rng.uniform(-0.9, 0.9, size=m))
    params = [rng.normal(size=q_shape), triangle(), triangle(),
              rng.normal(size=m)]
    return ((lambda raw_q, r1, r2, b: Sylvester(q_from(raw_q), r1, r2, b)),
            params, rng.normal(size=(4, 3)), 1)
  return case


def _actnorm():
  rng = _rng(2)
  params = [rng.normal(size=(4,)), 0.3 * rng.normal(size=(4,))]
  return ((lambda shift, log_scale: ActNorm(shift, log_scale)), params,
          rng.normal(size=(2, 2, 2, 4)), 3)


def _conv1x1():
  rng = _rng(3)
  lower_upper, permutation = tf.linalg.lu(
      tf.constant(rng.normal(size=(4, 4)) + 2. * np.eye(4)))
  # The permutation is an integer parameter: fixed, not differentiated.
  return ((lambda lu: InvertibleConv1x1(lu, permutation)),
          [lower_upper.numpy()], rng.normal(size=(2, 2, 2, 4)), 3)


def _conditioned_affine(bijector_class, out_channels, seed, **kwargs):
  """A coupling-like bijector of 4 channels whose network is a 1x1
  convolution of 2 channels, in the input's dtype."""
  def case():
    rng = _rng(seed)
    params = [0.5 * rng.normal(size=(1, 1, 2, out_channels)),
              0.1 * rng.normal(size=(out_channels,))]

    def make(kernel, bias):
      def network(x_a):
        return tf.nn.conv2d(x_a, kernel, strides=1, padding="SAME") + bias
      return bijector_class(network, **kwargs)
    return make, params, rng.normal(size=(2, 2, 2, 4)), 3
  return case


def _squeeze():
  return (lambda: squeeze(4, 4, 2)), [], _rng(5).normal(size=(2, 4, 4, 2)), 3


def _flatten():
  return ((lambda: channels_first_flatten(2, 2, 3)), [],
          _rng(6).normal(size=(2, 2, 2, 3)), 3)


CASES = {"planar": _planar, "radial": _radial,
         "sylvester_householder": _sylvester(householder_product, (2, 3), 16),
         "sylvester_orthogonal": _sylvester(orthonormalize, (3, 2), 17),
         "actnorm": _actnorm,
         "conv1x1": _conv1x1,
         "affine_coupling": _conditioned_affine(AffineCoupling, 4, 4),
         "additive_coupling": _conditioned_affine(AffineCoupling, 2, 14,
                                                  additive=True),
         "split_prior": _conditioned_affine(SplitPrior, 4, 15),
         "squeeze": _squeeze, "channels_first_flatten": _flatten}


def _bijector_outputs(make, event_ndims, x, params):
  """Forward, inverse of the (cache-defeated) forward, both log-dets, and
  gradients of a scalar of all of them for `x` and the parameters."""
  with tf.GradientTape() as tape:
    tape.watch([x] + params)
    bijector = make(*params)
    y = bijector.forward(x)
    x_back = bijector.inverse(tf.identity(y))
    fldj = bijector.forward_log_det_jacobian(x, event_ndims=event_ndims)
    ildj = bijector.inverse_log_det_jacobian(
        tf.identity(y), event_ndims=bijector.forward_event_ndims(event_ndims))
    objective = (tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(tf.cos(x_back))
                 + tf.reduce_sum(fldj) + tf.reduce_sum(ildj))
  gradients = tape.gradient(objective, [x] + params)
  return [y, x_back, fldj, ildj] + gradients


def _run(compute, dtype, mode, x, params):
  x = tf.constant(x, dtype)
  params = [tf.constant(p, dtype) for p in params]
  if mode == "eager":
    return compute(x, params)
  function = tf.function(lambda x, *params: compute(x, list(params)),
                         jit_compile=(mode == "xla"), autograph=False)
  return function(x, *params)


def _assert_matches(got, want, dtype):
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g is not None and g.dtype == dtype
    w = np.asarray(w, np.float64)
    scale = max(1., np.abs(w).max())
    np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=0.,
                               atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bijector(case, dtype, mode):
  make, params, x, event_ndims = CASES[case]()

  def compute(x, params):
    return _bijector_outputs(make, event_ndims, x, params)

  want = _run(compute, tf.float64, "eager", x, params)
  _assert_matches(_run(compute, dtype, mode, x, params), want, dtype)


def _family_cases():
  """Every family x dtype x mode. XLA-compiling the Sylvester families' chain
  inverse (two root solves with implicit gradients) takes 17-31 s a case on
  2 cores, so those six run in the slow suite (CI runs both); their
  bijector's XLA cases stay here (`test_bijector`), and so does the planar
  and radial chain inverse under XLA."""
  for family in family_names():
    for dtype in DTYPES:
      for mode in MODES:
        marks = ([pytest.mark.slow]
                 if family.startswith("sylvester") and mode == "xla" else [])
        yield pytest.param(family, dtype, mode, marks=marks,
                           id=f"{family}-{dtype.name}-{mode}")


@pytest.mark.parametrize("family, dtype, mode", _family_cases())
def test_flow_family_paths(family, dtype, mode):
  """A family's vectorized path and its chain of bijectors (through the
  inverse, too), with gradients for the parameters and `z`."""
  family = get_family(family)
  dim, num_flows = 3, 2
  rng = _rng(7)
  params = 0.5 * rng.normal(size=(2, num_flows, family.param_size(dim)))
  z = rng.normal(size=(5, 2, dim))

  def compute(z, params):
    (params,) = params
    with tf.GradientTape() as tape:
      tape.watch([z, params])
      y, log_det = family.forward_and_log_det(params, dim, z)
      chain = tfb.Chain(list(reversed(family.bijectors(params, dim))))
      z_back = chain.inverse(tf.identity(y))
      ildj = chain.inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
      objective = (tf.reduce_sum(tf.sin(y)) + tf.reduce_sum(log_det)
                   + tf.reduce_sum(tf.cos(z_back)) + tf.reduce_sum(ildj))
    return [y, log_det, z_back, ildj] + tape.gradient(objective, [z, params])

  want = _run(compute, tf.float64, "eager", z, [params])
  _assert_matches(_run(compute, dtype, mode, z, [params]), want, dtype)


# Models under Keras dtype policies ------------------------------------------

POLICIES = ("float32", "float64", "mixed_float16", "mixed_bfloat16")
# Largest |difference| from the float32 model with the same weights and
# noise, relative to the largest |value|, as this test measures it, over 12
# random initializations of each model (`python
# benchmarks/dtype_policy_spread.py --seeds 12`, a seeded loop around this test's
# body): float64 up to 1.7e-6 (float32's own rounding, conditional Glow),
# mixed_float16 1.4e-3 (FlowVAE; its median 1.9e-4), mixed_bfloat16 7.1e-3
# (FlowVAE's logits in 8-bit mantissas, summed over the pixels). The spread
# across initializations is 7x, so the test seeds Keras (one initialization,
# the same on every run) and the tolerances are about 3x those maxima, since
# float32 rounding also differs across CPUs. An unseeded 1e-3 for
# mixed_float16 failed CI once at 1.3e-3.
POLICY_TOLERANCE = {"float32": 0., "float64": 5e-6, "mixed_float16": 4e-3,
                    "mixed_bfloat16": 2e-2}


def _binary_images(n, seed=0):
  return (_rng(seed).random((n, 8, 8, 1)) < 0.3).astype(np.float32)


def _flow_vae_case(policy):
  model = FlowVAE(latent_dim=3, flow="planar", num_flows=2, hidden_units=(16,),
                  image_shape=(8, 8, 1), dtype=policy)
  images = _binary_images(32)
  noise = _rng(10).normal(size=(32, 3))

  def likelihood(model):  # the single-sample ELBO with fixed noise
    log_likelihood, log_prior, log_q = model.elbo_terms(
        images, tf.constant(noise, model.likelihood_dtype))
    return log_likelihood + log_prior - log_q
  return model, images, likelihood


def _glow_case(policy):
  # A depth per level, a zero border and a top mixture, so the matrix
  # covers those options too.
  model = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=(2, 3),
                    hidden_channels=8, padding=2, top_mixture_components=3,
                    dtype=policy)
  images = _rng(11).integers(0, 256, (32, 8, 8, 1)).astype(np.uint8)
  model.initialize(images)
  framed = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))

  def likelihood(model):  # log q of the bin-centred images in their frame
    return model.distribution.log_prob(
        tf.constant((framed + 0.5) / 256., model.likelihood_dtype))
  return model, images, likelihood


def _conditional_glow_case(policy):
  model = GlowModel(image_shape=(8, 8, 1), num_levels=2, num_steps=2,
                    hidden_channels=8, num_classes=3, classification_weight=0.1,
                    conditional_flow=True, dtype=policy)
  images = _rng(14).integers(0, 256, (32, 8, 8, 1)).astype(np.uint8)
  labels = _rng(15).integers(0, 3, 32).astype(np.int32)
  model.initialize((images, labels))

  def likelihood(model):  # log q of the bin-centred images given the labels
    return model.distribution_for(labels).log_prob(
        tf.constant((images + 0.5) / 256., model.likelihood_dtype))
  return model, (images, labels), likelihood


def _energy_case(policy):
  model = EnergyFlowModel("U1", flow="radial", num_flows=2, batch_size=16,
                          dtype=policy)
  z = _rng(12).normal(size=(16, 2))
  return model, np.zeros((4, 1), np.float32), (
      lambda model: model.sample_and_log_prob(
          tf.constant(z, model.likelihood_dtype))[1])


MODELS = {"flow_vae": _flow_vae_case, "glow": _glow_case,
          "conditional_glow": _conditional_glow_case,
          "energy_flow": _energy_case}
# The layers that compute in the policy's compute dtype (16 bits under the
# mixed policies): the networks.
NETWORKS = {
    "flow_vae": lambda model: (model.encoder_layers + model.decoder_layers + [
        model.posterior_head, model.flow_head, model.logits_head]),
    "glow": lambda model: _glow_networks(model),
    "conditional_glow": lambda model: _glow_networks(model),
    "energy_flow": lambda model: [],
}


def _glow_networks(model):
  """The coupling networks' and the split priors' convolutions."""
  return ([layer for coupling in model.couplings
           for layer in coupling.network.layers]
          + [prior.network for prior in model.priors
             if hasattr(prior, "network")])


def _policy_cases():
  """Every model under every policy. The two Glows take 17-27 s a policy on
  2 cores (compiling `fit`), so their float64 cases (the policy least likely
  to differ: no 16-bit compute) and the conditional Glow's float32 run in the
  slow suite (CI runs both)."""
  slow = {("glow", "float64"), ("conditional_glow", "float64"),
          ("conditional_glow", "float32")}
  for name in sorted(MODELS):
    for policy in POLICIES:
      marks = [pytest.mark.slow] if (name, policy) in slow else []
      yield pytest.param(name, policy, marks=marks, id=f"{name}-{policy}")


@pytest.mark.parametrize("name, policy", _policy_cases())
def test_model_under_dtype_policy(name, policy):
  keras.utils.set_random_seed(0)
  model, data, likelihood = MODELS[name](policy)
  reference, _, _ = MODELS[name]("float32")
  # Weights moved off their initial values, so every layer matters.
  rng = _rng(13)
  for weight in reference.trainable_weights:
    weight.assign(weight.numpy() + 0.05 * rng.normal(size=weight.shape))
  model.set_weights(reference.get_weights())

  # The likelihood is computed in the variables' dtype (float32 under the
  # mixed policies), the networks in the policy's compute dtype.
  variable_dtype = "float64" if policy == "float64" else "float32"
  assert model.likelihood_dtype == variable_dtype
  values = likelihood(model)
  assert values.dtype == variable_dtype
  for weight in model.weights:
    if weight.dtype not in ("int32", "int64"):
      assert weight.dtype == variable_dtype, weight.path
  for layer in NETWORKS[name](model):
    assert layer.compute_dtype == model.dtype_policy.compute_dtype
  want = likelihood(reference).numpy()
  error = np.abs(values.numpy() - want).max() / np.abs(want).max()
  print(f"{name} under {policy}: relative error {error:.2g}")  # pytest -s
  assert error <= POLICY_TOLERANCE[policy]

  # A few steps of fit: finite, none skipped, the weights move.
  model.compile(optimizer=keras.optimizers.Adam(1e-3))
  assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (
      policy == "mixed_float16")
  if policy == "mixed_float16":
    # Keras' loss scale starts at 2^15, which overflows Glow's first steps
    # (each skipped, the scale halved): four steps would all be skipped.
    model.optimizer.build(model.trainable_variables)
    model.optimizer.dynamic_scale.assign(2.**4)
  before = [w.numpy().copy() for w in model.trainable_weights]
  if name == "energy_flow":
    history = model.fit(data, epochs=1, steps_per_epoch=4, verbose=0)
  elif isinstance(data, tuple):  # (images, labels)
    history = model.fit(*data, batch_size=8, epochs=1, verbose=0)
  else:
    history = model.fit(data, batch_size=8, epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"]).all()
  assert history.history["skipped_steps"][-1] == 0
  assert any(not np.array_equal(w.numpy(), b)
             for w, b in zip(model.trainable_weights, before, strict=True))
  assert np.all(np.isfinite(likelihood(model).numpy()))
