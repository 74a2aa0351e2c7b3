"""Dataset registry used by training: name -> loader(split, data_dir) returning
(uint8 images (n, H, W[, C]), int labels (n,)), plus optional per-channel
normalisation. Images are fitted to the model's input shape: flattened for MLPs,
zero-padded (28x28 -> 32x32) for convolutional models."""
import numpy as np

from holoeb.data.fashion_mnist import load_fashion_mnist
from holoeb.data.pipeline import Dataset, prepare_images

DATASETS = {
    "fashion_mnist": {"loader": load_fashion_mnist, "num_classes": 10, "mean": None, "std": None},
}


def register_dataset(name, loader, num_classes, mean=None, std=None):
    DATASETS[name] = {"loader": loader, "num_classes": num_classes, "mean": mean, "std": std}


def load_dataset(name, split, input_shape, data_dir=None, size=None, normalize=True):
    """A model-ready `Dataset` for split 'train' or 'test' ('test' is the validation set)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    images, labels = spec["loader"](split, data_dir)
    if size:
        images, labels = images[:size], labels[:size]
    pad_to = None
    if len(input_shape) == 3 and images.shape[1] != input_shape[0]:
        pad_to = input_shape[0]
    mean, std = (spec["mean"], spec["std"]) if normalize else (None, None)
    x = prepare_images(images, input_shape, mean, std, pad_to)
    return Dataset(x, np.asarray(labels, np.int32))


# TFDS datasets (holoeb.data.tfds_datasets; tensorflow-datasets is imported only when one is loaded).
# Per-channel normalisation constants are the usual training-set statistics.
TFDS_TRAINING = {
    # name: (num_classes, mean, std)
    "mnist": (10, (0.1307,), (0.3081,)),
    "svhn_cropped": (10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "cifar10": (10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": (100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet32": (1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _register_tfds():
    import functools

    from holoeb.data.tfds_datasets import TFDS_DATASETS, load_tfds

    for name, (n, mean, std) in TFDS_TRAINING.items():
        if name in TFDS_DATASETS:
            register_dataset(name, functools.partial(load_tfds, name), n, mean, std)
    if "svhn_cropped" in DATASETS:
        DATASETS["svhn"] = DATASETS["svhn_cropped"]


_register_tfds()
