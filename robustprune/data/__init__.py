"""Datasets as in-memory tensors.

::

    from robustprune.data import load_dataset, list_datasets
    ds = load_dataset("fashion-mnist", subset=5000)       # Debian's dataset-fashion-mnist, or data_dir=
    ds.x_train.shape, ds.y_train.dtype, ds.mean, ds.std   # (5000, 1, 28, 28) uint8, int64, per channel

Every loader returns an :class:`ArrayDataset`. Nothing downloads unless ``download=True`` is passed, and then
every file is checksum-verified. CIFAR-N human labels come from a file the user gives (``cifar_n=``).
"""

from robustprune.data import arrays as _arrays  # noqa: F401  (registers digits, arrays)
from robustprune.data import folder as _folder  # noqa: F401  (registers imagefolder)
from robustprune.data.base import ArrayDataset, channel_stats, make_dataset, stratified_indices, stratified_split
from robustprune.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10N_LABELS,
    CIFAR100_CLASSES,
    CIFAR100_COARSE,
    CIFAR100_SUPERCLASSES,
    CIFAR100N_LABELS,
    convert_cifar_n,
    load_cifar_n_labels,
    read_cifar_n,
)
from robustprune.data.download import download_file
from robustprune.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_SYSTEM_DIR, read_idx
from robustprune.data.registry import (
    DatasetInfo,
    dataset_names_help,
    get_dataset_info,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "ArrayDataset",
    "DatasetInfo",
    "load_dataset",
    "list_datasets",
    "dataset_names_help",
    "get_dataset_info",
    "register_dataset",
    "make_dataset",
    "channel_stats",
    "stratified_indices",
    "stratified_split",
    "read_idx",
    "download_file",
    "read_cifar_n",
    "load_cifar_n_labels",
    "convert_cifar_n",
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_SUPERCLASSES",
    "CIFAR100_COARSE",
    "CIFAR10N_LABELS",
    "CIFAR100N_LABELS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SYSTEM_DIR",
]
