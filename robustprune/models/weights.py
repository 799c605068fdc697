"""Loading pretrained weights from a local file (never a download)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["LoadResult", "load_weights"]

logger = logging.getLogger(__name__)

_HEAD_MODES = ("load", "auto", "drop")
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
_PREFIXES = ("module.", "_orig_mod.")


class LoadResult(NamedTuple):
    """What :func:`load_weights` did.

    Attributes
    ----------
    head_loaded : bool
        Whether the final layer took the file's weights (False: it kept its fresh initialisation).
    missing_keys : list of str
        Model entries absent from the file (always empty with ``strict=True``), head excluded when dropped.
    unexpected_keys : list of str
        File entries the model has no place for (always empty with ``strict=True``).
    """

    head_loaded: bool
    missing_keys: list[str]
    unexpected_keys: list[str]


def _extract_state_dict(obj: object, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            tensors = isinstance(inner, Mapping) and all(isinstance(v, torch.Tensor) for v in inner.values())
            if inner and tensors:
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"{path} does not hold a state_dict (a mapping of names to tensors); save one with "
            "torch.save(model.state_dict(), path)"
        )
    sd = dict(obj)
    for prefix in _PREFIXES:  # DistributedDataParallel / torch.compile wrappers
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _preview(keys: list[str], n: int = 5) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    head: str = "load",
    strict: bool = True,
) -> LoadResult:
    """Load a state_dict file (e.g. torchvision ResNet weights) into ``model``, in place.

    Parameters
    ----------
    model : nn.Module
        Usually from :func:`robustprune.models.build_model`; its final layer is ``model.head_name``
        (``"fc"`` when the attribute is absent).
    path : str or PathLike
        A local file written by ``torch.save``: a state_dict, or a checkpoint dict holding one under
        ``"state_dict"``/``"model_state_dict"``/``"model"``. ``module.`` prefixes (DDP) are stripped.
        Nothing is ever downloaded.
    head : {"load", "auto", "drop"}
        "load": the head must match and is loaded (a class-count mismatch is an error);
        "auto": the head is loaded when its shapes match, otherwise the model keeps its freshly initialised
        head (fine-tuning a 1000-class checkpoint on 14 classes);
        "drop": the head is never loaded.
    strict : bool
        Require every other entry to match exactly (names and shapes), like ``load_state_dict(strict=True)``.

    Returns
    -------
    LoadResult
    """
    if head not in _HEAD_MODES:
        raise ValueError(f"head must be one of {', '.join(map(repr, _HEAD_MODES))}, got {head!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} not found; load_weights only reads local files")
    sd = _extract_state_dict(torch.load(path, map_location="cpu", weights_only=True), path)

    head_name = getattr(model, "head_name", "fc")
    own = model.state_dict()
    head_keys = [k for k in own if k.startswith(head_name + ".")]
    head_matches = all(k in sd and sd[k].shape == own[k].shape for k in head_keys)
    if head == "load" and not head_matches:
        bad = next(k for k in head_keys if k not in sd or sd[k].shape != own[k].shape)
        where = f"is {tuple(sd[bad].shape)} in {path} but"
        what = where if bad in sd else f"is missing from {path}; the model has"
        raise ValueError(
            f"{bad} {what} {tuple(own[bad].shape)} (different class count?); "
            "pass head='auto' or head='drop' to keep the model's freshly initialised head"
        )
    load_head = head == "load" or (head == "auto" and head_matches)
    if not load_head:
        sd = {k: v for k, v in sd.items() if not k.startswith(head_name + ".")}

    mismatched = [k for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if mismatched:
        k = mismatched[0]
        raise ValueError(
            f"shape mismatch for {_preview(mismatched)}: e.g. {k} is {tuple(sd[k].shape)} in {path} but "
            f"{tuple(own[k].shape)} in the model; build the model with the checkpoint's architecture "
            "(in_channels, cifar_stem, ...)"
        )
    missing = [k for k in own if k not in sd and (load_head or k not in head_keys)]
    unexpected = [k for k in sd if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing from the file: {_preview(missing)}")
        if unexpected:
            parts.append(f"not in the model: {_preview(unexpected)}")
        raise ValueError(
            f"{path} does not match the model ({'; '.join(parts)}); check the architecture or pass strict=False"
        )
    model.load_state_dict(sd, strict=False)
    if not load_head:
        logger.info("load_weights: kept the model's fresh %s (not loaded from %s)", head_name, path)
    return LoadResult(load_head, missing, unexpected)
