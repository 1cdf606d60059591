"""Data loading on bad input: a `DataError` (or TypeError/ValueError for a
bad argument) that names the file or argument, what was expected and what
was found. Complements test_data.py, which covers a missing directory, no
IDX files, a non-IDX file, a truncated body, a corrupt gzip, split sizes and
binarized MNIST's files."""

import gzip
import struct

import numpy as np
import pytest

from tfp_flows import data


def _write_idx(path, array, type_code=0x08, compress=False):
  raw = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(
      f">{array.ndim}I", *array.shape) + array.tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)
  return path


def _digits(n, size=28):
  return np.random.default_rng(n).integers(0, 256, (n, size, size), np.uint8)


@pytest.mark.parametrize("content,match", [
    (b"", "not an IDX file: .*found an empty file"),
    (b"\x00\x01\x08\x03" + b"\x00" * 12, "not an IDX file: .*found 00 01 08 03"),
    (b"\x00\x00\x07\x03" + b"\x00" * 12, "not an IDX file: .*found 00 00 07 03"),
    (b"\x00\x00\x08\x03\x00\x00", r"truncated IDX header \(6 bytes\)"),
], ids=["empty", "magic", "type_code", "header"])
def test_read_idx_names_file_and_problem(tmp_path, content, match):
  path = tmp_path / "x-images-idx3-ubyte"
  path.write_bytes(content)
  prefix = "x-images-idx3-ubyte: " if "truncated" in match else (
      "x-images-idx3-ubyte is ")
  with pytest.raises(data.DataError, match=prefix + match):
    data.read_idx(path)


def test_read_idx_missing_file_and_directory(tmp_path):
  with pytest.raises(data.DataError, match="IDX file not found: .*nope"):
    data.read_idx(tmp_path / "nope")
  with pytest.raises(data.DataError, match="cannot read IDX file .*Is a directory"):
    data.read_idx(tmp_path)


def test_read_idx_extra_bytes_and_truncated_gzip(tmp_path):
  path = _write_idx(tmp_path / "a-images-idx3-ubyte", _digits(2))
  path.write_bytes(path.read_bytes() + b"xx")
  with pytest.raises(data.DataError, match="promises shape.*holds 1570 bytes"):
    data.read_idx(path)
  path = _write_idx(tmp_path / "b-images-idx3-ubyte.gz", _digits(2),
                    compress=True)
  path.write_bytes(path.read_bytes()[:-8])
  with pytest.raises(data.DataError, match="cannot read IDX file .*b-images"):
    data.read_idx(path)


def test_gzip_name_on_a_plain_file_still_reads(tmp_path):
  """The content decides, not the name: a plain file called .gz is read."""
  path = _write_idx(tmp_path / "a-images-idx3-ubyte.gz", _digits(3))
  np.testing.assert_array_equal(data.read_idx(path), _digits(3))


@pytest.mark.parametrize("array,type_code,found", [
    (np.zeros((4, 28, 28), ">f4"), 0x0D, r">f4 of shape \(4, 28, 28\)"),
    (np.zeros((4, 784), np.uint8), 0x08, r"uint8 of shape \(4, 784\)"),
    (np.zeros((4, 28, 28, 1), np.uint8), 0x08, r"uint8 of shape \(4, 28, 28, 1\)"),
], ids=["float", "rank2", "rank4"])
def test_wrong_image_dtype_or_rank_in_idx(tmp_path, array, type_code, found):
  _write_idx(tmp_path / "a-images-idx3-ubyte", array, type_code)
  with pytest.raises(data.DataError, match=(
      "a-images-idx3-ubyte: expected uint8 images of shape \\[N, H, W\\]; "
      "got " + found)):
    data.load_mnist_idx(tmp_path, 1, 1)


def test_idx_with_no_images(tmp_path):
  """An empty t10k file used to give an empty test split silently."""
  _write_idx(tmp_path / "train-images-idx3-ubyte", _digits(10))
  _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
  with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte: holds no "
                                           r"images \(shape \(0, 28, 28\)\)"):
    data.load_mnist_idx(tmp_path, validation_size=2)


def test_idx_files_of_different_image_sizes(tmp_path):
  """Used to fail inside np.concatenate without naming a file."""
  _write_idx(tmp_path / "a-images-idx3-ubyte", _digits(10))
  _write_idx(tmp_path / "b-images-idx3-ubyte", _digits(10, size=20))
  with pytest.raises(data.DataError, match=(
      r"different sizes \(H, W\): .*a-images-idx3-ubyte: \(28, 28\), "
      r".*b-images-idx3-ubyte: \(20, 20\)")):
    data.load_mnist_idx(tmp_path, 2, 2)
  official = tmp_path / "official"
  official.mkdir()
  _write_idx(official / "train-images-idx3-ubyte", _digits(10))
  _write_idx(official / "t10k-images-idx3-ubyte", _digits(3, size=20))
  with pytest.raises(data.DataError, match="different sizes"):
    data.load_mnist_idx(official, 2)


def test_load_mnist_with_a_bad_data_dir(tmp_path):
  with pytest.raises(data.DataError, match="--data-dir .*missing is not a directory"):
    data.load_mnist(tmp_path / "missing")
  file = tmp_path / "file"
  file.write_text("x")
  with pytest.raises(data.DataError, match="--data-dir .*file is not a directory"):
    data.load_mnist(file)
  # A folder named like an IDX file is not one.
  (tmp_path / "d").mkdir()
  (tmp_path / "d" / "train-images-idx3-ubyte").mkdir()
  with pytest.raises(data.DataError, match="cannot read IDX file .*Is a directory"):
    data.load_mnist(tmp_path / "d")


def test_binarized_mnist_missing_manual_dir(tmp_path):
  with pytest.raises(data.DataError, match="nodir lacks .*no such directory"):
    data.load_binarized_mnist(tmp_path / "nodir", data_dir=tmp_path / "tfds")


IMAGES = np.zeros((5, 28, 28, 1), np.uint8)


@pytest.mark.parametrize("batch_size,error,match", [
    (0, ValueError, "batch_size must be >= 1; got 0"),
    (-3, ValueError, "batch_size must be >= 1; got -3"),
    (2.5, TypeError, r"batch_size must be an int >= 1; got 2.5 \(float\)"),
    ("4", TypeError, r"batch_size must be an int >= 1; got '4' \(str\)"),
    (None, TypeError, "batch_size must be an int >= 1; got None"),
    (True, TypeError, "batch_size must be an int >= 1; got True"),
])
def test_image_dataset_rejects_bad_batch_sizes(batch_size, error, match):
  with pytest.raises(error, match="image_dataset: " + match):
    data.image_dataset(IMAGES, batch_size)


@pytest.mark.parametrize("images,match", [
    (np.zeros((0, 28, 28, 1), np.uint8), r"images is empty \(shape \(0, 28, 28, 1\)\)"),
    (np.zeros((), np.uint8), r"images must have shape \[N, ...\].*got shape \(\)"),
    (np.zeros((5,), np.uint8), r"images must have shape \[N, ...\].*got shape \(5,\)"),
], ids=["empty", "scalar", "rank1"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_image_dataset_rejects_empty_and_wrong_rank(images, match, shuffle):
  with pytest.raises(data.DataError, match="image_dataset: " + match):
    data.image_dataset(images, 2, shuffle=shuffle)


def test_image_dataset_shuffled_batch_larger_than_the_data():
  """drop_remainder would leave no batch at all: training that does nothing."""
  with pytest.raises(data.DataError, match="batch_size 10 exceeds the 5 images"):
    data.image_dataset(IMAGES, 10, shuffle=True)
  # Without shuffling the one partial batch is kept; repeating fills batches.
  assert [len(b) for b in data.image_dataset(IMAGES, 10)] == [5]
  batch = next(iter(data.image_dataset(IMAGES, 10, shuffle=True, repeat=True)))
  assert batch.shape[0] == 10


def test_image_dataset_batch_of_one_and_numpy_int():
  batches = list(data.image_dataset(IMAGES, np.int64(1)))
  assert len(batches) == 5 and batches[0].shape == (1, 28, 28, 1)
