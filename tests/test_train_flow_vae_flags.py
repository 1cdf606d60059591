"""examples/train_flow_vae.py's regularization flags, imported: decoupled
weight decay reaches the kernels it should and no others; bad values are
refused by name."""

import importlib.util
import pathlib

import numpy as np
import pytest

from tfp_flows.models import FlowVAE

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / (
    "train_flow_vae.py")


def _load_example():
  spec = importlib.util.spec_from_file_location("_example_train_flow_vae",
                                                EXAMPLE)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


train_flow_vae = _load_example()


@pytest.mark.parametrize("optimizer", ["adam", "adamax", "rmsprop"])
def test_weight_decay_scales_the_kernels_but_not_biases_or_the_flow_head(
    optimizer):
  model = FlowVAE(latent_dim=4, flow="planar", num_flows=2, hidden_units=[8],
                  image_shape=(28, 28, 1))
  model(np.zeros((2, 28, 28, 1), np.float32))
  learning_rate, weight_decay = 1e-2, 3.
  adam_like = train_flow_vae.make_optimizer(optimizer, learning_rate,
                                            weight_decay)
  before = {v.path: v.numpy() for v in model.trainable_variables}
  # Zero gradients move no weight under any of the three optimizers, so
  # what changes is the decay alone.
  adam_like.apply([np.zeros(v.shape, np.float32)
                   for v in model.trainable_variables],
                  model.trainable_variables)
  decayed = []
  for variable in model.trainable_variables:
    want = before[variable.path]
    if variable.path.endswith("kernel") and "flow_head" not in variable.path:
      want = want * (1. - learning_rate * weight_decay)
      decayed.append(variable.path)
    np.testing.assert_allclose(variable.numpy(), want, rtol=1e-6,
                               err_msg=variable.path)
  assert decayed == ["encoder_0/kernel", "posterior_head/kernel",
                     "decoder_0/kernel", "logits_head/kernel"]


def test_no_weight_decay_by_default():
  assert train_flow_vae.parse_args([]).weight_decay == 0.
  assert train_flow_vae.make_optimizer("adamax", 1e-3).weight_decay is None


@pytest.mark.parametrize("flag, value", [("--weight-decay", "-0.1"),
                                         ("--dropout", "1"),
                                         ("--dropout", "-0.2")])
def test_bad_regularization_flags_are_refused_by_name(flag, value, capsys):
  with pytest.raises(SystemExit) as stop:
    train_flow_vae.parse_args([flag, value])
  assert stop.value.code == 2
  assert flag in capsys.readouterr().err


def test_dropout_flag_reaches_the_model():
  assert train_flow_vae.parse_args([]).dropout == 0.
  assert train_flow_vae.parse_args(["--dropout", "0.25"]).dropout == 0.25
