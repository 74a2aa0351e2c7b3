"""Real Fashion-MNIST, offline, from the original IDX files.

Debian's package `dataset-fashion-mnist` installs them under
/usr/share/datasets/fashion-mnist (``apt-get install dataset-fashion-mnist``);
any directory holding the four (optionally gzipped) IDX files works
(``data_dir=`` or the HOLOEB_FMNIST_DIR environment variable).
Splits as in the papers: 60k train / 10k validation (the official test set).
"""
import gzip
import os
import struct
import zlib

import numpy as np

from holoeb.errors import ConfigError

DEFAULT_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_HOW = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four IDX files "
    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz]) in a directory and pass data_dir=... / --data-dir or set HOLOEB_FMNIST_DIR."
)


def read_idx(path):
    """Read an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, zlib.error) as e:  # truncated or corrupt gzip stream
        raise ConfigError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); {_HOW}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConfigError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise ConfigError(f"{path}: unsupported IDX dtype code {dtype_code:#x}")
    if len(data) < 4 + 4 * ndim:
        raise ConfigError(f"{path} is truncated: its header promises {ndim} dimensions; {_HOW}")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ConfigError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, found {arr.size}")
    return arr.reshape(shape)


def _find(data_dir, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"Fashion-MNIST file {stem}[.gz] not found in {data_dir!r}. {_HOW}")


def load_fashion_mnist(split="train", data_dir=None):
    """Return (images uint8 (n, 28, 28), labels int32 (n,)) for split 'train' or 'test'."""
    if split not in _FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    data_dir = data_dir or os.environ.get("HOLOEB_FMNIST_DIR") or DEFAULT_FMNIST_DIR
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Fashion-MNIST directory {data_dir!r} does not exist. {_HOW}")
    images = read_idx(_find(data_dir, _FILES[split][0]))
    labels = read_idx(_find(data_dir, _FILES[split][1])).astype(np.int32)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
