"""Host-side batching: deterministic shuffles, normalisation, flattening/padding."""
from typing import NamedTuple

import numpy as np

from holoeb.data.batch import Batch


class Dataset(NamedTuple):
    x: np.ndarray  # float32, model-ready per-example shape
    y: np.ndarray  # int32 labels

    def __len__(self):
        return len(self.y)

    def subset(self, n):
        return Dataset(self.x[:n], self.y[:n]) if n else self


def prepare_images(images, input_shape, mean=None, std=None, pad_to=None):
    """uint8 images (n, H, W[, C]) -> float32 in [0, 1], optionally normalised per
    channel, zero-padded to pad_to x pad_to, and reshaped to (n, *input_shape)."""
    x = images.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    if mean is not None:
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if pad_to is not None:
        ph, pw = pad_to - x.shape[1], pad_to - x.shape[2]
        if ph < 0 or pw < 0:
            raise ValueError(f"cannot pad images of size {x.shape[1:3]} to {pad_to}")
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    n = x.shape[0]
    if int(np.prod(x.shape[1:])) != int(np.prod(input_shape)):
        raise ValueError(f"images of shape {x.shape[1:]} cannot be reshaped to the model input {tuple(input_shape)}")
    return x.reshape((n,) + tuple(input_shape))


def batches(ds, batch_size, rng=None, drop_last=True, start=0):
    """Yield Batch(x, y) numpy batches; shuffled with ``rng`` (np.random.Generator) if given.
    ``start`` skips the first batches (resume inside an epoch)."""
    n = len(ds)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(start * batch_size, stop, batch_size):
        idx = order[i : i + batch_size]
        yield Batch(ds.x[idx], ds.y[idx])
