"""MNIST loading: IDX parsing, splits, and errors that name the problem."""

import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest

from tfp_flows import data


def _write_idx(path, array, compress=False):
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape)
  raw = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)
  return path


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path, compress):
  images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), np.uint8)
  path = _write_idx(tmp_path / "x-images-idx3-ubyte", images, compress)
  np.testing.assert_array_equal(data.read_idx(path), images)


def test_shared_mnist_loads_into_disjoint_seeded_splits(shared_data_dir):
  if shared_data_dir is None:
    pytest.skip("no ../shared/data here; the synthetic-file tests cover parsing")
  splits = data.load_mnist_idx(shared_data_dir / "mnist", validation_size=1000,
                               test_size=500)
  assert {k: len(v) for k, v in splits.items()} == {
      "train": 6500, "validation": 1000, "test": 500}
  for images in splits.values():
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.uint8
  # Real 8-bit digits: mostly black, with strokes that reach full intensity.
  train = splits["train"]
  assert train.max() == 255 and 0.6 < np.mean(train == 0) < 0.95
  again = data.load_mnist_idx(shared_data_dir / "mnist", 1000, 500)
  np.testing.assert_array_equal(again["validation"], splits["validation"])


def test_official_layout_uses_t10k_as_test(tmp_path):
  rng = np.random.default_rng(1)
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz",
             rng.integers(0, 256, (20, 28, 28)), compress=True)
  _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (7, 28, 28)))
  splits = data.load_mnist_idx(tmp_path, validation_size=5)
  assert {k: len(v) for k, v in splits.items()} == {
      "train": 15, "validation": 5, "test": 7}


def test_errors_name_the_file_and_the_problem(tmp_path):
  with pytest.raises(data.DataError, match="not a directory"):
    data.find_mnist_idx_files(tmp_path / "missing")
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(data.DataError, match="no MNIST IDX files.*notes.txt"):
    data.find_mnist_idx_files(tmp_path)
  corrupt = tmp_path / "bad-images-idx3-ubyte"
  corrupt.write_bytes(b"PK\x03\x04 not an idx file")
  with pytest.raises(data.DataError, match="bad-images-idx3-ubyte is not an IDX"):
    data.read_idx(corrupt)
  truncated = _write_idx(tmp_path / "cut-images-idx3-ubyte",
                         np.zeros((4, 28, 28), np.uint8))
  truncated.write_bytes(truncated.read_bytes()[:-10])
  with pytest.raises(data.DataError, match="truncated or corrupt"):
    data.read_idx(truncated)
  bad_gzip = tmp_path / "z-images-idx3-ubyte.gz"
  bad_gzip.write_bytes(b"\x1f\x8b\x08garbage")
  with pytest.raises(data.DataError, match="cannot read"):
    data.read_idx(bad_gzip)


def test_split_sizes_are_checked(tmp_path):
  _write_idx(tmp_path / "a-images-idx3-ubyte", np.zeros((10, 28, 28)))
  with pytest.raises(data.DataError, match="cannot hold out"):
    data.load_mnist_idx(tmp_path, validation_size=6, test_size=4)


_LOAD_AND_SUMMARIZE = """
import sys
from tfp_flows import data
splits = data.load_binarized_mnist(sys.argv[1], data_dir=sys.argv[2])
print({name: images.shape for name, images in splits.items()})
"""


@pytest.mark.slow  # TFDS builds the dataset from the .amat files
def test_binarized_mnist_through_tfds_manual_dir(shared_data_dir, tmp_path):
  if shared_data_dir is None:
    pytest.skip("no ../shared/data here; the error tests cover the checks")
  # Two runs started together on a fresh machine both build the dataset:
  # TFDS alone let them break each other's build (seen with two table rows).
  command = [sys.executable, "-c", _LOAD_AND_SUMMARIZE,
             str(shared_data_dir / "binarized_mnist"), str(tmp_path)]
  builds = [subprocess.Popen(command, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
  for build in builds:
    stdout, stderr = build.communicate(timeout=600)
    assert build.returncode == 0, stderr[-2000:]
    assert "'test': (10000, 28, 28, 1)" in stdout
  splits = data.load_binarized_mnist(shared_data_dir / "binarized_mnist",
                                     data_dir=tmp_path)
  assert {k: v.shape for k, v in splits.items()} == {
      "train": (50000, 28, 28, 1), "validation": (10000, 28, 28, 1),
      "test": (10000, 28, 28, 1)}
  for images in splits.values():
    assert images.dtype == np.uint8 and set(np.unique(images)) == {0, 1}
  # Digits: about 13% of the pixels on (Larochelle & Murray's binarization).
  assert 0.1 < splits["test"].mean() < 0.16


def test_binarized_mnist_errors_name_the_files(tmp_path):
  with pytest.raises(data.DataError, match="lacks.*binarized_mnist_train.amat"):
    data.load_binarized_mnist(tmp_path, data_dir=tmp_path / "tfds")
  # Files with the right names but not the standard binarization.
  rng = np.random.default_rng(0)
  for name in data.BINARIZED_MNIST_FILES.values():
    np.savetxt(tmp_path / name, rng.integers(0, 2, (5, 784)), fmt="%d")
  with pytest.raises(data.DataError, match="not the standard binarization"):
    data.load_binarized_mnist(tmp_path, data_dir=tmp_path / "tfds")
