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


def test_one_preparation_table_follows_the_comparative_study():
    """Table 4 / App. D of the comparative study (arXiv:2312.15103): mean, std, flips."""
    from holoeb.data.registry import DATASETS, PREPARATION

    assert PREPARATION["cifar10"][2] == (3 * 0.2023, 3 * 0.1994, 3 * 0.2010)
    assert PREPARATION["fashion_mnist"][1:] == ((0.2860,), (0.3530,), True)
    assert PREPARATION["mnist"][1:] == ((0.1307,), (0.3081,), False)
    assert PREPARATION["cifar100"][0] == 100 and PREPARATION["cifar100"][3] and not PREPARATION["svhn_cropped"][3]
    assert DATASETS["fashion_mnist"].num_classes == 10 and DATASETS["fashion_mnist"].flip


def test_pad_raw_then_normalise_for_conv_and_dense_inputs():
    from holoeb.data.registry import DATASETS, load_dataset, normalise, register_dataset

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    register_dataset("toy28", lambda split, data_dir: (imgs, np.arange(5) % 2), 2, (0.25,), (0.5,), flip=True)
    try:
        conv = load_dataset("toy28", "train", (32, 32, 1))
        dense = load_dataset("toy28", "train", (1024,))
        raw = load_dataset("toy28", "train", (784,))
        plain = load_dataset("toy28", "train", (784,), normalize=False)
    finally:
        DATASETS.pop("toy28")
    assert conv.image_shape == (32, 32, 1) and dense.image_shape == (32, 32, 1) and raw.image_shape == (28, 28, 1)
    np.testing.assert_allclose(conv.x[:, :2], -0.25 / 0.5)  # the border is a black pixel, normalised
    np.testing.assert_allclose(conv.x[:, 2:30, 2:30, 0], (imgs / 255.0 - 0.25) / 0.5, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(dense.x, conv.x.reshape(5, 1024))
    np.testing.assert_allclose(raw.x, ((imgs / 255.0 - 0.25) / 0.5).reshape(5, 784), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(plain.x, (imgs / 255.0).reshape(5, 784), rtol=1e-6)
    np.testing.assert_allclose(normalise(imgs, "fashion_mnist")[:, 0, 0, 0], -0.2860 / 0.3530, rtol=1e-6)


def test_random_flip_flips_images_also_when_flattened():
    from holoeb.data.pipeline import random_flip

    x = np.arange(6 * 2 * 3 * 2, dtype=np.float32).reshape(6, 2, 3, 2)
    a = random_flip(x, np.random.default_rng(1))
    b = random_flip(x.reshape(6, -1), np.random.default_rng(1), (2, 3, 2))
    np.testing.assert_array_equal(a.reshape(6, -1), b)
    flipped = [bool(np.array_equal(a[i], x[i, :, ::-1])) for i in range(6)]
    kept = [bool(np.array_equal(a[i], x[i])) for i in range(6)]
    assert all(f != k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 6
    np.testing.assert_array_equal(flipped, np.random.default_rng(1).random(6) < 0.5)


def test_random_crop_is_an_edge_padded_translation_per_example():
    """random_crop == torchvision RandomCrop(size, padding=p, padding_mode='edge'), written out per example:
    output pixel (r, c) = input pixel (clip(r + dy - p), clip(c + dx - p)) with the drawn offsets (dy, dx)."""
    from holoeb.data.pipeline import Augmentation, random_crop, random_flip

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(9, 6, 5, 2)).astype(np.uint8)
    p = 2
    got = random_crop(x, np.random.default_rng(7), p)
    off = np.random.default_rng(7).integers(0, 2 * p + 1, size=(2, 9))
    for n in range(9):
        r = np.clip(np.arange(6) + off[0, n] - p, 0, 5)
        c = np.clip(np.arange(5) + off[1, n] - p, 0, 4)
        np.testing.assert_array_equal(got[n], x[n][r][:, c])
    # every offset occurs, the centred one leaves the image unchanged, flattened input works the same
    many = np.random.default_rng(1).integers(0, 2 * p + 1, size=(2, 2000))
    assert set(map(int, np.unique(many))) == set(range(2 * p + 1))
    assert np.array_equal(random_crop(x, np.random.default_rng(7), 0), x)
    np.testing.assert_array_equal(random_crop(x.reshape(9, -1), np.random.default_rng(7), p, (6, 5, 2)),
                                  got.reshape(9, -1))
    # Augmentation: crop, then flip, from one generator per batch
    aug = Augmentation(lambda i: np.random.default_rng((3, i)), flip=True, crop=p)
    g = np.random.default_rng((3, 4))
    np.testing.assert_array_equal(aug(x, 4), random_flip(random_crop(x, g, p), g))
    with pytest.raises(ValueError, match="random_crop"):
        random_crop(x[0], np.random.default_rng(0), 1)
