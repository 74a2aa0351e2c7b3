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

Training-set augmentation (`Augmentation`: random translations ``random_crop`` and
horizontal flips ``random_flip``) is applied per batch to the padded raw images; it acts
on the image layout even when the model input is flattened.

Memory (ImageNet 32 x 32 is 1.28M images: 3.9 GB as uint8, 15.7 GB as float32): datasets
keep their *raw uint8* images, and ``batches`` prepares each batch on its way out (gather
-> pad -> flip -> float / normalise -> reshape), so only a batch is ever float32. The
per-batch result is bit-identical to ``prepare_images`` on the whole array followed by
``random_flip`` (normalisation is per channel and elementwise, so it commutes with the
flip and with indexing). A random crop acts on the raw padded image, so its edge padding
replicates raw pixels (for the MNISTs: the black border added by the 32 x 32 padding). Two kinds of dataset share the ``batches`` interface:

  * `Dataset`: raw images and labels in memory (random-access; a shuffle is a
    permutation of the whole split, as before);
  * `StreamDataset`: an iterable of (images, labels) chunks read afresh each epoch
    (e.g. a TFDS split, holoeb.data.tfds_datasets.tfds_source), for splits that do not
    fit in memory even as uint8; shuffling is within a bounded buffer of
    ``buffer_size`` examples (uint8), plus the source's own file order per seed.

``prefetch`` prepares (and device-puts) the next batches in a background thread while
the current step runs.
"""
import queue
import threading
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from holoeb.data.batch import Batch

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
    x = x.astype(np.float32)  # a new array: the in-place steps below give the values of x / 255.0 etc.
    x /= np.float32(255.0)
    if mean is not None:
        x -= np.asarray(mean, np.float32)
        x /= np.asarray(std, np.float32)
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
    out = img.copy()
    out[flip] = img[flip][:, :, ::-1, :]  # (copies only the flipped examples; same values as np.where)
    return out.reshape(shape)


def random_crop(x, rng, pad, image_shape=None):
    """Translate each example by a random (dy, dx) in [-pad, pad]^2: the image is edge-padded by
    ``pad`` pixels and cropped back to its size at a uniform random offset (torchvision's
    RandomCrop(size, padding=pad, padding_mode="edge")). ``x``: (n, H, W, C), or model-ready with
    ``image_shape`` = (H, W, C) given; ``rng``: np.random.Generator."""
    x = np.asarray(x)
    shape = x.shape
    img = x.reshape((shape[0],) + tuple(image_shape)) if image_shape is not None else x
    if img.ndim != 4:
        raise ValueError(f"random_crop needs (n, H, W, C) images or image_shape, got shape {shape}")
    n, h, w, _ = img.shape
    off = rng.integers(0, 2 * pad + 1, size=(2, n))
    padded = np.pad(img, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    rows = (off[0][:, None] + np.arange(h))[:, :, None]
    cols = (off[1][:, None] + np.arange(w))[:, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols].reshape(shape)


class Augmentation(NamedTuple):
    """Training-set augmentation of batch i, with its own generator ``rng(i)`` (np.random.Generator;
    e.g. seeded by (seed, epoch, i), so a resumed epoch augments the same examples the same way).
    Order as in the comparative study's released loader: random translation by up to ``crop``
    pixels (`random_crop`), then a left-right flip with probability 1/2 (``flip``, `random_flip`)."""
    rng: Callable[[int], Any]
    flip: bool = False
    crop: int = 0

    def __call__(self, images, i, image_shape=None):
        g = self.rng(i)
        if self.crop:
            images = random_crop(images, g, self.crop, image_shape)
        if self.flip:
            images = random_flip(images, g, image_shape)
        return images



class Preparation(NamedTuple):
    """How raw uint8 images (n, H, W[, C]) become model input: zero-pad to ``pad_to`` = (H', W')
    (None: no padding), then float32 / 255, then (x - mean) / std per channel (mean None: no
    normalisation), then reshape to (n, *input_shape). ``prepare_images`` does the same in one go."""
    input_shape: tuple
    pad_to: Optional[tuple] = None
    mean: Optional[tuple] = None
    std: Optional[tuple] = None

    def images(self, raw):
        """Raw images -> padded uint8 images (n, H', W', C) (the layout flips act on)."""
        x = np.asarray(raw)
        if x.ndim == 3:
            x = x[..., None]
        return pad_images(x, self.pad_to) if self.pad_to is not None else x

    def finish(self, images):
        """Padded (and possibly flipped) images -> float32 model input (n, *input_shape)."""
        return prepare_images(images, self.input_shape, self.mean, self.std)

    def __call__(self, raw):
        return self.finish(self.images(raw))

    def image_shape(self, raw_shape):
        """(H, W[, C]) of a raw image -> (H', W', C) after padding; ValueError if that image
        cannot be reshaped to the model input."""
        h, w = raw_shape[:2]
        c = raw_shape[2] if len(raw_shape) > 2 else 1
        shape = (tuple(self.pad_to) if self.pad_to is not None else (h, w)) + (c,)
        if int(np.prod(shape)) != int(np.prod(self.input_shape)):
            raise ValueError(f"images of shape {shape} cannot be reshaped to the model input {tuple(self.input_shape)}")
        return shape


def make_preparation(input_shape, mean=None, std=None, pad_to=None):
    pad = None if pad_to is None else ((pad_to, pad_to) if np.isscalar(pad_to) else tuple(pad_to))
    return Preparation(tuple(input_shape), pad, None if mean is None else tuple(mean),
                       None if std is None else tuple(std))


def _prepare(data, prep, image_shape, augment=None, i=0):
    """Rows of a dataset's stored array -> model-ready float32 (augmented as batch ``i`` by
    ``augment``, an `Augmentation`, if given)."""
    if prep is None:  # stored model-ready
        return augment(data, i, image_shape) if augment is not None else data
    images = prep.images(data)
    if augment is not None:
        images = augment(images, i)
    return prep.finish(images)


class Dataset:
    """A split in memory: ``data`` holds the raw uint8 images (n, H, W[, C]) and ``prep`` how
    they become model input (prepared per batch by ``batches`` / ``batch`` / ``take``), or,
    without ``prep``, model-ready arrays used as they are. ``y``: integer labels.
    ``image_shape``: (H, W, C) of the (padded) images, the layout random flips act on.

    ``Dataset(x, y[, image_shape])`` wraps prepared arrays as before; `from_images` keeps
    raw images. ``x`` prepares (and caches) the whole split for code that wants one array;
    training never touches it."""

    def __init__(self, x, y, image_shape=None, prep=None):
        self.data = x if isinstance(x, np.ndarray) else np.asarray(x)
        self.y = np.asarray(y)
        if len(self.data) != len(self.y):
            raise ValueError(f"{len(self.data)} examples but {len(self.y)} labels")
        self.prep = prep
        if image_shape is None and prep is not None:
            image_shape = prep.image_shape(self.data.shape[1:])
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self._x = None

    @classmethod
    def from_images(cls, images, labels, input_shape, mean=None, std=None, pad_to=None):
        """Raw uint8 images (n, H, W[, C]) kept as they are; prepared per batch."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        return cls(images, labels, prep=make_preparation(input_shape, mean, std, pad_to))

    def __len__(self):
        return len(self.y)

    @property
    def x(self):
        """The whole split prepared (float32, model-ready; cached): fine for small sets, 4x the
        raw size for uint8 images — use ``batches`` / ``take`` for large ones."""
        if self._x is None:
            self._x = _prepare(self.data, self.prep, self.image_shape, None)
        return self._x

    def batch(self, idx, augment=None, i=0):
        """Batch(x, y) of the examples ``idx`` (indices or a slice), prepared, augmented as
        batch ``i`` by ``augment`` (`Augmentation`) if given."""
        return Batch(_prepare(self.data[idx], self.prep, self.image_shape, augment, i), self.y[idx])

    def take(self, n):
        """The first n examples as one prepared Batch (e.g. a fixed diagnostics batch)."""
        return self.batch(slice(0, n))

    def subset(self, n):
        return Dataset(self.data[:n], self.y[:n], self.image_shape, self.prep) if n else self


class StreamDataset:
    """A split read as a stream of (images, labels) chunks, for splits that do not fit in
    memory: ``source(seed)`` returns a fresh iterable of chunks each pass (``seed`` None: the
    source's fixed order, e.g. for evaluation; an int drawn from the shuffling rng: a
    deterministic, possibly shuffled, order such as a TFDS file order; a source may ignore it).
    Chunks are raw uint8 images (k, H, W[, C]) with k labels, any k.

    ``length``: the number of examples read per pass (the source is cut there; a source that
    ends earlier is an error, since training counts steps per epoch from it). ``batches``
    shuffles within a buffer of ``buffer_size`` raw examples: each batch is drawn uniformly
    without replacement from the buffer, which is refilled in stream order, so the order is
    a function of the stream and the rng only (a resumed epoch replays it). Memory: the
    buffer (buffer_size x H x W x C bytes) plus one chunk. ``check(labels, offset)`` may
    validate each chunk's labels (raise to refuse)."""

    def __init__(self, source, length, prep=None, image_shape=None, buffer_size=10_000, check=None):
        self.source, self.length, self.prep = source, None if length is None else int(length), prep
        self.buffer_size, self.check = int(buffer_size), check
        self.image_shape = None if image_shape is None else tuple(image_shape)

    def __len__(self):
        if self.length is None:
            raise TypeError("this StreamDataset has no known length")
        return self.length

    def chunks(self, seed=None):
        """The (images, labels) chunks of one pass, raw, cut to ``length``; labels int32."""
        count = 0
        for images, labels in self.source(seed):
            images, labels = np.asarray(images), np.asarray(labels)
            if images.ndim == 3:
                images = images[..., None]
            if len(images) != len(labels):
                raise ValueError(f"stream chunk at example {count}: {len(images)} images but {len(labels)} labels")
            if self.length is not None and count + len(labels) > self.length:
                images, labels = images[: self.length - count], labels[: self.length - count]
            if self.check is not None:
                self.check(labels, count)
            if self.image_shape is None and self.prep is not None:
                self.image_shape = self.prep.image_shape(images.shape[1:])
            count += len(labels)
            if len(labels):
                yield images, labels.astype(np.int32)
            if self.length is not None and count >= self.length:
                return
        if self.length is not None and count < self.length:
            raise ValueError(f"stream ended after {count} examples, expected {self.length}")

    def prepare(self, images, augment=None, i=0):
        return _prepare(images, self.prep, self.image_shape, augment, i)

    def take(self, n):
        """The first n examples (stream order) as one prepared Batch."""
        xs, ys, count = [], [], 0
        for images, labels in self.chunks(None):
            xs.append(images[: n - count])
            ys.append(labels[: n - count])
            count += len(ys[-1])
            if count >= n:
                break
        return Batch(self.prepare(np.concatenate(xs)), np.concatenate(ys))

    @property
    def x(self):
        return self.take(len(self)).x

    @property
    def y(self):
        return np.concatenate([labels for _, labels in self.chunks(None)])

    def subset(self, n):
        if not n:
            return self
        return StreamDataset(self.source, n if self.length is None else min(n, self.length), self.prep,
                             self.image_shape, self.buffer_size, self.check)


def batches(ds, batch_size, rng=None, drop_last=True, start=0, augment=None, with_index=False):
    """Yield model-ready Batch(x, y) numpy batches, each prepared on its own (raw uint8 ->
    padded -> augmented -> normalised -> reshaped). Shuffled with ``rng`` (np.random.Generator)
    if given: a permutation of the whole split for a `Dataset`, a bounded shuffle buffer for a
    `StreamDataset`. ``start`` skips the first batches (resume inside an epoch; same order).
    ``augment`` (`Augmentation`) augments batch i (counted from 0, skipped ones too); None:
    no augmentation. ``with_index``: yield (Batch, indices into the split) (a `Dataset` only)."""
    if isinstance(ds, StreamDataset):
        if with_index:
            raise ValueError("a streamed dataset has no stable example indices (with_index=True needs a Dataset)")
        yield from _stream_batches(ds, batch_size, rng, drop_last, start, augment)
        return
    n = len(ds)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(start * batch_size, stop, batch_size):
        idx = order[i : i + batch_size]
        b = ds.batch(idx, augment, i // batch_size)
        yield (b, idx) if with_index else b


def _stream_batches(ds, bs, rng, drop_last, start, augment):
    def out(i, images, labels):
        return Batch(ds.prepare(images, augment, i), labels)

    if rng is None:  # stream order, rebatched
        xs, ys, count, i = [], [], 0, 0
        for images, labels in ds.chunks(None):
            pos = 0
            while pos < len(labels):
                k = min(bs - count, len(labels) - pos)
                xs.append(images[pos : pos + k])
                ys.append(labels[pos : pos + k])
                count, pos = count + k, pos + k
                if count == bs:
                    if i >= start:
                        yield out(i, np.concatenate(xs), np.concatenate(ys))
                    xs, ys, count, i = [], [], 0, i + 1
        if count and not drop_last and i >= start:
            yield out(i, np.concatenate(xs), np.concatenate(ys))
        return

    seed = int(rng.integers(2**31 - 1))  # the source's order for this pass
    chunks = ds.chunks(seed)
    cap = max(ds.buffer_size, bs)
    buf_x = buf_y = None
    n, i = 0, 0
    cur, pos, exhausted = None, 0, False
    while True:
        while n < cap and not exhausted:  # refill the buffer in stream order
            if cur is None or pos == len(cur[1]):
                cur, pos = next(chunks, None), 0
                if cur is None:
                    exhausted = True
                    break
                if buf_x is None:
                    buf_x = np.empty((cap,) + cur[0].shape[1:], cur[0].dtype)
                    buf_y = np.empty((cap,), np.int32)
            k = min(cap - n, len(cur[1]) - pos)
            buf_x[n : n + k] = cur[0][pos : pos + k]
            buf_y[n : n + k] = cur[1][pos : pos + k]
            n, pos = n + k, pos + k
        if n == 0 or (n < bs and drop_last):
            return
        k = min(bs, n)
        idx = rng.choice(n, k, replace=False)
        if i >= start:
            yield out(i, buf_x[idx], buf_y[idx])
        # remove the drawn examples: move the undrawn ones of the last k slots into the holes
        holes = idx[idx < n - k]
        tail = np.setdiff1d(np.arange(n - k, n), idx, assume_unique=True)
        buf_x[holes] = buf_x[tail]
        buf_y[holes] = buf_y[tail]
        n, i = n - k, i + 1


def prefetch(iterable, size=2, transform=None):
    """Yield the items of ``iterable`` (with ``transform`` applied, e.g. jax.device_put or
    holoeb.parallel.shard_batch), produced by a background thread up to ``size`` items ahead
    (a bounded queue), so the next batch is prepared while the current step runs. Same order
    as ``iterable``; an exception raised while producing an item is raised here, at that
    item's place. Closing the generator (the consumer stops or raises) stops the thread and
    waits for it, so nothing touches the iterable's state (e.g. its rng) afterwards."""
    if size < 1:
        raise ValueError("prefetch size must be at least 1")
    q = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def work():
        try:
            for item in iterable:
                if stop.is_set() or not put((True, transform(item) if transform is not None else item)):
                    return
            put((False, None))
        except BaseException as e:  # handed to the consumer
            put((False, e))

    thread = threading.Thread(target=work, name="holoeb-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        if thread is not threading.current_thread():  # (a collected generator may be closed on any thread)
            thread.join()
