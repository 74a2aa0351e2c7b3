"""Image-classification datasets through tensorflow-datasets (optional extra) from a
user-given data_dir: MNIST, SVHN (cropped), CIFAR-10, CIFAR-100 (comparative
study, App. D), as a table of dataset specs others can extend with
`register_tfds_dataset`.

Nothing is downloaded implicitly: prepare a dataset once with
``tfds build <name> --data_dir DIR`` (or ``tfds.builder(name, data_dir=DIR).download_and_prepare()``)
and pass data_dir=DIR. tensorflow-datasets is imported lazily (``pip install holoeb[tfds]``).

Memory: ``load_tfds`` reads a split in chunks into one preallocated uint8 array (peak about
the split's uint8 size: 3.9 GB for Imagenet32 train), and ``tfds_source`` reads it as a
stream of chunks (`holoeb.data.pipeline.StreamDataset`) for splits that must not be held.
"""
import os
from typing import NamedTuple

import numpy as np


class TFDSSpec(NamedTuple):
    tfds_name: str  # name (optionally name/config) for tfds.builder
    splits: dict  # our split name -> TFDS split
    image_key: str = "image"
    label_key: str = "label"


TFDS_DATASETS = {
    "mnist": TFDSSpec("mnist", {"train": "train", "test": "test"}),
    "svhn_cropped": TFDSSpec("svhn_cropped", {"train": "train", "test": "test"}),
    "cifar10": TFDSSpec("cifar10", {"train": "train", "test": "test"}),
    "cifar100": TFDSSpec("cifar100", {"train": "train", "test": "test"}),
    # generalized hEP paper, Table 2 (manual download of the Imagenet32 archives into data_dir/downloads/manual)
    "imagenet32": TFDSSpec("imagenet_resized/32x32", {"train": "train", "test": "validation"}),
}


def register_tfds_dataset(name, spec):
    """Add a dataset to the table (e.g. imagenet_resized/32x32)."""
    if not isinstance(spec, TFDSSpec):
        raise TypeError("spec must be a TFDSSpec")
    TFDS_DATASETS[name] = spec


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "loading MNIST/SVHN/CIFAR needs tensorflow-datasets: `pip install 'holoeb[tfds]'` "
            "(tensorflow-datasets and tensorflow-cpu); Fashion-MNIST works without it (offline IDX files)."
        ) from e
    return tfds


def _how(name, spec, data_dir):
    return (
        f"Prepare it once with `tfds build {spec.tfds_name} --data_dir {data_dir}` (or "
        f"tfds.builder({spec.tfds_name!r}, data_dir={data_dir!r}).download_and_prepare()) on a machine with network "
        f"access, then pass data_dir={data_dir!r} (--data-dir)."
    )


def _builder(name, split, data_dir):
    if name not in TFDS_DATASETS:
        raise ValueError(f"unknown TFDS dataset {name!r}; choose one of {sorted(TFDS_DATASETS)} "
                         "(or add one with register_tfds_dataset)")
    spec = TFDS_DATASETS[name]
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r} for {name}; choose one of {sorted(spec.splits)}")
    data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
    tfds = _import_tfds()
    try:
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    except Exception as e:  # unknown name / not registered
        raise FileNotFoundError(f"TFDS dataset {spec.tfds_name!r} unavailable in {data_dir!r} ({e}). "
                                f"{_how(name, spec, data_dir)}") from e
    if not builder.is_prepared():
        raise FileNotFoundError(f"TFDS dataset {spec.tfds_name!r} is not prepared in {data_dir!r}. "
                                f"{_how(name, spec, data_dir)}")
    return tfds, builder, spec


def tfds_source(name, split="train", data_dir=None, chunk=1024):
    """(source, number of examples) of ``split`` read as a stream: ``source(seed)`` iterates
    the split as (uint8 images (k, H, W, C), int32 labels (k,)) chunks of ``chunk`` examples
    through ``tfds.as_numpy``; seed None reads the files in their fixed order, an int in an
    order shuffled by that seed (``tfds.ReadConfig(shuffle_seed=seed)``: deterministic).
    Errors as `load_tfds`, raised here (before any reading)."""
    tfds, builder, spec = _builder(name, split, data_dir)
    tfds_split = spec.splits[split]
    n = int(builder.info.splits[tfds_split].num_examples)

    def source(seed=None):
        read_config = tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
        ds = builder.as_dataset(split=tfds_split, batch_size=chunk, shuffle_files=seed is not None,
                                read_config=read_config)
        for ex in tfds.as_numpy(ds):
            images = np.asarray(ex[spec.image_key], np.uint8)
            labels = np.asarray(ex[spec.label_key]).astype(np.int32)
            if images.ndim == 3:
                images = images[..., None]
            yield images, labels

    return source, n


def load_tfds(name, split="train", data_dir=None):
    """Return (images uint8 (n, H, W, C), labels int32 (n,)) of ``split`` ('train'/'test').

    data_dir defaults to $TFDS_DATA_DIR, then ~/tensorflow_datasets. Raises ValueError for an
    unknown dataset/split, ImportError without tensorflow-datasets and FileNotFoundError when
    the dataset is not prepared under data_dir (never downloads). Read in chunks into one
    preallocated array (no second full copy).
    """
    source, n = tfds_source(name, split, data_dir)
    images = labels = None
    count = 0
    for x, y in source(None):
        if images is None:
            images = np.empty((n,) + x.shape[1:], np.uint8)
            labels = np.empty((n,), np.int32)
        if count + len(y) > n or len(x) != len(y):
            raise ValueError(f"{name} {split}: the split holds more than its {n} recorded examples, or a chunk "
                             f"has {len(x)} images for {len(y)} labels")
        images[count : count + len(y)], labels[count : count + len(y)] = x, y
        count += len(y)
    if count != n:
        raise ValueError(f"{name} {split}: {count} examples read, {n} recorded")
    return images, labels
