"""Shared test set-up: quiet TensorFlow logs, locate the shared data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# ../shared/data beside the project root, when this machine has it; tests that
# need real data fall back to small data they make themselves.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir():
  return SHARED_DATA if SHARED_DATA.is_dir() else None
