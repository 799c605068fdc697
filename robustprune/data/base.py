"""The in-memory dataset type every loader returns, the loader registry and seeded stratified splits.

A dataset lives in memory as one tensor per split: ``uint8`` images of shape (N, C, H, W) or ``float32``
tabular rows of shape (N, D), with ``int64`` labels. Normalisation and augmentation happen later, batched on
the device, using the per-channel ``mean`` / ``std`` stored here.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustprune.seeding import stream

if TYPE_CHECKING:  # annotations only: torch is imported where tensors are made (the CLI's help needs none)
    import torch

__all__ = [
    "ArrayDataset",
    "make_dataset",
    "channel_stats",
    "stratified_indices",
    "stratified_split",
    "default_data_root",
    "check_data_dir",
    "carve_test_split",
]


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A train/test dataset held in memory as tensors.

    Attributes
    ----------
    name : str
        Registry name of the dataset ("digits", "fashion-mnist", ...).
    x_train, x_test : torch.Tensor
        ``uint8`` images (N, C, H, W) with values 0..255, or ``float32`` rows (N, D) (tabular data, or
        images a user supplied as floats).
    y_train, y_test : torch.Tensor
        ``int64`` class indices, shape (N,).
    num_classes : int
        K; every label is in ``[0, K)``.
    class_names : tuple of str
        One name per class.
    mean, std : tuple of float
        Per channel (images, on the 0..1 scale for ``uint8``) or per feature (tabular), computed on the
        training split; used for normalisation.
    label_sets : dict of str to torch.Tensor
        Alternative training labels aligned with ``y_train``, e.g. the CIFAR-N human annotations
        ("worst", "aggregate", "random1", ...). Empty for most datasets.
    info : dict
        Free-form provenance: source files, how the test split was made, subset sizes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_sets: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import torch

        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise TypeError(f"x_{split} and y_{split} must be torch tensors")
            if x.dtype not in (torch.uint8, torch.float32) or x.ndim not in (2, 4):
                raise ValueError(
                    f"x_{split} must be uint8 (N, C, H, W) images or float32 (N, D) rows, "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"y_{split} must be int64 of shape ({x.shape[0]},) to match x_{split}, "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"y_{split} must lie in [0, {self.num_classes}), found {int(y.min())}..{int(y.max())}")
        if self.x_train.shape[1:] != self.x_test.shape[1:] or self.x_train.dtype != self.x_test.dtype:
            raise ValueError(
                f"x_train {tuple(self.x_train.shape[1:])} {self.x_train.dtype} and x_test "
                f"{tuple(self.x_test.shape[1:])} {self.x_test.dtype} must share shape and dtype per example"
            )
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")
        c = self.x_train.shape[1]
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"mean and std need {c} values (one per channel or feature)")
        for key, lab in self.label_sets.items():
            if not isinstance(lab, torch.Tensor) or lab.dtype != torch.int64 or lab.shape != self.y_train.shape:
                raise ValueError(f"label_sets[{key!r}] must be an int64 tensor shaped like y_train")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example: (C, H, W) for images, (D,) for tabular rows."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def is_image(self) -> bool:
        """True for (N, C, H, W) data."""
        return self.x_train.ndim == 4

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def select_train(self, indices: Any, *, note: str | None = None) -> ArrayDataset:
        """A copy whose training split (and ``label_sets``) keeps only ``indices``; stats are recomputed."""
        import torch

        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        info = dict(self.info)
        if note:
            info.setdefault("notes", []).append(note)
        return make_dataset(
            self.name,
            self.x_train[idx],
            self.y_train[idx],
            self.x_test,
            self.y_test,
            num_classes=self.num_classes,
            class_names=self.class_names,
            label_sets={k: v[idx] for k, v in self.label_sets.items()},
            info=info,
        )

    def select_test(self, indices: Any, *, note: str | None = None) -> ArrayDataset:
        """A copy whose test split keeps only ``indices``."""
        import torch

        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        info = dict(self.info)
        if note:
            info.setdefault("notes", []).append(note)
        return ArrayDataset(
            self.name, self.x_train, self.y_train, self.x_test[idx], self.y_test[idx], self.num_classes,
            self.class_names, self.mean, self.std, dict(self.label_sets), info,
        )  # fmt: skip

    def describe(self) -> str:
        """One line: name, split sizes, example shape and dtype, classes."""
        return (
            f"{self.name}: train {self.num_train}, test {self.num_test}, example {self.input_shape} "
            f"{str(self.x_train.dtype).removeprefix('torch.')}, {self.num_classes} classes"
        )


def channel_stats(x: torch.Tensor, *, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (images) or per-feature (rows) mean and standard deviation, in float64, chunked.

    ``uint8`` data is measured on the 0..1 scale (divided by 255). A zero deviation is reported as 1 so that
    normalising never divides by zero.
    """
    import torch

    c = int(x.shape[1])
    n = int(x.shape[0])
    if n == 0:
        return (0.0,) * c, (1.0,) * c
    if x.dtype == torch.uint8:  # exact and fast: a 256-bin histogram per channel
        levels = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for ch in range(c):
            counts = torch.bincount(x[:, ch].reshape(-1), minlength=256).to(torch.float64)
            m = float((counts * levels).sum() / counts.sum())
            v = float((counts * (levels - m) ** 2).sum() / counts.sum())
            means.append(m)
            stds.append(math.sqrt(v) if v > 0 else 1.0)
        return tuple(means), tuple(stds)
    dims = (0, 2, 3) if x.ndim == 4 else (0,)
    per = n * (int(np.prod(x.shape[2:])) if x.ndim == 4 else 1)
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    for i in range(0, n, chunk):
        b = x[i : i + chunk].to(torch.float64) / scale
        s += b.sum(dim=dims)
        s2 += (b * b).sum(dim=dims)
    mean = s / per
    var = (s2 / per - mean * mean).clamp_min(0)
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def make_dataset(
    name: str,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    num_classes: int | None = None,
    class_names: Any = None,
    label_sets: Mapping[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> ArrayDataset:
    """Build an :class:`ArrayDataset` from numpy arrays or tensors, computing ``mean``/``std`` on train.

    Images must already be (N, C, H, W); ``uint8`` is kept, anything else becomes ``float32``.
    """
    import torch

    def _t(a: Any) -> torch.Tensor:
        if isinstance(a, torch.Tensor):
            return a
        arr = np.ascontiguousarray(a)
        return torch.from_numpy(arr if arr.flags.writeable else arr.copy())

    def _x(a: Any) -> torch.Tensor:
        t = _t(a)
        return t if t.dtype == torch.uint8 else t.to(torch.float32)

    def _y(a: Any) -> torch.Tensor:
        return _t(a).to(torch.int64)

    xt, yt, xs, ys = _x(x_train), _y(y_train), _x(x_test), _y(y_test)
    if xt.ndim not in (2, 4):
        raise ValueError(
            f"x_train must be (N, C, H, W) images or (N, D) rows, got shape {tuple(xt.shape)}; "
            "add a channel axis to (N, H, W) images"
        )
    if num_classes is None:
        tops = [int(t.max()) for t in (yt, ys) if t.numel()]
        num_classes = max(tops) + 1 if tops else 0
    names = tuple(str(c) for c in class_names) if class_names is not None else tuple(map(str, range(num_classes)))
    mean, std = channel_stats(xt)
    sets = {k: _y(v) for k, v in (label_sets or {}).items()}
    return ArrayDataset(name, xt, yt, xs, ys, int(num_classes), names, mean, std, sets, dict(info or {}))


def stratified_indices(labels: Any, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded, stratified sample of exactly ``n`` of the ``labels``.

    Each class gets a share proportional to its size (largest remainder; ties go to the lower class
    index), so class proportions are kept as closely as integer counts allow. Fully vectorised.
    """
    y = np.asarray(labels, dtype=np.int64)
    total = y.shape[0]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= total:
        raise ValueError(f"subset size must be a whole number in [1, {total}], got {n!r}")
    n = int(n)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = n * counts / total
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    if short:
        order = np.lexsort((np.arange(classes.size), -(exact - quota)))
        quota[order[:short]] += 1
    key = stream(seed, "subset").random(total)
    order = np.lexsort((key, inverse))  # grouped by class, random within class
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.empty(total, dtype=np.int64)
    rank[order] = np.arange(total) - np.repeat(start, counts)
    return np.flatnonzero(rank < quota[inverse])


def stratified_split(labels: Any, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified (train, test) index split; ``round(test_fraction * N)`` examples go to test."""
    y = np.asarray(labels)
    if not isinstance(test_fraction, (int, float)) or not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = int(round(float(test_fraction) * y.shape[0]))
    if not 1 <= n_test < y.shape[0]:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split of {y.shape[0]} examples")
    test = stratified_indices(y, n_test, seed)
    mask = np.ones(y.shape[0], dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def carve_test_split(
    x: Any, y: np.ndarray, test_fraction: float, split_seed: int, what: str, info: dict[str, Any]
) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """A seeded stratified test set carved from ``(x, y)`` for data shipped without one.

    Records the split in ``info["test_split"]`` and warns that ``what`` had no test set. Returns
    ``x_train, x_test, y_train, y_test``.
    """
    tr, te = stratified_split(y, test_fraction, split_seed)
    info["test_split"] = f"carved: stratified {test_fraction:.4g} of {what} (seed {split_seed})"
    warnings.warn(
        f"{what} has no test set; a seeded stratified {test_fraction:.0%} of it is the test set", stacklevel=4
    )
    return x[tr], x[te], y[tr], y[te]


def default_data_root() -> Path | None:
    """The folder named by the environment variable ``ROBUSTPRUNE_DATA``, if set."""
    env = os.environ.get("ROBUSTPRUNE_DATA")
    return Path(env).expanduser() if env else None


def check_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """Return ``data_dir`` as a Path, raising a one-line error when it is given but is not a folder."""
    if data_dir is None:
        return None
    p = Path(data_dir).expanduser()
    if not p.exists():
        raise ValueError(f"data_dir {str(p)!r} does not exist; create it or point data_dir at the dataset folder")
    if not p.is_dir():
        raise ValueError(f"data_dir {str(p)!r} is a file, not a folder; pass the folder that holds the dataset")
    return p
