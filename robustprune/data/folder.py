"""Image folders: ``root/train/<class>/*.png|jpg`` (and ``root/test/<class>/...``), resized once and cached.

The first load decodes every image with Pillow, resizes it to ``image_size`` x ``image_size`` and writes the
result as one ``.npz`` of ``uint8`` arrays into the cache folder; later loads read that file only. The cache
key covers the file list (names, sizes, modification times), the size and the colour mode, so adding or
changing an image rebuilds it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from robustprune.data.base import (
    ArrayDataset,
    carve_test_split,
    check_data_dir,
    make_dataset,
)
from robustprune.data.registry import register_dataset

__all__ = ["IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _require_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "the imagefolder dataset needs Pillow; install it with: pip install 'robustprune[images]'"
        ) from None
    return Image


def _scan(split_dir: Path) -> dict[str, list[Path]]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    out: dict[str, list[Path]] = {}
    for c in classes:
        files = sorted(f for f in (split_dir / c).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"class folder {str(split_dir / c)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        out[c] = files
    return out


def _decode(files: list[Path], size: int, mode: str) -> np.ndarray:
    image = _require_pillow()
    out = np.empty((len(files), size, size, len(mode)), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with image.open(f) as im:
                im = im.convert(mode)
                if im.size != (size, size):
                    im = im.resize((size, size), image.Resampling.BILINEAR)
                out[i] = np.asarray(im, dtype=np.uint8).reshape(size, size, len(mode))
        except OSError as exc:
            raise ValueError(f"could not read image {str(f)!r}: {exc}") from None
    return out.transpose(0, 3, 1, 2)


def _cache_key(root: Path, scans: dict[str, dict[str, list[Path]]], size: int, mode: str) -> str:
    entries = []
    for split, classes in scans.items():
        for c, files in classes.items():
            for f in files:
                st = f.stat()
                entries.append((split, c, f.name, st.st_size, st.st_mtime_ns))
    blob = json.dumps([str(root.resolve()), size, mode, entries]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@register_dataset(
    "imagefolder",
    description="root/train/<class>/*.png|jpg (+ root/test/...), resized once and cached (needs Pillow)",
    aliases=("image-folder", "folder"),
)
def _load_imagefolder(
    data_dir: str | os.PathLike | None = None,
    *,
    image_size: int = 32,
    grayscale: bool = False,
    cache_dir: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> ArrayDataset:
    """Images from ``data_dir/train/<class>/`` and ``data_dir/test/<class>/``.

    Classes are the sorted names of the training sub-folders; a test class missing from training is an
    error. Without ``test/``, a seeded stratified ``test_fraction`` of the training images becomes the test
    set (with a warning). Images are converted to RGB (or L with ``grayscale=True``), resized to
    ``image_size`` square (bilinear, aspect ratio not kept) and cached as ``uint8`` in ``cache_dir``
    (default ``data_dir/.robustprune-cache``).
    """
    root = check_data_dir(data_dir)
    if root is None:
        raise ValueError("the imagefolder dataset needs data_dir= pointing at a folder with train/<class>/ images")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive whole number of pixels, got {image_size!r}")
    if not (root / "train").is_dir():
        raise ValueError(f"{str(root)!r} has no train/ folder; expected train/<class>/*.png|jpg [+ test/<class>/]")
    scans = {"train": _scan(root / "train")}
    if not scans["train"]:
        raise ValueError(f"{str(root / 'train')!r} holds no class sub-folders")
    if (root / "test").is_dir():
        scans["test"] = _scan(root / "test")
        extra = sorted(set(scans["test"]) - set(scans["train"]))
        if extra:
            raise ValueError(f"test class {extra[0]!r} has no training folder in {str(root / 'train')!r}")
    classes = list(scans["train"])
    mode = "L" if grayscale else "RGB"
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else root / ".robustprune-cache"
    cache = cdir / f"imagefolder-{image_size}{mode}-{_cache_key(root, scans, image_size, mode)}.npz"
    arrs: dict[str, np.ndarray] | None = None
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrs = {k: z[k] for k in z.files}
        except Exception:  # a damaged cache is rebuilt
            arrs = None
    if arrs is None:
        arrs = {}
        for split, scan in scans.items():
            files = [f for c in classes for f in scan.get(c, [])]
            arrs[f"x_{split}"] = _decode(files, image_size, mode)
            arrs[f"y_{split}"] = np.repeat(np.arange(len(classes)), [len(scan.get(c, [])) for c in classes])
        try:
            from robustprune._io import atomic_write_bytes

            buf = io.BytesIO()
            np.savez(buf, **arrs)
            atomic_write_bytes(cache, buf.getvalue())
        except OSError as exc:
            warnings.warn(f"could not write the image cache {str(cache)!r} ({exc}); decoding again next time",
                          stacklevel=3)  # fmt: skip
    x, y = arrs["x_train"], arrs["y_train"].astype(np.int64)
    info: dict[str, Any] = {"source": str(root), "cache": str(cache)}
    if "x_test" in arrs:
        xt, yt = arrs["x_test"], arrs["y_test"].astype(np.int64)
    else:
        x, xt, y, yt = carve_test_split(x, y, test_fraction, split_seed, f"{str(root)!r} (no test/)", info)
    return make_dataset("imagefolder", x, y, xt, yt, num_classes=len(classes), class_names=classes, info=info)
