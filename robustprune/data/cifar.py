"""CIFAR-10 / CIFAR-100 in the standard python-pickle layout, and the CIFAR-N human label files.

Layouts read (the archives ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpack to these):

* ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5``, ``test_batch`` (``batches.meta`` optional)
* ``cifar-100-python/train``, ``test`` (``meta`` optional), labels from ``fine_labels``

Each batch is a pickled dict with ``b"data"`` (N, 3072) uint8 rows (1024 red, 1024 green, 1024 blue values)
and ``b"labels"`` / ``b"fine_labels"``. Pickle can run code: load only files you trust.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from robustprune.data.base import (
    ArrayDataset,
    check_data_dir,
    default_data_root,
    make_dataset,
)
from robustprune.data.download import download_file, extract_tar
from robustprune.data.registry import register_dataset

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_SUPERCLASSES",
    "CIFAR100_COARSE",
    "CIFAR10N_LABELS",
    "CIFAR100N_LABELS",
    "read_cifar_n",
    "load_cifar_n_labels",
    "convert_cifar_n",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

#: The 100 fine classes in label order (alphabetical, as in the dataset's ``meta`` file).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
    "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
    "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

#: The 20 superclasses (coarse label order) with their five fine classes, from the dataset's definition.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def _coarse_table() -> np.ndarray:
    fine_index = {c: i for i, c in enumerate(CIFAR100_CLASSES)}
    table = np.full(100, -1, dtype=np.int64)
    for coarse, members in enumerate(CIFAR100_SUPERCLASSES.values()):
        table[[fine_index[m] for m in members]] = coarse
    assert (table >= 0).all()  # internal consistency of the two tables above
    return table


#: ``CIFAR100_COARSE[fine]`` is the coarse (superclass) label of a fine label, shape (100,).
CIFAR100_COARSE = _coarse_table()
CIFAR100_COARSE.setflags(write=False)

#: CIFAR-10N: our names -> keys in ``CIFAR-10_human.pt``.
CIFAR10N_LABELS = {
    "clean": "clean_label",
    "aggregate": "aggre_label",
    "worst": "worse_label",
    "random1": "random_label1",
    "random2": "random_label2",
    "random3": "random_label3",
}
#: CIFAR-100N: our names -> keys in ``CIFAR-100_human.pt``.
CIFAR100N_LABELS = {"clean": "clean_label", "noisy": "noisy_label"}
#: Other spellings accepted for ``which`` (the Prune4ReL release's --noise-type values among them).
_CIFAR_N_ALIASES = {
    "realw": "worst", "worse": "worst", "reala": "aggregate", "aggre": "aggregate",
    "real1": "random1", "real2": "random2", "real3": "random3", "noisy100": "noisy",
}  # fmt: skip

_RESOURCES = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}
_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels"),
}


def _unpickle(path: Path) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as exc:  # corrupt, truncated or not a pickle at all
        raise ValueError(f"could not read CIFAR batch {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR batch {str(path)!r} holds a {type(obj).__name__}, expected a dict")
    return {(k.encode() if isinstance(k, str) else k): v for k, v in obj.items()}


def _read_batches(paths: list[Path], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p in paths:
        d = _unpickle(p)
        if b"data" not in d or label_key not in d:
            raise ValueError(f"CIFAR batch {str(p)!r} lacks the keys 'data' and {label_key.decode()!r}; wrong file")
        x = np.asarray(d[b"data"], dtype=np.uint8)
        y = np.asarray(d[label_key], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],):
            raise ValueError(
                f"CIFAR batch {str(p)!r} has data {x.shape} and labels {y.shape}; expected (N, 3072) and (N,)"
            )
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _find_folder(name: str, root: Path | None) -> tuple[Path | None, list[Path]]:
    sub, train, test, _ = _LAYOUT[name]
    roots = [root] if root is not None else [r for r in (default_data_root(),) if r is not None]
    cands = [c for r in roots for c in (r / sub, r, r / name / sub)]
    for c in cands:
        if all((c / f).is_file() for f in train + test):
            return c, cands
    return None, cands


def _load_cifar(
    name: str, data_dir: str | os.PathLike | None, download: bool, cifar_n: str | os.PathLike | None
) -> ArrayDataset:
    root = check_data_dir(data_dir)
    sub, train, test, label_key = _LAYOUT[name]
    folder, searched = _find_folder(name, root)
    if folder is None and download:
        target = root if root is not None else default_data_root()
        if target is None:
            raise ValueError(f"download=True needs data_dir (or ROBUSTPRUNE_DATA) to say where {name} goes")
        url, md5 = _RESOURCES[name]
        archive = download_file(url, target / url.rsplit("/", 1)[1], md5=md5)
        extract_tar(archive, target)
        folder = target / sub
    if folder is None:
        where = ", ".join(str(s) for s in searched) or "nowhere (no data_dir given and ROBUSTPRUNE_DATA unset)"
        raise ValueError(
            f"{name} files not found; expected {sub}/{{{','.join(train + test)}}} (python-pickle batches) "
            f"under one of: {where}; pass data_dir= or download=True"
        )
    x_train, y_train = _read_batches([folder / f for f in train], label_key)
    x_test, y_test = _read_batches([folder / f for f in test], label_key)
    classes = CIFAR10_CLASSES if name == "cifar10" else CIFAR100_CLASSES
    k = len(classes)
    for split, y in (("train", y_train), ("test", y_test)):
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"{name} {split} labels must lie in [0, {k}), found {y.min()}..{y.max()}")
    label_sets: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {"source": str(folder)}
    if cifar_n is not None:
        raw = read_cifar_n(cifar_n)
        names = CIFAR100N_LABELS if name == "cifar100" else CIFAR10N_LABELS
        for ours, key in names.items():
            if key in raw:
                label_sets[ours] = _checked(raw[key], key, cifar_n, y_train.shape[0], k)
        if set(label_sets) <= {"clean"}:
            want = ", ".join(v for v in names.values() if v != "clean_label")
            raise ValueError(f"CIFAR-N file {str(cifar_n)!r} has none of the {name} noisy keys ({want})")
        if "clean" in label_sets:
            bad = int((label_sets["clean"] != y_train).sum())
            if bad:
                raise ValueError(
                    f"CIFAR-N clean_label disagrees with the {name} training labels at {bad} examples; "
                    "the label file belongs to another dataset or order"
                )
        info["cifar_n"] = str(cifar_n)
    return make_dataset(
        name, x_train, y_train, x_test, y_test, num_classes=k, class_names=classes,
        label_sets=label_sets, info=info,
    )  # fmt: skip


@register_dataset(
    "cifar10",
    description="CIFAR-10, 50k/10k 3x32x32 (python-pickle batches, bring your own); cifar_n= adds CIFAR-10N",
    aliases=("cifar-10", "cifar10n", "cifar-10n"),
)
def _load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    cifar_n: str | os.PathLike | None = None,
    download: bool = False,
) -> ArrayDataset:
    """CIFAR-10 from ``data_dir/cifar-10-batches-py`` (or ``data_dir`` itself).

    ``cifar_n`` names a ``CIFAR-10_human.pt`` (or converted ``.npz``); its label sets land in
    ``label_sets`` ("clean", "aggregate", "worst", "random1", "random2", "random3"), checked against the
    training labels. ``download=True`` fetches and MD5-checks the official archive when no files are found.
    """
    return _load_cifar("cifar10", data_dir, download, cifar_n)


@register_dataset(
    "cifar100",
    description="CIFAR-100, 50k/10k 3x32x32, fine labels (pickle, bring your own); cifar_n= adds CIFAR-100N",
    aliases=("cifar-100", "cifar100n", "cifar-100n"),
)
def _load_cifar100(
    data_dir: str | os.PathLike | None = None,
    *,
    cifar_n: str | os.PathLike | None = None,
    download: bool = False,
) -> ArrayDataset:
    """CIFAR-100 (fine labels) from ``data_dir/cifar-100-python``; ``cifar_n`` adds the CIFAR-100N
    ``noisy`` labels to ``label_sets``; ``download=True`` as for CIFAR-10."""
    return _load_cifar("cifar100", data_dir, download, cifar_n)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-N


def read_cifar_n(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All label arrays of a CIFAR-N file, keyed as in the file (``clean_label``, ``worse_label``, ...).

    ``.pt`` files (the official release) are pickles of numpy arrays and are read with
    ``torch.load(weights_only=False)``, which can run code: **only load files you trust**, or convert them
    once with :func:`convert_cifar_n` and use the ``.npz``, which is read without pickle.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"CIFAR-N label file {str(p)!r} does not exist; pass the path to CIFAR-10_human.pt")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                obj: Any = {k: z[k] for k in z.files}
        else:
            import torch

            obj = torch.load(io.BytesIO(p.read_bytes()), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"could not read CIFAR-N label file {str(p)!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"CIFAR-N label file {str(p)!r} holds a {type(obj).__name__}, expected a dict of labels")
    out: dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        arr = np.asarray(v)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            out[str(k)] = arr.astype(np.int64)
    return out


def _checked(arr: np.ndarray, key: str, path: Any, n: int | None, k: int | None) -> np.ndarray:
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"CIFAR-N {key} in {str(path)!r} has {arr.shape[0]} labels but the training set has {n}")
    if arr.size and (arr.min() < 0 or (k is not None and arr.max() >= k)):
        raise ValueError(f"CIFAR-N {key} in {str(path)!r} has labels outside [0, {k})")
    return arr


def load_cifar_n_labels(path: str | os.PathLike, which: str, *, num_train: int | None = 50000) -> np.ndarray:
    """One set of CIFAR-N labels as int64 (N,), in the CIFAR training order.

    Parameters
    ----------
    path : path
        ``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt`` or a ``.npz`` from :func:`convert_cifar_n`
        (see :func:`read_cifar_n` on trusting ``.pt`` files).
    which : str
        CIFAR-10N: "worst", "aggregate", "random1", "random2", "random3" or "clean"; CIFAR-100N: "noisy"
        or "clean". The release's names (realW, realA, real1..3) and the raw keys are accepted too.
    num_train : int or None
        Expected number of labels (the training-set size, 50000); None skips the check.
    """
    raw = read_cifar_n(path)
    names = CIFAR100N_LABELS if "noisy_label" in raw else CIFAR10N_LABELS
    w = str(which).strip()
    key = w if w in raw else names.get(_CIFAR_N_ALIASES.get(w.lower(), w.lower()))
    if key is None or key not in raw:
        avail = [n for n, kk in names.items() if kk in raw]
        raise ValueError(f"unknown CIFAR-N label set {which!r} for {str(path)!r}; choose one of {', '.join(avail)}")
    k = 100 if names is CIFAR100N_LABELS else 10
    return _checked(raw[key], key, path, num_train, k)


def convert_cifar_n(pt_path: str | os.PathLike, npz_path: str | os.PathLike) -> Path:
    """Convert a CIFAR-N ``.pt`` label file to an ``.npz`` (int64 arrays, same keys) that loads without
    pickle. Run it once on a file you trust; returns the written path."""
    from robustprune._io import atomic_write_bytes

    raw = read_cifar_n(pt_path)
    if not raw:
        raise ValueError(f"CIFAR-N label file {str(pt_path)!r} holds no integer label arrays")
    buf = io.BytesIO()
    np.savez(buf, **raw)
    out = Path(npz_path)
    atomic_write_bytes(out, buf.getvalue())
    return out
