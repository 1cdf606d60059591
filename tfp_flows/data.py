"""Datasets: MNIST from IDX files or TFDS, binarized MNIST from TFDS.

Every loader returns NumPy arrays of images `[N, 28, 28, 1]` (uint8; 0..255
for MNIST, 0/1 for binarized MNIST) and the
same code path serves users, tests and benchmarks. Errors say which file or
folder, what was expected and what was found.
"""

import contextlib
import gzip
import pathlib
import socket
import struct
import sys
import urllib.parse

import numpy as np
import tensorflow as tf

from tfp_flows.validation import positive_int

__all__ = ["DataError", "read_idx", "find_mnist_idx_files", "load_mnist_idx",
           "load_mnist_tfds", "load_mnist", "load_binarized_mnist",
           "BINARIZED_MNIST_FILES", "image_dataset"]

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
               0x0E: np.dtype(">f8")}


class DataError(ValueError):
  """Data missing, unreadable or not what was expected."""


def read_idx(path):
  """Reads an IDX file (gzipped or not) into a NumPy array.

  The format: two zero bytes, a type code, the number of dimensions, each
  dimension as a big-endian uint32, then the values in C order.
  """
  path = pathlib.Path(path)
  try:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except FileNotFoundError:
    raise DataError(f"IDX file not found: {path}") from None
  except (OSError, EOFError, gzip.BadGzipFile) as error:
    raise DataError(f"cannot read IDX file {path}: {error}") from None
  if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
    raise DataError(
        f"{path} is not an IDX file: expected a header 00 00 <type> <ndim>, "
        f"found {raw[:4].hex(' ') or 'an empty file'}.")
  ndim = raw[3]
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes).")
  shape = struct.unpack(f">{ndim}I", raw[4:header_size])
  dtype = np.dtype(_IDX_DTYPES[raw[2]])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header_size != expected:
    raise DataError(
        f"{path}: the header promises shape {shape} ({expected} bytes of "
        f"data) but the file holds {len(raw) - header_size} bytes: truncated "
        f"or corrupt.")
  return np.frombuffer(raw, dtype, offset=header_size).reshape(shape)


def find_mnist_idx_files(data_dir):
  """Pairs of `(images_path, labels_path)` in `data_dir`, by prefix.

  Matches `<prefix>images-idx3-ubyte[.gz]` with `<prefix>labels-idx1-ubyte[.gz]`
  (`train-`, `t10k-`, `mnist8k-`, ...). Returns `{prefix: (images, labels)}`.
  """
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise DataError(f"--data-dir {data_dir} is not a directory.")
  pairs = {}
  for images in sorted(data_dir.iterdir()):
    name = images.name.removesuffix(".gz")
    if not name.endswith("images-idx3-ubyte"):
      continue
    prefix = name.removesuffix("images-idx3-ubyte")
    labels = [data_dir / f"{prefix}labels-idx1-ubyte{ext}" for ext in (".gz", "")]
    labels = next((p for p in labels if p.exists()), None)
    pairs[prefix] = (images, labels)
  if not pairs:
    found = sorted(p.name for p in data_dir.iterdir())[:10]
    raise DataError(
        f"no MNIST IDX files in {data_dir}: expected files named like "
        f"train-images-idx3-ubyte[.gz] (with train-labels-idx1-ubyte[.gz]); "
        f"found {found or 'nothing'}.")
  return pairs


def _read_images(path):
  images = read_idx(path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise DataError(
        f"{path}: expected uint8 images of shape [N, H, W]; got "
        f"{images.dtype} of shape {images.shape}.")
  if images.size == 0:
    raise DataError(f"{path}: holds no images (shape {images.shape}).")
  return images[..., np.newaxis]


def _concatenate(images_by_path):
  """One array from several files' images, which must share `H, W`."""
  shapes = {str(path): images.shape[1:3]
            for path, images in images_by_path.items()}
  if len(set(shapes.values())) > 1:
    raise DataError(
        "MNIST IDX files hold images of different sizes (H, W): "
        + ", ".join(f"{path}: {shape}" for path, shape in shapes.items())
        + ".")
  return np.concatenate(list(images_by_path.values()))


def _read_labels(path, images_path, num_images):
  if path is None:
    raise DataError(f"{images_path}: no labels file beside it (the same "
                    f"prefix with labels-idx1-ubyte[.gz]); labels are needed "
                    f"for a class-conditional model.")
  labels = read_idx(path)
  if labels.shape != (num_images,) or labels.dtype != np.uint8:
    raise DataError(f"{path}: expected {num_images} uint8 labels; got "
                    f"{labels.dtype} of shape {labels.shape}.")
  return labels.astype(np.int32)


def load_mnist_idx(data_dir, validation_size=1000, test_size=1000, seed=0,
                   with_labels=False):
  """MNIST splits from IDX files in `data_dir`.

  With `train-*` and `t10k-*` files (the official layout), test is `t10k`
  and validation the last `validation_size` training digits. With any other
  single set of digits (such as the 8,000 in `../shared/data/mnist`), a
  seeded shuffle splits it into train, validation and test.

  Returns:
    dict with keys "train", "validation", "test": uint8 `[N, 28, 28, 1]`,
    or with `with_labels` `(images, labels)`, labels int32 `[N]`.
  """
  pairs = find_mnist_idx_files(data_dir)

  def read(prefixes):
    images = {pairs[p][0]: _read_images(pairs[p][0]) for p in prefixes}
    labels = [_read_labels(pairs[p][1], pairs[p][0], len(images[pairs[p][0]]))
              for p in prefixes] if with_labels else None
    return _concatenate(images), (np.concatenate(labels) if with_labels
                                  else None)

  def split(images, labels, start, stop):
    return (images[start:stop] if labels is None
            else (images[start:stop], labels[start:stop]))

  if "train-" in pairs and "t10k-" in pairs:
    train, train_labels = read(["train-"])
    test, test_labels = read(["t10k-"])
    _concatenate({pairs["train-"][0]: train[:1], pairs["t10k-"][0]: test[:1]})
    if not 0 <= validation_size < len(train):
      raise DataError(f"validation_size must be in [0, {len(train)}); got "
                      f"{validation_size}.")
    cut = len(train) - validation_size
    return {"train": split(train, train_labels, 0, cut),
            "validation": split(train, train_labels, cut, None),
            "test": split(test, test_labels, 0, None)}
  images, labels = read(list(pairs))
  if validation_size < 0 or test_size < 0 or (
      validation_size + test_size >= len(images)):
    raise DataError(
        f"cannot hold out validation_size={validation_size} and "
        f"test_size={test_size} digits from the {len(images)} in {data_dir}.")
  order = np.random.default_rng(seed).permutation(len(images))
  images = images[order]
  labels = None if labels is None else labels[order]
  train_end = len(images) - validation_size - test_size
  return {"train": split(images, labels, 0, train_end),
          "validation": split(images, labels, train_end,
                              train_end + validation_size),
          "test": split(images, labels, train_end + validation_size, None)}


def load_mnist_tfds(validation_size=5000, data_dir=None, with_labels=False):
  """MNIST from TensorFlow Datasets: train (less validation), validation,
  test. Downloads on first use; offline, raises `DataError` naming the
  `--data-dir` alternative instead of a download traceback."""
  import tensorflow_datasets as tfds  # imported here: slow, and optional

  builder = tfds.builder("mnist", data_dir=data_dir)
  if not builder.is_prepared():
    url = getattr(sys.modules[type(builder).__module__], "_MNIST_URL", None)
    if url is not None and not _reachable(url):
      # TFDS retries a failed download for minutes; offline, say so at once.
      raise DataError(
          f"MNIST is not in the TFDS data folder and {url} cannot be reached "
          "(offline?). Pass --data-dir DIR with MNIST IDX files (e.g. "
          "../shared/data/mnist) instead.")
    with _tfds_build_lock(builder):
      # Another process may have built it while this one waited.
      builder = tfds.builder("mnist", data_dir=data_dir)
      try:
        if not builder.is_prepared():
          builder.download_and_prepare()
      except Exception as error:  # any download failure: say what to do
        raise DataError(
            "could not download MNIST through TensorFlow Datasets "
            f"({type(error).__name__}: {str(error)[:200]}). Offline, pass "
            "--data-dir DIR with MNIST IDX files (e.g. ../shared/data/mnist)."
        ) from None
  train = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1))
  test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
  cut = len(train["image"]) - validation_size
  if with_labels:
    labels, test_labels = (train["label"].astype(np.int32),
                           test["label"].astype(np.int32))
    return {"train": (train["image"][:cut], labels[:cut]),
            "validation": (train["image"][cut:], labels[cut:]),
            "test": (test["image"], test_labels)}
  return {"train": train["image"][:cut], "validation": train["image"][cut:],
          "test": test["image"]}


@contextlib.contextmanager
def _tfds_build_lock(builder):
  """Holds an exclusive lock on `builder`'s dataset while it is built.

  TFDS (checked with 4.9.10) builds into a temporary folder beside the
  dataset and has no lock of its own: two processes preparing the same
  dataset at once (two runs started together on a fresh machine) break each
  other's build ("Failed to finalize writing of split"). A lock file in the
  TFDS data folder serializes them; the caller then asks again whether the
  dataset is prepared, and the second process finds it built. Without
  `fcntl` (Windows) there is no lock, as in TFDS itself.
  """
  try:
    import fcntl
  except ImportError:
    yield
    return
  # builder.data_dir is <TFDS data folder>/<name>/<version>.
  root = pathlib.Path(str(builder.data_dir)).parents[1]
  root.mkdir(parents=True, exist_ok=True)
  with open(root / f".{builder.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _reachable(url, timeout=5.):
  """Whether a TCP connection to the URL's host opens within `timeout` s."""
  parsed = urllib.parse.urlparse(url)
  try:
    with socket.create_connection(
        (parsed.hostname, parsed.port or 443), timeout=timeout):
      return True
  except OSError:
    return False


def load_mnist(data_dir=None, validation_size=None, test_size=1000, seed=0,
               with_labels=False):
  """IDX files from `data_dir` when given, else TFDS `mnist`; with
  `with_labels`, each split is `(images, labels)`."""
  if data_dir is not None:
    return load_mnist_idx(data_dir, 1000 if validation_size is None else
                          validation_size, test_size, seed, with_labels)
  return load_mnist_tfds(5000 if validation_size is None else validation_size,
                         with_labels=with_labels)


# The fixed binarization of Larochelle & Murray (2011), as TFDS downloads it.
BINARIZED_MNIST_FILES = {"train": "binarized_mnist_train.amat",
                         "validation": "binarized_mnist_valid.amat",
                         "test": "binarized_mnist_test.amat"}


def load_binarized_mnist(manual_dir=None, data_dir=None):
  """Binarized MNIST from TFDS `binarized_mnist`: 50k / 10k / 10k digits.

  On first use TFDS builds the dataset into `data_dir` (TFDS' default
  folder when `None`): from the original `.amat` files in `manual_dir` when
  given (offline; about 15 s), else by downloading them.

  Args:
    manual_dir: folder holding `binarized_mnist_{train,valid,test}.amat`
      (e.g. `../shared/data/binarized_mnist`), or `None` to download.
    data_dir: TFDS data folder, or `None` for TFDS' default.

  Returns:
    dict with keys "train", "validation", "test": uint8 `[N, 28, 28, 1]`
    arrays of 0s and 1s.

  Raises:
    DataError: missing or corrupt files, or no network and no `manual_dir`.
  """
  import tensorflow_datasets as tfds  # imported here: slow, and optional

  builder = tfds.builder("binarized_mnist", data_dir=data_dir)
  if not builder.is_prepared():
    download_config = None
    if manual_dir is not None:
      manual_dir = pathlib.Path(manual_dir)
      missing = [name for name in BINARIZED_MNIST_FILES.values()
                 if not (manual_dir / name).is_file()]
      if missing:
        found = sorted(p.name for p in manual_dir.iterdir())[:10] if (
            manual_dir.is_dir()) else "no such directory"
        raise DataError(
            f"binarized MNIST: {manual_dir} lacks {missing}; expected the "
            f"three files {sorted(BINARIZED_MNIST_FILES.values())}, found "
            f"{found}.")
      download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    else:
      url = getattr(sys.modules[type(builder).__module__], "_URL", None)
      if url is not None and not _reachable(url):
        raise DataError(
            f"binarized MNIST is not in the TFDS data folder and {url} cannot "
            "be reached (offline?). Pass --data-dir DIR holding "
            f"{sorted(BINARIZED_MNIST_FILES.values())} (e.g. "
            "../shared/data/binarized_mnist) instead.")
    with _tfds_build_lock(builder):
      # Another process may have built it while this one waited.
      builder = tfds.builder("binarized_mnist", data_dir=data_dir)
      try:
        if not builder.is_prepared():
          builder.download_and_prepare(download_config=download_config)
      except Exception as error:  # a failed download or a corrupt file
        if type(error).__name__ == "NonMatchingChecksumError":
          raise DataError(
              "binarized MNIST: a file is not the standard binarization (its "
              f"checksum does not match): {str(error).splitlines()[0][:300]}"
          ) from None
        raise DataError(
            "could not prepare binarized MNIST through TensorFlow Datasets "
            f"({type(error).__name__}: {str(error)[:300]}).") from None
  splits = {}
  for split in BINARIZED_MNIST_FILES:
    splits[split] = tfds.as_numpy(
        builder.as_dataset(split=split, batch_size=-1))["image"]
  return splits


def _random_shift(max_shift, seed):
  """A map of one image `[H, W, C]` to a copy shifted by up to `max_shift`
  pixels each way, zero-filled: a random crop of the zero-padded image."""
  def shift(image):
    padded = tf.pad(image, [[max_shift, max_shift], [max_shift, max_shift],
                            [0, 0]])
    return tf.image.random_crop(padded, tf.shape(image), seed=seed)
  return shift


def image_dataset(images, batch_size, shuffle=False, seed=0, repeat=False,
                  labels=None, max_shift=0):
  """A `tf.data` pipeline of image batches: shuffle, shift, batch, prefetch.

  Args:
    images: array or tensor `[N, ...]` (e.g. `[N, H, W, C]`), `N >= 1`.
    batch_size: int >= 1. With `shuffle=True` the last partial batch is
      dropped (every training step sees a full batch), so without `repeat`
      it must be at most `N`.
    shuffle: shuffle (reshuffled each epoch) with a buffer of
      `min(N, 10000)`.
    seed: the shuffle's seed.
    repeat: repeat indefinitely.
    labels: `[N]` labels: batches are then `(images, labels)`.
    max_shift: shift each image by a random whole number of pixels in
      `[-max_shift, max_shift]` along each of height and width, filling with
      zeros (openai/glow's MNIST augmentation); images `[N, H, W, C]`.

  Raises:
    DataError: `images` is empty, has rank < 2, or is smaller than one
      batch when shuffling without repeating.
    TypeError, ValueError: `batch_size` is not an int >= 1.
  """
  batch_size = positive_int(batch_size, "batch_size", "image_dataset")
  shape = tf.TensorShape(images.shape if hasattr(images, "shape")
                         else np.shape(images))
  if shape.rank is not None and shape.rank < 2:
    raise DataError(f"image_dataset: images must have shape [N, ...] (e.g. "
                    f"[N, H, W, C]); got shape {shape}.")
  num_images = tf.compat.dimension_value(shape[0]) if shape.rank else None
  if num_images == 0:
    raise DataError(f"image_dataset: images is empty (shape {shape}).")
  if (shuffle and not repeat and num_images is not None
      and batch_size > num_images):
    raise DataError(
        f"image_dataset: batch_size {batch_size} exceeds the {num_images} "
        f"images; with shuffle=True the partial last batch is dropped, so "
        f"there would be no batch at all.")
  if labels is not None and len(labels) != num_images:
    raise DataError(f"image_dataset: {num_images} images but {len(labels)} "
                    f"labels.")
  if max_shift and (shape.rank != 4 or max_shift < 0):
    raise DataError(f"image_dataset: max_shift needs images [N, H, W, C] and "
                    f"max_shift >= 0; got shape {shape}, max_shift "
                    f"{max_shift}.")
  dataset = tf.data.Dataset.from_tensor_slices(
      images if labels is None else (images, labels))
  if shuffle:
    dataset = dataset.shuffle(min(len(images), 10_000), seed=seed,
                              reshuffle_each_iteration=True)
  if repeat:
    dataset = dataset.repeat()
  if max_shift:
    shift = _random_shift(max_shift, seed)
    dataset = dataset.map(
        shift if labels is None else lambda x, y: (shift(x), y),
        num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.batch(batch_size, drop_remainder=shuffle).prefetch(
      tf.data.AUTOTUNE)
