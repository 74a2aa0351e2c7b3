"""TFDS loader (holoeb.data.tfds_datasets) on a tiny dataset the test prepares itself.

Needs tensorflow-datasets and tensorflow-cpu (the 'tfds' extra); skipped without them.
"""
import sys

import numpy as np
import pytest

from holoeb.data import tfds_datasets as td

N_TRAIN, N_TEST = 12, 5


def _tiny_builder_class():
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")
    if "holoeb_tiny_images" in tfds.list_builders():
        return tfds.builder_cls("holoeb_tiny_images")

    class HoloebTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)), "label": tfds.features.ClassLabel(num_classes=3)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(N_TRAIN, 0), "test": self._generate_examples(N_TEST, 1)}

        def _generate_examples(self, n, seed):
            rng = np.random.default_rng(seed)
            for i in range(n):
                yield i, {"image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), "label": i % 3}

    return HoloebTinyImages


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    cls = _tiny_builder_class()
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    cls(data_dir=data_dir).download_and_prepare()
    td.register_tfds_dataset("tiny", td.TFDSSpec("holoeb_tiny_images", {"train": "train", "test": "test"}))
    yield data_dir
    td.TFDS_DATASETS.pop("tiny", None)


def test_loads_written_dataset(tiny_dir):
    x, y = td.load_tfds("tiny", "train", tiny_dir)
    assert x.shape == (N_TRAIN, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int32 and sorted(set(y.tolist())) == [0, 1, 2]
    # the exact pixels written by the generator come back (order may be shuffled by TFDS)
    rng = np.random.default_rng(0)
    written = {int(i % 3): [] for i in range(N_TRAIN)}
    for i in range(N_TRAIN):
        written[i % 3].append(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8).tobytes())
    for img, lab in zip(x, y):
        assert img.tobytes() in written[int(lab)]
    xt, yt = td.load_tfds("tiny", "test", tiny_dir)
    assert xt.shape[0] == N_TEST == yt.shape[0]


def test_study_preprocessing_on_tiny_dataset(tiny_dir):
    """The registry's one order: 28 x 28 -> 32 x 32 zero padding of the raw image, then Table 4
    normalisation (MNIST statistics), for a DCHN input and for a flattened dense input."""
    from holoeb.data.registry import DATASETS, PREPARATION, load_dataset, register_dataset

    x, _ = td.load_tfds("tiny", "train", tiny_dir)
    register_dataset("tiny", lambda split, data_dir: td.load_tfds("tiny", split, data_dir), *PREPARATION["mnist"])
    try:
        ds = load_dataset("tiny", "train", (32, 32, 1), tiny_dir)
        flat = load_dataset("tiny", "train", (1024,), tiny_dir)
    finally:
        DATASETS.pop("tiny", None)
    z = ds.x
    assert z.shape == (N_TRAIN, 32, 32, 1) and ds.image_shape == (32, 32, 1)
    np.testing.assert_allclose(z[:, :2], -0.1307 / 0.3081, rtol=1e-6)  # padded border = black pixel
    np.testing.assert_allclose(z[:, 2:30, 2:30], (x / 255.0 - 0.1307) / 0.3081, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(flat.x, z.reshape(N_TRAIN, 1024))


def test_missing_dataset_and_split_errors(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        td.load_tfds("mnist", "train", str(tmp_path))
    with pytest.raises(ValueError, match="unknown TFDS dataset"):
        td.load_tfds("mnist_typo", "train", str(tmp_path))
    with pytest.raises(ValueError, match="unknown split"):
        td.load_tfds("cifar10", "validation", str(tmp_path))


def test_missing_package_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"holoeb\[tfds\]"):
        td.load_tfds("cifar10", "train", str(tmp_path))


def test_tfds_split_as_a_stream(tiny_dir):
    """tfds_source reads the split in chunks (as_numpy): in file order it is exactly load_tfds;
    as a StreamDataset it shuffles within a buffer, every example once per epoch, and prepares
    each batch like the in-memory dataset."""
    import functools

    from holoeb.data.pipeline import Dataset, StreamDataset, batches
    from holoeb.data.registry import DATASETS, PREPARATION, load_dataset, register_dataset

    x, y = td.load_tfds("tiny", "train", tiny_dir)
    source, n = td.tfds_source("tiny", "train", tiny_dir, chunk=5)
    chunks = list(source(None))
    assert n == N_TRAIN and [len(c[1]) for c in chunks] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), x)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), y)
    seeded = np.concatenate([c[1] for c in source(7)])
    np.testing.assert_array_equal(seeded, np.concatenate([c[1] for c in source(7)]))  # deterministic per seed
    register_dataset("tiny", lambda split, data_dir: td.load_tfds("tiny", split, data_dir), *PREPARATION["mnist"],
                     stream=functools.partial(td.tfds_source, "tiny"))
    try:
        mem = load_dataset("tiny", "train", (32, 32, 1), tiny_dir)
        st = load_dataset("tiny", "train", (32, 32, 1), tiny_dir, stream=True, buffer_size=4)
    finally:
        DATASETS.pop("tiny", None)
    assert isinstance(mem, Dataset) and mem.data.dtype == np.uint8 and isinstance(st, StreamDataset)
    assert len(st) == N_TRAIN and st.image_shape == (32, 32, 1)
    np.testing.assert_array_equal(st.take(N_TRAIN).x, mem.x)
    got = list(batches(st, 3, np.random.default_rng(0)))
    assert len(got) == 4
    xs, ys = np.concatenate([b.x for b in got]), np.concatenate([b.y for b in got])
    assert sorted(ys.tolist()) == sorted(y.tolist())
    # each example's prepared pixels are the in-memory ones (match by content)
    rows = {mem.x[i].tobytes() for i in range(N_TRAIN)}
    assert all(r.tobytes() in rows for r in xs) and len({r.tobytes() for r in xs}) == N_TRAIN
