"""Dataset registry: one table of (loader, number of classes, normalisation, default
random-flip augmentation) per dataset, used by ``holoeb train`` and ``holoeb study``.

``load_dataset`` fits the raw images to the model input in one order for every
dataset (holoeb.data.pipeline): zero-pad the raw uint8 image to the model's spatial
size, then normalise with the table's mean / std, then flatten for dense models. The
split stays uint8 in memory and is prepared per batch; a dataset registered with a
``stream`` source (TFDS ones: holoeb.data.tfds_datasets.tfds_source) can instead be
read as a `StreamDataset` (``load_dataset(..., stream=True)``, or ``stream_by_default``
in its registry entry, which ``holoeb train`` follows), for splits beyond memory.

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
from holoeb.data.pipeline import Dataset, StreamDataset, fit_size, make_preparation, prepare_images
from holoeb.errors import ConfigError


class DatasetSpec(NamedTuple):
    loader: Callable  # (split, data_dir) -> (uint8 images (n, H, W[, C]), int labels (n,))
    num_classes: int
    mean: Optional[tuple] = None  # per channel, in [0, 1] pixel units; None: no normalisation
    std: Optional[tuple] = None
    flip: bool = False  # random horizontal flips on the training set by default
    stream: Optional[Callable] = None  # (split, data_dir) -> (source(seed) -> (images, labels) chunks, n)
    stream_by_default: bool = False  # load_dataset streams unless told otherwise

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


def register_dataset(name, loader, num_classes, mean=None, std=None, flip=False, stream=None,
                     stream_by_default=False):
    """Add (or replace) a dataset: ``loader(split, data_dir)`` returns raw images and labels;
    optionally ``stream(split, data_dir)`` returns (source, number of examples) for reading
    the split as a `StreamDataset` (``source(seed)``: an iterable of (images, labels) chunks),
    which ``load_dataset`` uses when asked, or always with ``stream_by_default``."""
    if (mean is None) != (std is None):
        raise ValueError(f"dataset {name!r}: give both mean and std, or neither")
    if stream_by_default and stream is None:
        raise ValueError(f"dataset {name!r}: stream_by_default needs a stream source")
    DATASETS[name] = DatasetSpec(loader, int(num_classes), None if mean is None else tuple(mean),
                                 None if std is None else tuple(std), bool(flip), stream, bool(stream_by_default))


def dataset_spec(name):
    """The registry entry of ``name`` (ValueError naming the known datasets otherwise)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}"
                         + ("" if "cifar10" in DATASETS else " (MNIST/SVHN/CIFAR/Imagenet32 need tensorflow-datasets)"))
    return DATASETS[name]


def load_dataset(name, split, input_shape, data_dir=None, size=None, normalize=True, stream=None,
                 buffer_size=10_000):
    """A `Dataset` of split 'train' or 'test' ('test' is the validation set): the raw uint8
    images and labels, prepared per batch for ``input_shape`` (zero-padded to the model's
    spatial size, normalised with the table's mean / std, reshaped); ``size`` keeps the first
    examples (None: all). ``stream`` (None: the registry entry's ``stream_by_default``) gives a
    `StreamDataset` read from the dataset's stream source instead, shuffled within
    ``buffer_size`` examples. ConfigError for a size outside 1..n or labels that are not
    class indices (a stream checks each chunk as it is read)."""
    spec = dataset_spec(name)
    if stream is None:
        stream = spec.stream_by_default
    if stream:
        return _load_stream(name, spec, split, input_shape, data_dir, size, normalize, buffer_size)
    images, labels = spec.loader(split, data_dir)
    if size is not None:
        _check_size(name, split, size, len(labels))
        images, labels = images[:size], labels[:size]
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(f"{name} {split}: labels must be one integer per image, got shape {labels.shape} "
                          f"for {len(images)} images")
    _check_labels(name, split, spec, labels)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    pad_to = fit_size(images.shape[1:], tuple(input_shape))
    mean, std = (spec.mean, spec.std) if normalize else (None, None)
    return Dataset.from_images(images, np.asarray(labels, np.int32), input_shape, mean, std, pad_to)


def _check_size(name, split, size, n):
    if size < 1 or size > n:
        raise ConfigError(f"{name} {split}: asked for {size} examples, the split has {n} (use 1..{n} or null for all)")


def _check_labels(name, split, spec, labels, offset=0):
    bad = (labels < 0) | (labels >= spec.num_classes) | (labels != np.round(labels))
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ConfigError(f"{name} {split}: label {labels[i].item()!r} of example {offset + i} is not a class index in "
                          f"[0, {spec.num_classes}) ({int(bad.sum())} such labels" + (" in its chunk)" if offset else ")"))


def _load_stream(name, spec, split, input_shape, data_dir, size, normalize, buffer_size):
    if spec.stream is None:
        raise ConfigError(f"dataset {name!r} has no stream source; load it in memory (data.stream=false; streaming is for TFDS datasets)")
    source, n = spec.stream(split, data_dir)
    if size is not None:
        _check_size(name, split, size, n)
        n = size
    mean, std = (spec.mean, spec.std) if normalize else (None, None)

    def check(labels, offset):
        if labels.ndim != 1:
            raise ConfigError(f"{name} {split}: labels must be one integer per image, got shape {labels.shape}")
        _check_labels(name, split, spec, labels, offset)

    # the preparation needs the raw image shape: read it from the first chunk
    first = next(iter(source(None)))[0]
    raw_shape = np.asarray(first).shape[1:]
    raw_shape = raw_shape if len(raw_shape) == 3 else tuple(raw_shape) + (1,)
    prep = make_preparation(input_shape, mean, std, fit_size(raw_shape, tuple(input_shape)))
    return StreamDataset(source, n, prep, prep.image_shape(raw_shape), buffer_size, check)


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
    from holoeb.data.tfds_datasets import TFDS_DATASETS, load_tfds, tfds_source

    for name, prep in PREPARATION.items():
        if name in TFDS_DATASETS and name not in DATASETS:
            register_dataset(name, functools.partial(load_tfds, name), *prep, stream=functools.partial(tfds_source, name))
    if "svhn_cropped" in DATASETS:
        DATASETS["svhn"] = DATASETS["svhn_cropped"]


_register_tfds()
