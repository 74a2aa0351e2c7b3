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
