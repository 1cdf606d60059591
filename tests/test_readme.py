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
