"""Per-batch preparation from uint8 (bit-identical to preparing the whole split), the
streaming path (bounded shuffle buffer, deterministic, resumable), and prefetching."""
import threading
import time

import numpy as np
import pytest

from holoeb.data.pipeline import (Augmentation, Dataset, StreamDataset, batches, make_preparation, prefetch, prepare_images,
                                  random_flip)
from holoeb.errors import ConfigError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _images(n=50, h=27, w=29, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("input_shape,pad_to,norm", [
    ((32, 32, 3), (32, 32), True),  # odd padding: 27 -> 32 (2 + 3), 29 -> 32 (1 + 2)
    ((3072,), (32, 32), True),  # dense input of the padded image
    ((27 * 29 * 3,), None, True),  # flattened raw image
    ((32, 32, 3), (32, 32), False),
])
def test_per_batch_preparation_is_bit_identical_to_the_whole_array(input_shape, pad_to, norm):
    imgs = _images()
    labels = np.arange(50) % 7
    mean, std = (MEAN, STD) if norm else (None, None)
    ds = Dataset.from_images(imgs, labels, input_shape, mean, std, pad_to)
    assert ds.data.dtype == np.uint8 and ds.data.shape == imgs.shape and len(ds) == 50
    old = prepare_images(imgs, input_shape, mean, std, pad_to)  # the former fully prepared array
    former = np.pad(imgs, ((0, 0), (2, 3), (1, 2), (0, 0))) if pad_to else imgs
    former = former.astype(np.float32) / 255.0  # prepare_images as it was written before
    if norm:
        former = (former - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    np.testing.assert_array_equal(old, former.reshape((50,) + input_shape))
    image_shape = (pad_to or (27, 29)) + (3,)
    assert ds.image_shape == image_shape
    seed, epoch = 3, 2
    flip_rng = lambda i: np.random.default_rng((seed, epoch, i))
    got = list(batches(ds, 8, np.random.default_rng(5), augment=Augmentation(flip_rng, flip=True)))
    order = np.random.default_rng(5).permutation(50)
    assert len(got) == 6
    for i, b in enumerate(got):
        idx = order[i * 8 : (i + 1) * 8]
        want = random_flip(old[idx], flip_rng(i), image_shape)  # the former training loop
        assert b.x.dtype == np.float32 and b.x.shape == (8,) + input_shape
        np.testing.assert_array_equal(b.x, want)
        np.testing.assert_array_equal(b.y, labels[idx])
    # unshuffled, ragged last batch, no flips; take and the cached x
    plain = list(batches(ds, 16, drop_last=False))
    np.testing.assert_array_equal(np.concatenate([b.x for b in plain]), old)
    np.testing.assert_array_equal(ds.take(7).x, old[:7])
    np.testing.assert_array_equal(ds.x, old)
    # resume inside an epoch: start skips batches, same order and flips
    resumed = list(batches(ds, 8, np.random.default_rng(5), start=4, augment=Augmentation(flip_rng, flip=True)))
    for a, b in zip(resumed, got[4:]):
        np.testing.assert_array_equal(a.x, b.x)


def test_load_dataset_keeps_uint8_and_prepares_like_before():
    from holoeb.data.registry import DATASETS, load_dataset, register_dataset

    imgs = _images(12, 28, 28, 1)[..., 0]
    register_dataset("toy_u8", lambda split, data_dir: (imgs, np.arange(12) % 3), 3, (0.25,), (0.5,))
    try:
        for shape in [(32, 32, 1), (1024,), (784,)]:
            ds = load_dataset("toy_u8", "train", shape, size=10)
            assert ds.data.dtype == np.uint8 and len(ds) == 10 and ds.y.dtype == np.int32
            pad = (32, 32) if shape != (784,) else None
            np.testing.assert_array_equal(ds.x, prepare_images(imgs[:10], shape, (0.25,), (0.5,), pad))
        with pytest.raises(ConfigError, match="asked for 13"):
            load_dataset("toy_u8", "train", (784,), size=13)
        with pytest.raises(ValueError, match="cannot be reshaped"):
            load_dataset("toy_u8", "train", (10,))
    finally:
        DATASETS.pop("toy_u8")


def _chunked(images, labels, sizes, log=None):
    """A synthetic stream source: the arrays cut into chunks of the given (cycled) sizes."""
    def source(seed=None):
        pos, k = 0, 0
        while pos < len(labels):
            m = sizes[k % len(sizes)]
            if log is not None:
                log.append(pos + m)
            yield images[pos : pos + m], labels[pos : pos + m]
            pos, k = pos + m, k + 1
    return source


def _stream(n=103, sizes=(7, 30, 1), buffer_size=20, **kw):
    imgs = _images(n, 27, 29, 3)
    ids = np.arange(n)
    prep = make_preparation((32, 32, 3), MEAN, STD, (32, 32))
    return imgs, ids, prep, StreamDataset(_chunked(imgs, ids, list(sizes)), n, prep, buffer_size=buffer_size, **kw)


def test_stream_in_order_matches_in_memory_batches():
    imgs, ids, prep, st = _stream()
    mem = Dataset(imgs, ids, prep=prep)
    assert len(st) == 103
    for drop_last in (True, False):
        a, b = list(batches(st, 16, drop_last=drop_last)), list(batches(mem, 16, drop_last=drop_last))
        assert len(a) == len(b) == (6 if drop_last else 7)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u.x, v.x)
            np.testing.assert_array_equal(u.y, v.y)
    np.testing.assert_array_equal(st.take(40).x, mem.take(40).x)
    np.testing.assert_array_equal(st.y, ids)


def test_stream_shuffle_is_a_deterministic_bounded_permutation():
    imgs, ids, prep, st = _stream()
    old = prepare_images(imgs, (32, 32, 3), MEAN, STD, (32, 32))
    flip_rng = lambda i: np.random.default_rng((1, 1, i))
    rng = np.random.default_rng(0)
    full = list(batches(st, 16, rng, drop_last=False, augment=Augmentation(flip_rng, flip=True)))
    after = rng.bit_generator.state
    seen = np.concatenate([b.y for b in full])
    assert sorted(seen.tolist()) == list(range(103)) and not np.array_equal(seen, ids)  # every example once, shuffled
    assert len(full[-1].y) == 103 - 6 * 16
    for i, b in enumerate(full):  # prepared + flipped exactly like the former path
        np.testing.assert_array_equal(b.x, random_flip(old[b.y], flip_rng(i), (32, 32, 3)))
    # bounded: the first batch comes from the first buffer_size examples only; the k-th from the first 20 + 16k
    assert all(b.y.max() < 20 + 16 * k for k, b in enumerate(full))
    # deterministic in the rng; independent of how the source cuts its chunks; drop_last drops the remainder
    again = StreamDataset(_chunked(imgs, ids, [50, 3]), 103, prep, buffer_size=20)
    rng2 = np.random.default_rng(0)
    same = list(batches(again, 16, rng2, drop_last=False))
    assert rng2.bit_generator.state == after
    np.testing.assert_array_equal(np.concatenate([b.y for b in same]), seen)
    dropped = list(batches(st, 16, np.random.default_rng(0)))
    assert len(dropped) == 6 and np.array_equal(np.concatenate([b.y for b in dropped]), seen[:96])
    other = np.concatenate([b.y for b in batches(st, 16, np.random.default_rng(1), drop_last=False)])
    assert not np.array_equal(other, seen)
    # resume inside an epoch: start skips batches, same examples and flips after it
    resumed = list(batches(st, 16, np.random.default_rng(0), drop_last=False, start=4, augment=Augmentation(flip_rng, flip=True)))
    assert len(resumed) == len(full) - 4
    for a, b in zip(resumed, full[4:]):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)


def test_stream_reads_lazily_and_checks_its_length():
    imgs, ids = _images(100, 4, 4, 1), np.arange(100)
    prep = make_preparation((16,))
    log = []
    st = StreamDataset(_chunked(imgs, ids, [10], log), 100, prep, buffer_size=30)
    it = batches(st, 8, np.random.default_rng(0))
    next(it)
    assert max(log) <= 30  # only the buffer's worth has been read for the first batch
    it.close()
    assert len(list(batches(StreamDataset(_chunked(imgs, ids, [10]), 45, prep), 5))) == 9  # cut at length
    short = StreamDataset(_chunked(imgs, ids, [10]), 120, prep)
    with pytest.raises(ValueError, match="stream ended after 100 examples, expected 120"):
        list(batches(short, 8, np.random.default_rng(0)))
    with pytest.raises(TypeError):
        len(StreamDataset(_chunked(imgs, ids, [10]), None, prep))


def test_registry_stream_source_size_and_label_errors():
    from holoeb.data.registry import DATASETS, load_dataset, register_dataset

    imgs = _images(40, 28, 28, 1)[..., 0]
    labels = np.arange(40) % 3
    labels_bad = labels.copy()
    labels_bad[33] = 5
    stream = lambda lab: (lambda split, data_dir: (_chunked(imgs, lab, [16]), 40))
    register_dataset("toy_stream", lambda s, d: (imgs, labels), 3, (0.25,), (0.5,), stream=stream(labels))
    register_dataset("toy_stream_bad", lambda s, d: (imgs, labels_bad), 3, (0.25,), (0.5,), stream=stream(labels_bad),
                     stream_by_default=True)
    try:
        mem = load_dataset("toy_stream", "train", (32, 32, 1))
        st = load_dataset("toy_stream", "train", (32, 32, 1), stream=True, size=30)
        assert isinstance(mem, Dataset) and isinstance(st, StreamDataset) and len(st) == 30
        assert st.image_shape == mem.image_shape == (32, 32, 1)
        np.testing.assert_array_equal(np.concatenate([b.x for b in batches(st, 10)]), mem.x[:30])
        with pytest.raises(ConfigError, match="asked for 41"):
            load_dataset("toy_stream", "train", (784,), stream=True, size=41)
        with pytest.raises(ConfigError, match="label 5 of example 33"):
            load_dataset("toy_stream_bad", "train", (784,), stream=False)
        bad = load_dataset("toy_stream_bad", "train", (784,))  # streamed by default: refused when read
        assert isinstance(bad, StreamDataset)
        assert len(list(batches(bad.subset(32), 8))) == 4
        with pytest.raises(ConfigError, match="label 5 of example 33"):
            list(prefetch(batches(bad, 8, np.random.default_rng(0))))
    finally:
        DATASETS.pop("toy_stream")
        DATASETS.pop("toy_stream_bad")


def test_prefetch_order_bound_errors_and_close():
    produced = []

    def gen():
        for i in range(10):
            produced.append(i)
            yield i

    it = prefetch(gen(), size=2, transform=lambda v: v * 10)
    assert next(it) == 0
    time.sleep(0.2)
    assert len(produced) <= 1 + 2 + 1  # consumed + queued + one being put
    assert list(it) == [10 * i for i in range(1, 10)]

    def failing():
        yield 1
        yield 2
        raise RuntimeError("bad chunk")

    got = []
    with pytest.raises(RuntimeError, match="bad chunk"):
        for v in prefetch(failing()):
            got.append(v)
    assert got == [1, 2]

    before = threading.active_count()
    it = prefetch(iter(range(1000)), size=1)
    assert next(it) == 0
    it.close()  # the consumer stops: the thread ends
    assert threading.active_count() == before
    with pytest.raises(ValueError):
        next(prefetch([], size=0))


def test_training_on_a_streamed_dataset_resumes_identically(tmp_path):
    """holoeb train on a dataset streamed by default (flips on): a run killed inside an epoch and
    resumed gives the same history as an uninterrupted one."""
    from holoeb.config import load_config
    from holoeb.data.registry import DATASETS, register_dataset
    from holoeb.training import TrainingInterrupted, train

    rng = np.random.default_rng(0)
    y = np.arange(96) % 2
    imgs = np.where(y[:, None, None] == 1, np.tile(np.linspace(0, 255, 4), (4, 1)), 60.0)
    imgs = np.clip(imgs + rng.normal(0, 20, (96, 4, 4)), 0, 255).astype(np.uint8)
    stream = lambda split, data_dir: (_chunked(imgs, y, [13, 5]), 96)
    register_dataset("ramps_stream", lambda s, d: (imgs, y), 2, (0.5,), (0.25,), flip=True, stream=stream,
                     stream_by_default=True)
    over = {"model": {"name": "mlp", "in_features": 16, "hidden": [8], "num_classes": 2},
            "estimator": {"name": "ep", "beta": 0.5, "T_free": 10, "T_nudge": 5}, "data.dataset": "ramps_stream",
            "training.epochs": 2, "training.batch_size": 16, "diagnostics.enabled": True,
            "diagnostics.batch_size": 8, "training.checkpoint_every": 2}
    quiet = lambda *a: None
    try:
        full = train(load_config(None, over), str(tmp_path / "a"), progress=False, log=quiet)
        with pytest.raises(TrainingInterrupted):
            train(load_config(None, over), str(tmp_path / "b"), progress=False, log=quiet, stop_after_steps=9)
        resumed = train(load_config(None, over), str(tmp_path / "b"), progress=False, log=quiet)
    finally:
        DATASETS.pop("ramps_stream")
    assert [r["epoch"] for r in full] == [1, 2]
    for a, b in zip(full, resumed):
        for k in ("train_loss", "train_acc", "val_loss", "val_error"):
            assert a[k] == b[k], k
