"""``apply_noise``: a noise spec applied to clean labels, with its record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from robustprune._validation import check_labels
from robustprune.noise.models import (
    asym_map,
    instance_noise,
    labels_and_classes,
    load_transition_matrix,
    matrix_noise,
    pair_noise,
    pairs_map,
    symmetric_noise,
    transition_counts,
)
from robustprune.noise.spec import NoiseRecord, NoiseSpec, parse_noise

__all__ = ["apply_noise"]

# ---------------------------------------------------------------------------------------------------------
# the one entry point


def _human(y: np.ndarray, spec: NoiseSpec, human_labels: Any) -> tuple[np.ndarray, str | None]:
    if human_labels is None:
        raise ValueError(
            "human noise needs human_labels= (e.g. the label_sets of load_dataset('cifar10', cifar_n=PATH))"
        )
    which = spec.which
    if isinstance(human_labels, Mapping):
        noisy_sets = [key for key in human_labels if key != "clean"]
        if which is None:
            if len(noisy_sets) != 1:
                raise ValueError(f"name the human label set: human:NAME with NAME one of {', '.join(noisy_sets)}")
            which = noisy_sets[0]
        if which not in human_labels:
            raise ValueError(f"unknown human label set {which!r}; available: {', '.join(noisy_sets)}")
        human_labels = human_labels[which]
    h = check_labels(human_labels)
    if h.shape[0] != y.shape[0]:
        raise ValueError(f"human labels have {h.shape[0]} entries but there are {y.shape[0]} training labels")
    return h, which


def apply_noise(
    labels: Any,
    spec: str | NoiseSpec | None,
    *,
    num_classes: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    features: Any = None,
    human_labels: Any = None,
) -> tuple[Any, NoiseRecord]:
    """Apply a noise spec to clean labels; return ``(noisy_labels, record)``.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Clean labels (numpy or torch; the noisy labels come back as the same kind, int64).
    spec : str or NoiseSpec
        See the module docstring and :func:`parse_noise`.
    num_classes : int, optional
        K; defaults to one more than the largest label (the matrix size for ``matrix:``).
    seed : int
        The only source of randomness.
    dataset : str, optional
        Chooses the ``asym`` map ("cifar10", "cifar100", otherwise cyclic).
    features : array-like, shape (N, ...), optional
        Inputs for ``instance`` noise (e.g. ``dataset.x_train``).
    human_labels : array-like or mapping of name to array, optional
        For ``human`` noise: one label array, or ``ArrayDataset.label_sets`` with ``human:NAME``.
    """
    parsed = parse_noise(spec)
    is_torch = hasattr(labels, "detach") and hasattr(labels, "cpu")
    details: dict[str, Any] = {}
    if parsed.kind == "matrix":
        t = load_transition_matrix(parsed.path, num_classes)
        num_classes = t.shape[0]
        details["matrix_file"] = parsed.path
    y, k = labels_and_classes(labels, num_classes)
    if parsed.kind == "none":
        noisy = y.copy()
    elif parsed.kind == "sym":
        noisy = symmetric_noise(y, parsed.rate, k, seed=seed)
    elif parsed.kind in ("asym", "asym-pairs"):
        m = pairs_map(k) if parsed.kind == "asym-pairs" else asym_map(dataset, k)
        details["map"] = {int(a): int(b) for a, b in enumerate(m) if a != b}
        if parsed.kind == "asym":
            details["map_name"] = {"cifar10": "patrini", "cifar100": "superclass"}.get(
                (dataset or "").lower().replace("-", "").replace("_", "").removesuffix("n"), "cyclic"
            )
        noisy = pair_noise(y, parsed.rate, m, seed=seed)
    elif parsed.kind == "instance":
        if features is None:
            raise ValueError("instance noise needs features= (the training inputs, e.g. dataset.x_train)")
        noisy = instance_noise(y, features, parsed.rate, k, seed=seed)
    elif parsed.kind == "matrix":
        noisy = matrix_noise(y, t, seed=seed)
    elif parsed.kind == "human":
        noisy, which = _human(y, parsed, human_labels)
        k = max(k, int(noisy.max()) + 1)
        details["label_set"] = which
        parsed = NoiseSpec("human", which=which)
    else:  # pragma: no cover - parse_noise only yields the kinds above
        raise ValueError(f"unknown noise kind {parsed.kind!r}")
    flipped = int((noisy != y).sum())
    record = NoiseRecord(
        spec=str(parsed), kind=parsed.kind, rate=parsed.rate,
        seed=None if parsed.kind in ("human", "none") else int(seed),
        num_examples=int(y.shape[0]), num_classes=k, num_flipped=flipped,
        realised_rate=flipped / y.shape[0], transition=transition_counts(y, noisy, k), details=details,
    )  # fmt: skip
    if is_torch:
        import torch

        return torch.from_numpy(noisy), record
    return noisy, record
