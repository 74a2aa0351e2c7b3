"""Host-side data preparation and batching: one order for every dataset and command.

Order (``prepare_images``): the raw uint8 image is zero-padded to the model's spatial
size (28 x 28 -> 32 x 32 for the MNISTs), *then* scaled to [0, 1] and normalised per
channel, then reshaped to the model input (flattened for dense models). Padding the
raw image first makes the added border a black pixel, i.e. the same value as the
MNIST / Fashion-MNIST background after normalisation, so the network sees one uniform
background; normalising first and padding the normalised image with zeros would give
a border at the dataset mean, a frame that is not in the data. It is also the order of
the comparative study's authors (Scellier, Ernoult, Kendall, Kumar, "Energy-Based
Learning Algorithms for Analog Computing: A Comparative Study", arXiv:2312.15103,
App. D: pad to 32 x 32, then normalise with Table 4).

Random horizontal flips (``random_flip``) are a training-set augmentation applied per
batch; they act on the image layout even when the model input is flattened.
"""
from typing import NamedTuple, Optional

import numpy as np

from holoeb.data.batch import Batch


class Dataset(NamedTuple):
    x: np.ndarray  # float32, model-ready per-example shape
    y: np.ndarray  # int32 labels
    image_shape: Optional[tuple] = None  # (H, W, C) of the (padded) images behind x, for flips

    def __len__(self):
        return len(self.y)

    def subset(self, n):
        return Dataset(self.x[:n], self.y[:n], self.image_shape) if n else self


def pad_images(images, size):
    """Zero-pad (n, H, W, C) images symmetrically to size = (H', W') (extra pixel at the end)."""
    ph, pw = size[0] - images.shape[1], size[1] - images.shape[2]
    if ph < 0 or pw < 0:
        raise ValueError(f"cannot pad images of size {tuple(images.shape[1:3])} to {tuple(size)}")
    if ph == 0 and pw == 0:
        return images
    return np.pad(images, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def fit_size(image_shape, input_shape):
    """The (H, W) the images must be padded to for ``input_shape``: the model's spatial size
    for image inputs (H, W, C); for flat inputs, the square that matches the number of
    features (e.g. 1024 = 32 x 32 x 1 for 28 x 28 images), or None (no padding)."""
    h, w, c = image_shape
    if len(input_shape) == 3:
        return tuple(input_shape[:2])
    n = int(np.prod(input_shape))
    if n == h * w * c or n % c:
        return None
    side = int(round((n // c) ** 0.5))
    if side * side * c == n and side >= h and side >= w:
        return (side, side)
    return None


def prepare_images(images, input_shape, mean=None, std=None, pad_to=None):
    """uint8 images (n, H, W[, C]) -> zero-padded to pad_to (an int or (H, W); raw pixels,
    before normalisation), float32 in [0, 1], optionally normalised per channel, reshaped
    to (n, *input_shape)."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if pad_to is not None:
        x = pad_images(x, (pad_to, pad_to) if np.isscalar(pad_to) else tuple(pad_to))
    x = x.astype(np.float32) / 255.0
    if mean is not None:
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    n = x.shape[0]
    if int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
        raise ValueError(f"images of shape {x.shape[1:]} cannot be reshaped to the model input {tuple(input_shape)}")
    return x.reshape((n,) + tuple(input_shape))


def random_flip(x, rng, image_shape=None):
    """Flip each example left-right with probability 1/2 (``rng``: np.random.Generator).
    ``x`` is (n, H, W, C), or model-ready with ``image_shape`` = (H, W, C) given."""
    x = np.asarray(x)
    shape = x.shape
    img = x.reshape((shape[0],) + tuple(image_shape)) if image_shape is not None else x
    if img.ndim != 4:
        raise ValueError(f"random_flip needs (n, H, W, C) images or image_shape, got shape {shape}")
    flip = rng.random(shape[0]) < 0.5
    out = np.where(flip[:, None, None, None], img[:, :, ::-1, :], img)
    return out.reshape(shape)


def batches(ds, batch_size, rng=None, drop_last=True, start=0):
    """Yield Batch(x, y) numpy batches; shuffled with ``rng`` (np.random.Generator) if given.
    ``start`` skips the first batches (resume inside an epoch)."""
    n = len(ds)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(start * batch_size, stop, batch_size):
        idx = order[i : i + batch_size]
        yield Batch(ds.x[idx], ds.y[idx])
