"""Small MNIST IDX folders for tests that run the examples: real digits from
../shared/data/mnist when present, blurred blobs made here otherwise."""

import gzip
import struct

import numpy as np

from tfp_flows import data


def digits(shared_data_dir, n):
  """uint8 `[n, 28, 28]`."""
  if shared_data_dir is not None:
    return data.load_mnist_idx(shared_data_dir / "mnist", validation_size=0,
                               test_size=0)["train"][:n, ..., 0]
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:28, :28]
  centres = rng.uniform(8, 20, size=(n, 2, 1, 1))
  blobs = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 30.)
  return (255 * blobs).astype(np.uint8)


def write_idx_images(path, images):
  """uint8 `[N, H, W]` in the IDX format MNIST ships in (gzipped)."""
  header = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", *images.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + images.astype(np.uint8).tobytes())


def make_digits_dir(path, shared_data_dir, num_train, num_test):
  """A folder with `train-` and `t10k-` image files, as MNIST ships."""
  path.mkdir(parents=True, exist_ok=True)
  images = digits(shared_data_dir, num_train + num_test)
  write_idx_images(path / "train-images-idx3-ubyte.gz", images[:num_train])
  write_idx_images(path / "t10k-images-idx3-ubyte.gz", images[num_train:])
  return path
