"""The README's quickstart runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_code_runs():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks, "README has no python quickstart block"
  namespace = {}
  exec(compile(blocks[0], "README.md quickstart", "exec"), namespace)
  assert len(namespace["flow"].trainable_variables) == 6
  assert namespace["z"].shape == (100, 2)


@pytest.mark.slow  # trains Glow for an epoch; CI runs it after the default suite
def test_glow_snippet_runs(shared_data_dir, monkeypatch):
  if shared_data_dir is None:
    pytest.skip("the snippet reads ../shared/data/mnist")
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  glow_block = next(b for b in blocks if "GlowModel" in b)
  monkeypatch.chdir(README.parent)
  namespace = {}
  exec(compile(glow_block, "README.md Glow snippet", "exec"), namespace)
  assert namespace["log_p"].shape == (100,)
  assert namespace["model"].sample(2).dtype.name == "uint8"


@pytest.mark.slow  # trains a FlowVAE on binarized MNIST
def test_flow_vae_snippet_runs(shared_data_dir, monkeypatch):
  if shared_data_dir is None:
    pytest.skip("the snippet reads ../shared/data/binarized_mnist")
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  block = next(b for b in blocks if "FlowVAE" in b)
  # The README's 5000 samples per digit are papers' choice; 100 keeps the
  # suite fast and runs the same code.
  block = block.replace("num_samples=5000", "num_samples=100")
  monkeypatch.chdir(README.parent)
  namespace = {}
  exec(compile(block, "README.md FlowVAE snippet", "exec"), namespace)
  model, test = namespace["model"], namespace["splits"]["test"][:100]
  elbo = namespace["model"].elbo(test).numpy()
  import numpy as np
  from tfp_flows.evaluation import importance_log_likelihood
  log_p = importance_log_likelihood(model, test, num_samples=100,
                                    progress=False)
  # One annealed epoch (beta still ~0.06) gives a poor but finite ELBO; the
  # importance-sampled estimate bounds it.
  assert np.all(np.isfinite(elbo)) and log_p.mean() > elbo.mean()


@pytest.mark.slow  # a TrainingRun, with exports
def test_training_from_python_snippet_runs(shared_data_dir, tmp_path,
                                           monkeypatch, capsys):
  import json
  if shared_data_dir is None:
    pytest.skip("the snippet reads ../shared/data/mnist")
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  block = next(b for b in blocks if "training.TrainingRun" in b)
  # Its runs/ and saved_models/ go to a temporary folder; the data stay.
  assert '"../shared/data/mnist"' in block
  block = block.replace('"../shared/data/mnist"',
                        repr(str(shared_data_dir / "mnist")))
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(block, "README.md training snippet", "exec"), namespace)
  metrics = json.loads((tmp_path / "runs/my_glow/metrics.json").read_text())
  assert metrics == namespace["metrics"]
  assert 0 < metrics["test_bits_per_dim"] < 8
  assert metrics["steps"] == len(namespace["splits"]["train"]) // 64
  assert len(metrics["history"]["bits_per_dim"]) == 1
  assert (tmp_path / "runs/my_glow/samples/samples_epoch_001.png").exists()
  assert (tmp_path / "runs/my_glow/learning_curve.png").exists()
  assert (tmp_path / "saved_models/my_glow/glow.keras").exists()
  assert (tmp_path / "saved_models/my_glow/1/saved_model.pb").exists()
  assert "SavedModel for TF Serving" in capsys.readouterr().out


@pytest.mark.slow  # trains a class-conditional Glow for an epoch
def test_conditional_glow_snippet_runs(shared_data_dir, monkeypatch):
  if shared_data_dir is None:
    pytest.skip("the snippet reads ../shared/data/mnist")
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  glow_block = next(b for b in blocks if "GlowModel" in b)
  block = next(b for b in blocks if "num_classes=10" in b)
  monkeypatch.chdir(README.parent)
  namespace = {}
  # The conditional snippet continues the Glow one (its imports).
  exec(compile(glow_block.split("splits =")[0] + block,
               "README.md conditional Glow snippet", "exec"), namespace)
  model = namespace["model"]
  assert model.sample(10, temperature=0.7, labels=7).shape == (10, 28, 28, 1)
  assert model.log_prob(namespace["images"][:8],
                        namespace["labels"][:8]).shape == (8,)
