"""The README's quickstart runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_code_runs():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  assert blocks, "README has no python quickstart block"
  namespace = {}
  exec(compile(blocks[0], "README.md quickstart", "exec"), namespace)
  assert len(namespace["flow"].trainable_variables) == 6
  assert namespace["z"].shape == (100, 2)


def test_glow_snippet_runs(shared_data_dir, monkeypatch):
  import pytest
  if shared_data_dir is None:
    pytest.skip("the snippet reads ../shared/data/mnist")
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
  glow_block = next(b for b in blocks if "GlowModel" in b)
  monkeypatch.chdir(README.parent)
  namespace = {}
  exec(compile(glow_block, "README.md Glow snippet", "exec"), namespace)
  assert namespace["log_p"].shape == (100,)
  assert namespace["model"].sample(2).dtype.name == "uint8"
