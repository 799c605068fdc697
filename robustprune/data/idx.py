"""IDX files (MNIST, Fashion-MNIST): a parser and the two loaders.

IDX layout: two zero bytes, a type byte (0x08 = uint8, ...), a byte giving the number of dimensions, one
big-endian uint32 per dimension, then the raw data. Image files have magic number 2051 (uint8, 3 dims) and
label files 2049 (uint8, 1 dim). Files may be gzipped (detected from their first bytes, not the name).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from robustprune.data.base import (
    ArrayDataset,
    check_data_dir,
    default_data_root,
    make_dataset,
)
from robustprune.data.download import download_file
from robustprune.data.registry import register_dataset

__all__ = ["read_idx", "IDX_FILES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_SYSTEM_DIR"]

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

#: Where the Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The four standard files of an MNIST-style dataset (a ".gz" suffix is optional).
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"

#: Download sources: (base URL, {file name: md5}); the published checksums of the original gzipped files.
RESOURCES = {
    "fashion-mnist": (
        _FASHION_URL,
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "mnist": (
        _MNIST_URL,
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
}


def read_idx(path: str | os.PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a native-endian numpy array.

    Raises a one-line ``ValueError`` for a corrupt gzip stream, a wrong magic number, or a file whose data
    is shorter or longer than its header says.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ValueError(f"IDX file {str(path)!r} does not exist") from None
        raise ValueError(f"IDX file {str(path)!r} is not a valid gzip stream ({exc}); re-download it") from None
    if len(raw) < 4:
        raise ValueError(f"IDX file {str(path)!r} is truncated: {len(raw)} bytes, no header")
    magic = struct.unpack(">I", raw[:4])[0]
    zero, code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"{str(path)!r} is not an IDX file (magic number {magic}, expected e.g. 2051 or 2049)")
    if expect_magic is not None and magic != expect_magic:
        what = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(expect_magic, "data")
        raise ValueError(
            f"IDX file {str(path)!r} has magic number {magic}, expected {expect_magic} ({what}); "
            "check the file names are not swapped"
        )
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"IDX file {str(path)!r} is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_IDX_TYPES[code])
    want = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(raw) - head
    if have != want:
        state = "truncated" if have < want else "longer than its header says"
        raise ValueError(
            f"IDX file {str(path)!r} is {state}: header {tuple(dims)} needs {want} data bytes, found {have}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # a writable, native-endian copy


def _find(folder: Path, stem: str) -> Path | None:
    alt = stem.replace("-idx", ".idx")  # some mirrors write train-images.idx3-ubyte
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(name: str, data_dir: Path | None, extra: tuple[Path, ...]) -> tuple[Path | None, list[Path]]:
    """The first folder holding all four IDX files, and the list of folders searched."""
    tv = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    roots = [data_dir] if data_dir is not None else [r for r in (default_data_root(),) if r is not None]
    cands: list[Path] = []
    for r in roots:
        cands += [r, r / name, r / tv / "raw", r / tv]
    if data_dir is None:
        cands += list(extra)
    for c in cands:
        if all(_find(c, s) for s in IDX_FILES.values()):
            return c, cands
    return None, cands


def _load_idx_dataset(
    name: str, data_dir: str | os.PathLike | None, download: bool, class_names: tuple[str, ...]
) -> ArrayDataset:
    root = check_data_dir(data_dir)
    extra = (FASHION_MNIST_SYSTEM_DIR,) if name == "fashion-mnist" else ()
    folder, searched = _locate(name, root, extra)
    if folder is None and download:
        target = root if root is not None else default_data_root()
        if target is None:
            raise ValueError(f"download=True needs data_dir (or ROBUSTPRUNE_DATA) to say where {name} goes")
        base, files = RESOURCES[name]
        for fname, md5 in files.items():
            download_file(base + fname, target / name / fname, md5=md5)
        folder = target / name
    if folder is None:
        where = ", ".join(str(s) for s in searched) or "nowhere (no data_dir given and ROBUSTPRUNE_DATA unset)"
        hint = "install the Debian package dataset-fashion-mnist, " if name == "fashion-mnist" else ""
        raise ValueError(
            f"{name} files not found; expected {', '.join(s + '.gz' for s in IDX_FILES.values())} "
            f"(gzipped or not) in one of: {where}; {hint}pass data_dir=, or download=True"
        )
    paths = {k: _find(folder, s) for k, s in IDX_FILES.items()}
    arrs = {
        k: read_idx(p, expect_magic=IMAGES_MAGIC if k.endswith("images") else LABELS_MAGIC) for k, p in paths.items()
    }
    for split in ("train", "test"):
        x, y = arrs[f"{split}_images"], arrs[f"{split}_labels"]
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{name} {split} files disagree: images {x.shape}, labels {y.shape}; expected (N, H, W), (N,)"
            )
        if y.size and int(y.max()) >= len(class_names):
            raise ValueError(f"{name} {split} labels reach {int(y.max())}; expected < {len(class_names)}")
    return make_dataset(
        name,
        arrs["train_images"].astype(np.uint8)[:, None],
        arrs["train_labels"],
        arrs["test_images"].astype(np.uint8)[:, None],
        arrs["test_labels"],
        num_classes=len(class_names),
        class_names=class_names,
        info={"source": str(folder)},
    )


@register_dataset(
    "fashion-mnist",
    description="Fashion-MNIST, 60k/10k 1x28x28 (IDX; found in Debian's dataset-fashion-mnist package)",
    aliases=("fmnist", "fashionmnist"),
)
def _load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> ArrayDataset:
    """Fashion-MNIST from IDX files.

    Searched: ``data_dir`` itself, ``data_dir/fashion-mnist``, ``data_dir/FashionMNIST/raw``; without a
    ``data_dir``, the same under ``$ROBUSTPRUNE_DATA`` and then ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``). ``download=True`` fetches the original files (MD5-checked) into
    ``data_dir/fashion-mnist`` when none are found.
    """
    return _load_idx_dataset("fashion-mnist", data_dir, download, FASHION_MNIST_CLASSES)


@register_dataset("mnist", description="MNIST digits, 60k/10k 1x28x28 (IDX files, bring your own)")
def _load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> ArrayDataset:
    """MNIST from IDX files, searched like Fashion-MNIST (``data_dir``, ``data_dir/mnist``,
    ``data_dir/MNIST/raw``); ``download=True`` fetches them (MD5-checked) into ``data_dir/mnist``."""
    return _load_idx_dataset("mnist", data_dir, download, tuple(str(i) for i in range(10)))
