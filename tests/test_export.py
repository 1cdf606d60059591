"""SavedModel export, tested the way TF Serving uses it: loaded in a fresh
process that cannot import tfp_flows, TensorFlow Probability or Keras,
every signature called and matched against the model in this process."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from image_checks import assert_equal_up_to_rounding, equal_up_to_rounding
from tfp_flows.export import export_saved_model, next_version
from tfp_flows.models import FlowVAE, GlowModel

# Runs in a fresh interpreter: blocks the Python packages TF Serving would not
# have, loads the export, calls every signature on the inputs in an .npz and
# writes the outputs to another .npz; bad requests are recorded with their
# error messages.
LOADER = textwrap.dedent("""
    import importlib.abc, importlib.machinery, json, os, sys

    class Blocked(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        # Found, but failing on import: TensorFlow's own start-up only looks
        # for Keras with find_spec and goes on without it.
        names = ("tfp_flows", "tensorflow_probability", "keras", "tf_keras")
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in self.names:
                return importlib.machinery.ModuleSpec(name, self)
        def create_module(self, spec):
            raise ImportError(f"{spec.name} is blocked in this process")
        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Blocked())
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    export_dir, inputs_path, outputs_path = sys.argv[1:4]
    requests = json.loads(sys.argv[4])
    bad_requests = json.loads(sys.argv[5])
    inputs = dict(np.load(inputs_path))
    loaded = tf.saved_model.load(export_dir)
    outputs = {}
    for signature, arguments in requests.items():
        result = loaded.signatures[signature](
            **{name: tf.constant(inputs[key]) for name, key in arguments.items()})
        for name, value in result.items():
            outputs[f"{signature}/{name}"] = value.numpy()
    np.savez(outputs_path, **outputs)

    errors = {}
    for label, (signature, arguments) in bad_requests.items():
        try:
            loaded.signatures[signature](
                **{name: tf.constant(inputs[key])
                   for name, key in arguments.items()})
            errors[label] = None
        except Exception as error:  # what a client would see
            errors[label] = f"{type(error).__name__}: {error}"

    graph = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        graph.ParseFromString(f.read())
    ops = set()
    for meta_graph in graph.meta_graphs:
        ops |= {node.op for node in meta_graph.graph_def.node}
        for function in meta_graph.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    print(json.dumps({
        "signatures": sorted(loaded.signatures.keys()),
        "errors": errors,
        "ops": sorted(ops),
        "non_core_ops": sorted(op for op in ops if not hasattr(tf.raw_ops, op)),
        "imported": sorted(m for m in ("tfp_flows", "tensorflow_probability",
                                       "keras", "tf_keras") if m in sys.modules
                           and sys.modules[m] is not None),
    }))
""")


def _serve(export_path, tmp_path, inputs, requests, bad_requests):
  """Loads and calls the export in a fresh process; its outputs and report."""
  inputs_path, outputs_path = tmp_path / "inputs.npz", tmp_path / "outputs.npz"
  np.savez(inputs_path, **inputs)
  result = subprocess.run(
      [sys.executable, "-c", LOADER, str(export_path), str(inputs_path),
       str(outputs_path), json.dumps(requests), json.dumps(bad_requests)],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  return dict(np.load(outputs_path)), report


def _saved_model_cli(export_path):
  result = subprocess.run(
      [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show",
       "--dir", str(export_path), "--all"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _check_report(report, signatures):
  assert report["signatures"] == sorted(signatures + ["serving_default"])
  assert report["imported"] == []
  assert report["non_core_ops"] == []
  assert "StatefulPartitionedCall" in report["ops"]  # the graphs were read


def _assert_clear_error(message, *words):
  assert message is not None, "the bad request succeeded"
  for word in words:
    assert word in message, message[-2000:]


@pytest.fixture(scope="module", params=["unpadded", "padded_mixture"])
def glow_and_images(request):
  rng = np.random.default_rng(0)
  # 14 x 14 digits in a 16 x 16 frame, with a top mixture: the signatures
  # take and give 14 x 14 images, and latents of the frame's 256.
  size, options = ((16, {}) if request.param == "unpadded" else
                   (14, {"padding": 1, "top_mixture_components": 3}))
  images = rng.integers(0, 256, size=(6, size, size, 1)).astype(np.uint8)
  model = GlowModel(image_shape=(size, size, 1), num_levels=2, num_steps=2,
                    hidden_channels=8, **options)
  model.initialize(images)
  # Non-trivial couplings (their last layers start at zero).
  for variable in model.trainable_variables:
    variable.assign(variable + 0.05 * rng.normal(size=variable.shape))
  return model, images


@pytest.mark.slow  # a fresh process per signature check; FlowVAE's twin stays in the default suite
def test_glow_export_serves_every_signature_without_tfp(glow_and_images,
                                                        tmp_path):
  model, images = glow_and_images
  export_path = export_saved_model(model, tmp_path / "glow")
  assert export_path == tmp_path / "glow" / "1"

  latents = model.encode(images).numpy()
  inputs = {"images": images, "latents": latents,
            "num_samples": np.int32(3), "temperature": np.float32(0.),
            "images_float": images.astype(np.float32),
            "images_wrong_size": np.zeros((2, 8, 8, 1), np.uint8),
            "images_wrong_rank": np.zeros(images.shape[1:], np.uint8),
            "latents_wrong_size": np.zeros((2, 7), np.float32),
            "negative": np.int32(-1)}
  requests = {
      "log_prob": {"images": "images"},
      "serving_default": {"images": "images"},
      "encode": {"images": "images"},
      "decode": {"latents": "latents"},
      "sample": {"num_samples": "num_samples", "temperature": "temperature"},
  }
  bad = {
      "dtype": ["log_prob", {"images": "images_float"}],
      "size": ["log_prob", {"images": "images_wrong_size"}],
      "rank": ["encode", {"images": "images_wrong_rank"}],
      "latents": ["decode", {"latents": "latents_wrong_size"}],
      "negative": ["sample", {"num_samples": "negative",
                              "temperature": "temperature"}],
  }
  served, report = _serve(export_path, tmp_path, inputs, requests, bad)
  _check_report(report, ["log_prob", "sample", "encode", "decode"])

  log_prob = model.log_prob(images).numpy()
  np.testing.assert_allclose(served["log_prob/log_prob"], log_prob, rtol=1e-6)
  np.testing.assert_allclose(served["serving_default/log_prob"], log_prob,
                             rtol=1e-6)
  np.testing.assert_allclose(served["log_prob/bits_per_dim"],
                             model.bits_per_dim(log_prob), rtol=1e-6)
  np.testing.assert_allclose(served["encode/latents"], latents, atol=1e-5)
  assert served["decode/images"].dtype == np.uint8
  np.testing.assert_array_equal(served["decode/images"], images)
  # Temperature 0 samples the latent origin (with a top mixture: the
  # origin of the exits and a component's mean at the top).
  top = model.top_mixture.event_size if model.top_mixture else 0
  origins = [np.zeros((1, model.event_size), np.float32)]
  if top:
    origins = [np.concatenate([origins[0][:, :-top], mean[None]], 1)
               for mean in model.top_mixture.means.numpy()]
  decoded = [model.decode(origin).numpy()[0] for origin in origins]
  assert served["sample/images"].shape == (3, *images.shape[1:])
  for image in served["sample/images"]:
    assert any(equal_up_to_rounding(image, d) for d in decoded)

  errors = report["errors"]
  shape = ", ".join(map(str, images.shape[1:]))
  _assert_clear_error(errors["dtype"], "uint8")
  _assert_clear_error(errors["size"], f"images must have shape [N, {shape}]")
  _assert_clear_error(errors["rank"], f"images must have shape [N, {shape}]")
  _assert_clear_error(errors["latents"], "latents must have shape [N, 256]")
  _assert_clear_error(errors["negative"], "num_samples must be >= 0")

  shown = _saved_model_cli(export_path)
  for signature in ("serving_default", "log_prob", "sample", "encode",
                    "decode"):
    assert f"signature_def['{signature}']" in shown
  for text in ("inputs['images'] tensor_info:", "dtype: DT_UINT8",
               f"shape: (-1, {shape})", "outputs['bits_per_dim']",
               "inputs['num_samples']", "inputs['temperature']",
               "outputs['latents']"):
    assert text in shown, text


@pytest.mark.slow  # a fresh process, as the unconditional Glow's
@pytest.mark.parametrize("conditional_flow", [False, True],
                         ids=["top_prior", "conditional_flow"])
def test_conditional_glow_export_takes_labels_in_every_signature(
    tmp_path, conditional_flow):
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, size=(6, 16, 16, 1)).astype(np.uint8)
  labels = np.array([0, 1, 2, 2, 1, 0], np.int32)
  model = GlowModel(image_shape=(16, 16, 1), num_levels=2, num_steps=2,
                    hidden_channels=8, num_classes=3,
                    conditional_flow=conditional_flow)
  model.initialize((images, labels))
  for variable in model.trainable_variables:  # per-class weights included
    variable.assign(variable + 0.05 * rng.normal(size=variable.shape))
  export_path = export_saved_model(model, tmp_path / "glow")

  latents = model.encode(images, labels).numpy()
  inputs = {"images": images, "labels": labels, "latents": latents,
            "temperature": np.float32(0.),
            "labels_out_of_range": np.array([0, 1, 2, 3, 1, 0], np.int32),
            "labels_too_few": labels[:4], "labels_matrix": labels[None]}
  requests = {
      "log_prob": {"images": "images", "labels": "labels"},
      "marginal_log_prob": {"images": "images"},
      "encode": {"images": "images", "labels": "labels"},
      "decode": {"latents": "latents", "labels": "labels"},
      "sample": {"labels": "labels", "temperature": "temperature"},
  }
  bad = {
      "range": ["log_prob", {"images": "images",
                             "labels": "labels_out_of_range"}],
      "count": ["encode", {"images": "images", "labels": "labels_too_few"}],
      "rank": ["sample", {"labels": "labels_matrix",
                          "temperature": "temperature"}],
  }
  served, report = _serve(export_path, tmp_path, inputs, requests, bad)
  _check_report(report, ["log_prob", "marginal_log_prob", "sample", "encode",
                         "decode"])
  log_prob = model.log_prob(images, labels).numpy()
  np.testing.assert_allclose(served["log_prob/log_prob"], log_prob, rtol=1e-6)
  np.testing.assert_allclose(served["marginal_log_prob/log_prob"],
                             model.marginal_log_prob(images).numpy(),
                             rtol=1e-6)
  # The label matters: the same images under other labels score otherwise.
  assert np.abs(model.log_prob(images, (labels + 1) % 3).numpy()
                - log_prob).max() > 1e-3
  np.testing.assert_allclose(served["encode/latents"], latents, atol=1e-5)
  np.testing.assert_array_equal(served["decode/images"], images)
  # Temperature 0: the origin of each label's latent space, one per label.
  origin = model.decode(np.zeros((6, model.event_size), np.float32),
                        labels).numpy()
  assert_equal_up_to_rounding(served["sample/images"], origin)
  errors = report["errors"]
  _assert_clear_error(errors["range"], "labels must be in [0, 3)")
  _assert_clear_error(errors["count"], "one entry per image")
  _assert_clear_error(errors["rank"], "labels must have shape [N]")
  shown = _saved_model_cli(export_path)
  assert "inputs['labels'] tensor_info:" in shown and "DT_INT32" in shown


def test_flow_vae_export_serves_every_signature_without_tfp(tmp_path):
  rng = np.random.default_rng(1)
  images = (rng.uniform(size=(5, 12, 12, 1)) < 0.4).astype(np.uint8)
  model = FlowVAE(latent_dim=3, flow="planar", num_flows=2, hidden_units=(16,),
                  image_shape=(12, 12, 1))
  export_path = export_saved_model(model, tmp_path / "vae")

  latents = rng.normal(size=(4, 3)).astype(np.float32)
  inputs = {"images": images, "latents": latents, "num_samples": np.int32(7),
            "non_binary": np.full((2, 12, 12, 1), 7, np.uint8),
            "images_float": images.astype(np.float32)}
  requests = {
      "elbo": {"images": "images"},
      "serving_default": {"images": "images"},
      "encode": {"images": "images"},
      "decode": {"latents": "latents"},
      "sample": {"num_samples": "num_samples"},
  }
  bad = {"non_binary": ["elbo", {"images": "non_binary"}],
         "dtype": ["encode", {"images": "images_float"}]}
  served, report = _serve(export_path, tmp_path, inputs, requests, bad)
  _check_report(report, ["elbo", "encode", "decode", "sample"])

  elbo = model.elbo(images).numpy()
  np.testing.assert_allclose(served["elbo/elbo"], elbo, rtol=1e-5)
  np.testing.assert_allclose(served["serving_default/elbo"], elbo, rtol=1e-5)
  mean, sampled = model.encode(images)
  np.testing.assert_allclose(served["encode/mean"], mean, atol=1e-5)
  np.testing.assert_allclose(served["encode/latents"], sampled, atol=1e-5)
  np.testing.assert_allclose(served["decode/probs"], model.decode(latents),
                             atol=1e-6)
  assert served["sample/images"].shape == (7, 12, 12, 1)
  assert served["sample/images"].dtype == np.uint8
  assert set(np.unique(served["sample/images"])) <= {0, 1}
  assert np.all((served["sample/probs"] > 0) & (served["sample/probs"] < 1))

  _assert_clear_error(report["errors"]["non_binary"],
                      "FlowVAE expects binary images")
  _assert_clear_error(report["errors"]["dtype"], "uint8")
  shown = _saved_model_cli(export_path)
  for signature in ("serving_default", "elbo", "encode", "decode", "sample"):
    assert f"signature_def['{signature}']" in shown
  for text in ("outputs['elbo']", "outputs['mean']", "outputs['probs']"):
    assert text in shown, text


@pytest.mark.slow  # three Glow exports
@pytest.mark.parametrize("glow_and_images", ["unpadded"], indirect=True)
def test_versions_count_up_and_are_never_overwritten(glow_and_images,
                                                     tmp_path):
  model, _ = glow_and_images
  assert next_version(tmp_path / "none_yet") == 1
  first = export_saved_model(model, tmp_path / "glow")
  second = export_saved_model(model, tmp_path / "glow")
  assert (first.name, second.name) == ("1", "2")
  assert next_version(tmp_path / "glow") == 3
  with pytest.raises(FileExistsError, match="never overwritten"):
    export_saved_model(model, tmp_path / "glow", version=2)
  # Nothing half-written is left beside the versions.
  assert sorted(p.name for p in (tmp_path / "glow").iterdir()) == ["1", "2"]


def test_export_refuses_what_it_cannot_serve(tmp_path):
  with pytest.raises(ValueError, match="not initialized"):
    export_saved_model(GlowModel(image_shape=(8, 8, 1), num_steps=1,
                                 hidden_channels=4), tmp_path / "glow")
  with pytest.raises(TypeError, match="GlowModel or FlowVAE"):
    export_saved_model(tf.Module(), tmp_path / "other")
  with pytest.raises(ValueError, match="positive integer"):
    export_saved_model(FlowVAE(latent_dim=2, num_flows=1, hidden_units=(4,)),
                       tmp_path / "vae", version=0)
