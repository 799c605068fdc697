"""The dataset registry: loaders by name with their options and aliases, and :func:`load_dataset`."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robustprune._registry import Registry
from robustprune.data.base import ArrayDataset, stratified_indices

__all__ = [
    "DatasetInfo", "register_dataset", "list_datasets", "dataset_names_help", "get_dataset_info", "load_dataset",
]  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of one registered dataset loader.

    ``loader(data_dir, **options)`` returns an :class:`ArrayDataset`; ``options`` lists its keyword
    options and defaults (what ``load_dataset`` accepts besides the common ``subset`` options).
    ``rows(data_dir, **options)``, where given, says without loading the data whether the examples are
    tabular rows (N, D) rather than images, which decides a run's default model before any array is read.
    """

    name: str
    loader: Callable[..., ArrayDataset]
    description: str
    aliases: tuple[str, ...] = ()
    rows: Callable[..., bool] | None = None

    def is_tabular(self, data_dir: str | os.PathLike | None, options: dict[str, Any]) -> bool:
        """True when the data are rows (N, D); False for images or when it cannot be told cheaply."""
        if self.rows is None:
            return False
        try:
            return bool(self.rows(data_dir, **options))
        except (OSError, ValueError, KeyError, TypeError):
            return False  # the loader itself reports what is wrong with the files

    @property
    def options(self) -> dict[str, Any]:
        sig = inspect.signature(self.loader)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if k != "data_dir" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }


_REGISTRY: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(
    name: str, *, description: str, aliases: tuple[str, ...] = (), rows: Callable[..., bool] | None = None
) -> Callable[[Callable[..., ArrayDataset]], Callable[..., ArrayDataset]]:
    """Decorator registering ``loader(data_dir=None, **options) -> ArrayDataset`` under ``name``."""

    def deco(fn: Callable[..., ArrayDataset]) -> Callable[..., ArrayDataset]:
        key = name.strip().lower().replace("_", "-")  # dataset names are written with hyphens
        _REGISTRY.add(key, DatasetInfo(key, fn, description, tuple(aliases), rows), tuple(aliases))
        return fn

    return deco


def list_datasets() -> list[str]:
    """Names of every registered dataset, sorted."""
    return _REGISTRY.names()


def dataset_names_help() -> str:
    """Every dataset with its accepted aliases, for ``--help`` texts: ``"digits, fashion-mnist (or fmnist,
    fashionmnist), ..."``."""
    parts = []
    for name in list_datasets():
        aliases = _REGISTRY.aliases(name)
        parts.append(f"{name} (or {', '.join(aliases)})" if aliases else name)
    return ", ".join(parts)


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` for ``name`` (aliases such as "fmnist" and "cifar-10" are accepted)."""
    return _REGISTRY.get(name)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    subset: int | None = None,
    test_subset: int | None = None,
    subset_seed: int = 0,
    **options: Any,
) -> ArrayDataset:
    """Load a registered dataset into memory.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100",
        "imagefolder", "arrays").
    data_dir : path, optional
        Where the files are. Each loader documents the layouts it searches; a given ``data_dir`` that does
        not exist is an error.
    subset, test_subset : int, optional
        Keep a fixed, seeded, stratified subset of this many training (test) examples, for CPU-sized runs.
    subset_seed : int
        Seed of those subsets.
    **options
        Loader options, see ``get_dataset_info(name).options`` (e.g. ``download=True``, ``cifar_n=PATH``,
        ``image_size=32``).
    """
    info = get_dataset_info(name)
    allowed = info.options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(["subset", "test_subset", "subset_seed", *allowed]) or "none"
        raise ValueError(f"unknown option {unknown[0]!r} for dataset {info.name!r}; valid options: {valid}")
    ds = info.loader(data_dir, **options)
    if subset is not None and subset != ds.num_train:
        idx = stratified_indices(ds.y_train.numpy(), subset, subset_seed)
        ds = ds.select_train(idx, note=f"stratified training subset of {subset} (seed {subset_seed})")
    if test_subset is not None and test_subset != ds.num_test:
        idx = stratified_indices(ds.y_test.numpy(), test_subset, subset_seed)
        ds = ds.select_test(idx, note=f"stratified test subset of {test_subset} (seed {subset_seed})")
    return ds
