"""Datasets: Fashion-MNIST offline from IDX files; others through TFDS (optional extra)."""
from holoeb.data.batch import Batch
from holoeb.data.fashion_mnist import DEFAULT_FMNIST_DIR, load_fashion_mnist
from holoeb.data.pipeline import Dataset, batches, prepare_images

__all__ = ["Batch", "DEFAULT_FMNIST_DIR", "load_fashion_mnist", "Dataset", "batches", "prepare_images"]
