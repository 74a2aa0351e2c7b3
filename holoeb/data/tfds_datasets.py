"""Image-classification datasets through tensorflow-datasets (optional extra) from a
user-given data_dir: MNIST, SVHN (cropped), CIFAR-10, CIFAR-100 (comparative
study, App. D), as a table of dataset specs others can extend with
`register_tfds_dataset`.

Nothing is downloaded implicitly: prepare a dataset once with
``tfds build <name> --data_dir DIR`` (or ``tfds.builder(name, data_dir=DIR).download_and_prepare()``)
and pass data_dir=DIR. tensorflow-datasets is imported lazily (``pip install holoeb[tfds]``).
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


def load_tfds(name, split="train", data_dir=None):
    """Return (images uint8 (n, H, W, C), labels int32 (n,)) of ``split`` ('train'/'test').

    data_dir defaults to $TFDS_DATA_DIR, then ~/tensorflow_datasets. Raises ValueError for an
    unknown dataset/split, ImportError without tensorflow-datasets and FileNotFoundError when
    the dataset is not prepared under data_dir (never downloads).
    """
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
    ds = tfds.as_numpy(builder.as_dataset(split=spec.splits[split], batch_size=-1, shuffle_files=False))
    images = np.asarray(ds[spec.image_key], np.uint8)
    labels = np.asarray(ds[spec.label_key]).astype(np.int32)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{name} {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels
