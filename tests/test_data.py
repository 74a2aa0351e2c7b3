"""IDX reading (on files the test writes) and the real offline Fashion-MNIST."""
import gzip
import struct

import numpy as np
import pytest

from holoeb.data import load_fashion_mnist, prepare_images
from holoeb.data.fashion_mnist import read_idx
from holoeb.data.pipeline import Dataset, batches


def write_idx(path, arr, gz):
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(head + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_and_loader(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (7,), dtype=np.uint8)
    sfx = ".gz" if gz else ""
    write_idx(str(tmp_path / f"t10k-images-idx3-ubyte{sfx}"), imgs, gz)
    write_idx(str(tmp_path / f"t10k-labels-idx1-ubyte{sfx}"), labels, gz)
    x, y = load_fashion_mnist("test", data_dir=str(tmp_path))
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(y, labels)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(str(tmp_path / "bad"))


def test_real_fashion_mnist_splits():
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert set(np.unique(y)) == set(range(10)) and np.bincount(yt).tolist() == [1000] * 10


def test_prepare_and_batches():
    imgs = np.full((10, 28, 28), 255, np.uint8)
    flat = prepare_images(imgs, (784,))
    assert flat.shape == (10, 784) and flat.max() == 1.0
    padded = prepare_images(imgs, (32, 32, 1), pad_to=32)
    assert padded.shape == (10, 32, 32, 1) and padded[:, :2].max() == 0 and padded[:, 2:30, 2:30].min() == 1
    ds = Dataset(flat, np.arange(10))
    got = [b.y for b in batches(ds, 3, np.random.default_rng(0))]
    assert len(got) == 3 and len(np.unique(np.concatenate(got))) == 9
