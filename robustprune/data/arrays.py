"""Array-backed datasets: scikit-learn's bundled digits, and a user's own ``.npz``."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from robustprune.data.base import ArrayDataset, carve_test_split, make_dataset, stratified_split
from robustprune.data.registry import register_dataset

__all__: list[str] = []


@register_dataset("digits", description="scikit-learn's bundled 8x8 digits, 1797 images, 10 classes (no files)")
def _load_digits(
    data_dir: str | os.PathLike | None = None, *, test_fraction: float = 1 / 3, split_seed: int = 0
) -> ArrayDataset:
    """scikit-learn's ``load_digits`` as 1x8x8 ``uint8`` images (0..16 scaled to 0..255), split into a fixed,
    seeded, stratified train/test pair (a third for test by default). ``data_dir`` is ignored."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, test_fraction, split_seed)
    return make_dataset(
        "digits", x[tr], y[tr], x[te], y[te], num_classes=10, class_names=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits",
              "test_split": f"stratified {test_fraction:.4g} of 1797 (seed {split_seed})"},
    )  # fmt: skip


def _to_nchw(x: np.ndarray, layout: str, key: str) -> tuple[np.ndarray, str | None]:
    """Images as (N, C, H, W); tabular (N, D) unchanged. Returns the array and a note when transposed."""
    if x.ndim == 2:
        return x, None
    if x.ndim == 3:
        return x[:, None], None
    if x.ndim != 4:
        raise ValueError(f"{key} must be (N, D) rows or (N, H, W) / (N, C, H, W) images, got shape {x.shape}")
    if layout == "nchw":
        return x, None
    if layout == "nhwc" or (layout == "auto" and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4)):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), f"{key} read as (N, H, W, C) and transposed"
    if layout == "auto" and x.shape[1] not in (1, 3, 4):
        raise ValueError(f"cannot tell the channel axis of {key} {x.shape}; pass layout='nchw' or 'nhwc'")
    return x, None


def _features(x: np.ndarray, key: str) -> np.ndarray:
    if x.dtype == np.uint8 and x.ndim == 4:
        return x
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ValueError(f"{key} must be numeric, got dtype {x.dtype}")
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{key} contains NaN or infinity; clean those rows first")
    return out


def _labels(y: np.ndarray, key: str, n: int) -> np.ndarray:
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{key} must have shape ({n},) to match the examples, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(y == np.round(y)):
            raise ValueError(f"{key} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{key} must be >= 0, found {int(y.min())}")
    return y


def _npz_file(src: str | os.PathLike) -> Path:
    """``src`` as a path to an existing .npz (a zip archive), or a one-line ValueError saying what it is not."""
    p = Path(src).expanduser()
    if not p.is_file():
        raise ValueError(f"arrays file {str(p)!r} does not exist; pass path= to a .npz with keys x and y")
    if not zipfile.is_zipfile(p):
        raise ValueError(
            f"{str(p)!r} is not a .npz file (numpy's zip of .npy arrays): truncated, or another format; write it "
            "with numpy.savez(path, x=..., y=...)"
        )
    return p


def _arrays_are_rows(data_dir: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None, **_) -> bool:
    """Whether the file's ``x`` is 2-D (tabular rows), read from the array header only (no data loaded)."""
    src = path if path is not None else data_dir
    if src is None:
        return False
    p = _npz_file(src)
    try:
        with zipfile.ZipFile(p) as zf:
            if "x.npy" not in zf.namelist():
                keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
                raise ValueError(f"{str(p)!r} lacks key 'x'; it holds {keys}, expected x, y[, x_test, y_test]")
            with zf.open("x.npy") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, _ = read(f)
    except ValueError as exc:
        if str(exc).startswith(repr(str(p))):
            raise
        raise ValueError(f"could not read {str(p)!r} as .npz: {exc}") from None
    except Exception as exc:  # a truncated or non-zip file, an unreadable header
        raise ValueError(f"could not read {str(p)!r} as .npz: {type(exc).__name__}: {exc}") from None
    return len(shape) == 2


@register_dataset(
    "arrays", description="your own .npz with x, y and optional x_test, y_test, class_names", rows=_arrays_are_rows
)
def _load_arrays(
    data_dir: str | os.PathLike | None = None,
    *,
    path: str | os.PathLike | None = None,
    layout: str = "auto",
    test_fraction: float = 0.2,
    split_seed: int = 0,
    name: str = "arrays",
) -> ArrayDataset:
    """A dataset from a ``.npz`` file (``path``, or ``data_dir`` when it names the file).

    Keys: ``x`` (N, D) rows, (N, H, W) or (N, C, H, W) images (``layout`` "auto", "nchw" or "nhwc"; auto
    treats a last axis of 1, 3 or 4 as channels when the second is not); ``y`` (N,) integer labels;
    optional ``x_test``, ``y_test``, ``class_names``. ``uint8`` images are kept as they are; anything else
    becomes ``float32``. Without test arrays, a seeded stratified ``test_fraction`` is carved off the
    training data, and a warning says so.
    """
    if layout not in ("auto", "nchw", "nhwc"):
        raise ValueError(f"layout must be 'auto', 'nchw' or 'nhwc', got {layout!r}")
    src = path if path is not None else data_dir
    if src is None:
        raise ValueError("the arrays dataset needs path= (or data_dir=) naming a .npz with keys x and y")
    p = _npz_file(src)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrs = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"could not read {str(p)!r} as .npz: {type(exc).__name__}: {exc}") from None
    missing = [k for k in ("x", "y") if k not in arrs]
    if missing:
        raise ValueError(
            f"{str(p)!r} lacks key {missing[0]!r}; it holds {sorted(arrs)}, expected x, y[, x_test, y_test]"
        )
    if ("x_test" in arrs) != ("y_test" in arrs):
        raise ValueError(f"{str(p)!r} has only one of x_test / y_test; give both or neither")
    notes: list[str] = []
    x, note = _to_nchw(_features(arrs["x"], "x"), layout, "x")
    notes += [note] if note else []
    y = _labels(arrs["y"], "y", x.shape[0])
    info: dict[str, Any] = {"source": str(p)}
    if "x_test" in arrs:
        xt, note = _to_nchw(_features(arrs["x_test"], "x_test"), layout, "x_test")
        notes += [note] if note else []
        yt = _labels(arrs["y_test"], "y_test", xt.shape[0])
        if xt.dtype != x.dtype:
            xt = xt.astype(x.dtype)
    else:
        x, xt, y, yt = carve_test_split(x, y, test_fraction, split_seed, f"{p.name} (no x_test/y_test)", info)
    top = max(int(y.max()) if y.size else -1, int(yt.max()) if yt.size else -1)
    names = [str(c) for c in arrs["class_names"]] if "class_names" in arrs else None
    k = len(names) if names is not None else top + 1
    if top >= k:
        raise ValueError(f"labels reach {top} but class_names lists only {k} classes")
    if notes:
        info["notes"] = notes
    return make_dataset(name, x, y, xt, yt, num_classes=k, class_names=names, info=info)
