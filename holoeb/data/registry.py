"""Dataset registry: one table of (loader, number of classes, normalisation, default
random-flip augmentation) per dataset, used by ``holoeb train`` and ``holoeb study``.

``load_dataset`` fits the raw images to the model input in one order for every
dataset (holoeb.data.pipeline): zero-pad the raw uint8 image to the model's spatial
size, then normalise with the table's mean / std, then flatten for dense models.

Sources of the constants:
  * mnist, fashion_mnist, svhn_cropped, cifar10, cifar100: Table 4 and App. D of
    Scellier, Ernoult, Kendall, Kumar, "Energy-Based Learning Algorithms for Analog
    Computing: A Comparative Study" (NeurIPS 2023, arXiv:2312.15103). CIFAR-10 uses the
    std printed there, 3 x (0.2023, 0.1994, 0.2010), as the authors' code does (not the
    pixel std 0.247/0.243/0.261), so the study's inputs are those behind its Table 1.
    Flips on the training sets of Fashion-MNIST, CIFAR-10 and CIFAR-100 only (App. D).
  * imagenet32: the usual ImageNet per-channel statistics (mean 0.485/0.456/0.406, std
    0.229/0.224/0.225 of the full-resolution ImageNet training set); no paper here
    specifies an augmentation for it, so flips are off by default.
"""
import functools
from typing import Callable, NamedTuple, Optional

import numpy as np

from holoeb.data.fashion_mnist import load_fashion_mnist
from holoeb.data.pipeline import Dataset, fit_size, prepare_images
from holoeb.errors import ConfigError


class DatasetSpec(NamedTuple):
    loader: Callable  # (split, data_dir) -> (uint8 images (n, H, W[, C]), int labels (n,))
    num_classes: int
    mean: Optional[tuple] = None  # per channel, in [0, 1] pixel units; None: no normalisation
    std: Optional[tuple] = None
    flip: bool = False  # random horizontal flips on the training set by default

    @property
    def channels(self):
        return len(self.mean) if self.mean is not None else None


# name: (num_classes, mean, std, random flip on the training set)
PREPARATION = {
    "mnist": (10, (0.1307,), (0.3081,), False),
    "fashion_mnist": (10, (0.2860,), (0.3530,), True),
    "svhn_cropped": (10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False),
    "cifar10": (10, (0.4914, 0.4822, 0.4465), (3 * 0.2023, 3 * 0.1994, 3 * 0.2010), True),
    "cifar100": (100, (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761), True),
    "imagenet32": (1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
}

DATASETS = {}


def register_dataset(name, loader, num_classes, mean=None, std=None, flip=False):
    """Add (or replace) a dataset: ``loader(split, data_dir)`` returns raw images and labels."""
    if (mean is None) != (std is None):
        raise ValueError(f"dataset {name!r}: give both mean and std, or neither")
    DATASETS[name] = DatasetSpec(loader, int(num_classes), None if mean is None else tuple(mean),
                                 None if std is None else tuple(std), bool(flip))


def dataset_spec(name):
    """The registry entry of ``name`` (ValueError naming the known datasets otherwise)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}"
                         + ("" if "cifar10" in DATASETS else " (MNIST/SVHN/CIFAR/Imagenet32 need tensorflow-datasets)"))
    return DATASETS[name]


def load_dataset(name, split, input_shape, data_dir=None, size=None, normalize=True):
    """A model-ready `Dataset` for split 'train' or 'test' ('test' is the validation set):
    raw images zero-padded to the model's spatial size, normalised (table mean/std), and
    shaped to ``input_shape``; ``size`` keeps the first examples (None: all)."""
    spec = dataset_spec(name)
    images, labels = spec.loader(split, data_dir)
    if size is not None:
        if size < 1 or size > len(labels):
            raise ConfigError(f"{name} {split}: asked for {size} examples, the split has {len(labels)} (use 1..{len(labels)} or null for all)")
        images, labels = images[:size], labels[:size]
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(f"{name} {split}: labels must be one integer per image, got shape {labels.shape} "
                          f"for {len(images)} images")
    bad = (labels < 0) | (labels >= spec.num_classes) | (labels != np.round(labels))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ConfigError(f"{name} {split}: label {labels[i].item()!r} of example {i} is not a class index in "
                          f"[0, {spec.num_classes}) ({int(bad.sum())} such labels)")
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    pad_to = fit_size(images.shape[1:], tuple(input_shape))
    mean, std = (spec.mean, spec.std) if normalize else (None, None)
    x = prepare_images(images, input_shape, mean, std, pad_to)
    image_shape = (tuple(pad_to) if pad_to else tuple(images.shape[1:3])) + (images.shape[3],)
    return Dataset(x, np.asarray(labels, np.int32), image_shape)


def normalise(images, name, size=32):
    """Raw (n, H, W[, C]) images of dataset ``name`` -> zero-padded to size x size, then
    normalised with the table's mean / std: float32 NHWC (the study's DCHN input)."""
    spec = dataset_spec(name)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return prepare_images(images, (size, size, images.shape[-1]), spec.mean, spec.std, pad_to=size)


register_dataset("fashion_mnist", load_fashion_mnist, *PREPARATION["fashion_mnist"])


def _register_tfds():
    # TFDS datasets (holoeb.data.tfds_datasets; tensorflow-datasets is imported only when one is loaded)
    from holoeb.data.tfds_datasets import TFDS_DATASETS, load_tfds

    for name, prep in PREPARATION.items():
        if name in TFDS_DATASETS and name not in DATASETS:
            register_dataset(name, functools.partial(load_tfds, name), *prep)
    if "svhn_cropped" in DATASETS:
        DATASETS["svhn"] = DATASETS["svhn_cropped"]


_register_tfds()
