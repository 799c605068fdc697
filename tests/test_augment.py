"""Batched augmentation: shapes and dtypes, determinism, and what each transform really does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustprune.train import augment as A
from robustprune.train import autoaugment, imageops

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def images(b=4, c=3, h=12, w=12, seed=0, dtype=torch.uint8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype) / 255.0


def gen(seed=0):
    return imageops.make_generator(seed)


TRANSFORMS = {
    "flip": lambda x, g: imageops.random_flip(x, g),
    "crop": lambda x, g: imageops.random_crop(x, 3, g),
    "crop_reflect": lambda x, g: imageops.random_crop(x, 3, g, padding_mode="reflect"),
    "cutout": lambda x, g: imageops.cutout(x, 4, g),
    "auto_augment": lambda x, g: autoaugment.auto_augment(x, g),
    "rand_augment": lambda x, g: autoaugment.rand_augment(x, g),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_and_dtype_preserved_and_deterministic(name, dtype, channels):
    x = images(c=channels, dtype=dtype)
    out = TRANSFORMS[name](x, gen(1))
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out, TRANSFORMS[name](x, gen(1)))
    if dtype == torch.float32:
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_different_seeds_differ():
    x = images(b=16)
    assert not torch.equal(autoaugment.auto_augment(x, gen(0)), autoaugment.auto_augment(x, gen(1)))
    assert not torch.equal(imageops.random_crop(x, 4, gen(0)), imageops.random_crop(x, 4, gen(1)))


def test_flip_really_flips():
    x = images()
    assert torch.equal(imageops.random_flip(x, gen(), p=1.0), x.flip(-1))
    assert torch.equal(imageops.random_flip(x, gen(), p=0.0), x)
    out = imageops.random_flip(images(b=64), gen())
    flipped = (out == images(b=64).flip(-1)).flatten(1).all(1)
    kept = (out == images(b=64)).flatten(1).all(1)
    assert (flipped | kept).all() and 10 < int(flipped.sum()) < 54


def test_crop_without_padding_is_identity():
    x = images()
    out = imageops.random_crop(x, 0, gen())
    assert out.shape == x.shape and torch.equal(out, x)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_crop_is_a_window_of_the_padded_image(mode):
    x = images(b=6, c=2, h=7, w=9)
    pad = 3
    out = imageops.random_crop(x, pad, gen(2), padding_mode=mode, size=(5, 6))
    assert out.shape == (6, 2, 5, 6)
    padded = F.pad(x.float(), (pad,) * 4, mode=mode).to(torch.uint8)
    offsets = set()
    for i in range(x.shape[0]):
        hits = [
            (dy, dx)
            for dy in range(7 + 2 * pad - 5 + 1)
            for dx in range(9 + 2 * pad - 6 + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 6])
        ]
        assert hits, f"sample {i} is not a window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # per-sample offsets


def test_crop_keeps_channels_last():
    x = images().contiguous(memory_format=torch.channels_last)
    assert imageops.random_crop(x, 2, gen()).is_contiguous(memory_format=torch.channels_last)


def test_cutout_zeros_one_square():
    x = torch.ones(32, 2, 16, 16)
    out = imageops.cutout(x, 6, gen(3))
    holes = out == 0
    assert torch.equal(holes[:, 0], holes[:, 1])  # same square in every channel
    for hole in holes[:, 0]:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 0 < hole.sum() <= 36
        assert hole.sum() == len(rows) * len(cols)  # a (border-clipped) rectangle
        assert len(rows) == 6 or rows.min() == 0 or rows.max() == 15
    assert (holes.flatten(1).sum(1) == 72).sum() > 8  # mostly whole 6x6 squares


def test_normalize():
    x = images()
    out = imageops.normalize(x, MEAN, STD)
    ref = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ref)
    assert out.dtype == torch.float32


def one_op(name, magnitude=0):
    return ((name, 1.0, magnitude),)


def test_single_ops_match_their_definitions():
    x = images(b=3)
    assert torch.equal(autoaugment.auto_augment(x, gen(), policy=[one_op("Invert")]), 255 - x)
    assert torch.equal(autoaugment.auto_augment(x, gen(), policy=[one_op("Solarize", 9)]), 255 - x)  # threshold 0
    assert torch.equal(autoaugment.auto_augment(x, gen(), policy=[one_op("Solarize", 0)]), x)  # threshold 256
    poster = autoaugment.auto_augment(x, gen(), policy=[one_op("Posterize", 9)])  # keep 4 bits
    assert torch.equal(poster, x & 0xF0)
    assert torch.equal(autoaugment.auto_augment(x, gen(), policy=[one_op("Brightness", 0)]), x)  # factor 1
    gray = images(b=2, c=1)
    assert torch.equal(autoaugment.auto_augment(gray, gen(), policy=[one_op("Color", 9)]), gray)  # no-op on 1 channel
    auto = autoaugment.auto_augment(x, gen(), policy=[one_op("AutoContrast")])
    assert (auto.amin((2, 3)) == 0).all() and (auto.amax((2, 3)) == 255).all()


def _pil_equalize(a: np.ndarray) -> np.ndarray:
    """PIL's ImageOps.equalize for one 8-bit channel, written out as a reference."""
    hist = np.bincount(a.ravel(), minlength=256)
    step = (hist.sum() - hist[np.nonzero(hist)[0][-1]]) // 255
    if step == 0:
        return a
    lut = np.minimum(255, (step // 2 + np.concatenate([[0], np.cumsum(hist)[:-1]])) // step)
    return lut[a].astype(np.uint8)


def test_equalize_matches_pil_algorithm():
    x = torch.randint(40, 140, (3, 3, 10, 10), dtype=torch.uint8)
    x[2] = 7  # constant image: unchanged
    out = autoaugment.auto_augment(x, gen(), policy=[one_op("Equalize")]).numpy()
    ref = np.stack([np.stack([_pil_equalize(ch) for ch in img]) for img in x.numpy()])
    np.testing.assert_array_equal(out, ref)


def test_geometric_ops_move_content_and_fill():
    x = torch.full((2, 3, 16, 16), 200, dtype=torch.uint8)
    for name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        out = autoaugment.auto_augment(x, gen(), policy=[one_op(name, 3)], fill=0.0)
        assert (out < 200).any(), name  # uncovered border filled
        assert (out[:, :, 7:9, 7:9] == 200).all(), name  # the centre stays covered


def test_cpu_subset_path_equals_masked_path(monkeypatch):
    x = images(b=32, h=10, w=10)
    ref = autoaugment.auto_augment(x, gen(5))
    ref_ra = autoaugment.rand_augment(x, gen(5), num_ops=3)
    monkeypatch.setattr(autoaugment, "_FORCE_MASKED", True)
    assert torch.equal(autoaugment.auto_augment(x, gen(5)), ref)
    assert torch.equal(autoaugment.rand_augment(x, gen(5), num_ops=3), ref_ra)


def test_policy_table():
    policy = autoaugment.AUTOAUGMENT_CIFAR10_POLICY
    assert len(policy) == 25 and all(len(sub) == 2 for sub in policy)
    assert {op for sub in policy for op, _, _ in sub} <= set(autoaugment.OPS)
    assert all(0 <= p <= 1 and 0 <= m <= 9 for sub in policy for _, p, m in sub)


@pytest.mark.parametrize("channels", [1, 3])
def test_strong_augment_changes_images_and_stays_finite(channels):
    x = images(b=8, c=channels, h=16, w=16)
    aug = A.StrongAugment(MEAN[:channels], STD[:channels], padding=2, cutout_size=6, seed=0)
    out = aug(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    clean = imageops.normalize(x, MEAN[:channels], STD[:channels])
    assert not torch.allclose(out, clean)
    again = A.StrongAugment(MEAN[:channels], STD[:channels], padding=2, cutout_size=6, seed=0)(x)
    assert torch.equal(out, again)  # same seed, same result
    assert not torch.equal(aug(x), out)  # the transform's generator advances


def test_weak_and_eval_views():
    x = images(b=4, h=16, w=16)
    weak = A.WeakAugment(MEAN, STD, padding=2, seed=0)(x)
    assert weak.shape == x.shape and weak.dtype == torch.float32
    assert torch.equal(weak, A.WeakAugment(MEAN, STD, padding=2, seed=0)(x))
    assert torch.equal(weak, A.weak_augment(x, gen(0), MEAN, STD, padding=2))
    ev = A.EvalTransform(MEAN, STD, image_size=12)(x)
    torch.testing.assert_close(ev, imageops.normalize(x[..., 2:14, 2:14], MEAN, STD))
    crop = A.WeakAugment(MEAN, STD, padding=4, image_size=10)(x)
    assert crop.shape == (4, 3, 10, 10)


def test_errors():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        imageops.random_flip(torch.zeros(3, 8, 8), gen())
    with pytest.raises(ValueError, match="uint8"):
        imageops.random_flip(torch.zeros(1, 1, 4, 4, dtype=torch.int32), gen())
    with pytest.raises(ValueError, match="3 channels"):
        imageops.normalize(images(), (0.5, 0.5), (0.2, 0.2))
    with pytest.raises(ValueError, match="unknown augmentation op 'Blur'"):
        autoaugment.auto_augment(images(), gen(), policy=[one_op("Blur")])
    with pytest.raises(ValueError, match="padding"):
        imageops.random_crop(images(), -1, gen())
    with pytest.raises(ValueError, match="std must be positive"):
        A.StrongAugment(MEAN, (0.2, 0.0, 0.2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_draws():
    x = images(b=16, h=16, w=16)
    g_cpu = imageops.make_generator(0)
    out = A.StrongAugment(MEAN, STD)(x.cuda(), generator=g_cpu)
    ref = A.StrongAugment(MEAN, STD)(x, generator=imageops.make_generator(0))
    assert out.is_cuda and torch.isfinite(out).all()
    torch.testing.assert_close(out.cpu(), ref, atol=2e-2, rtol=0)
    dev_gen = A.StrongAugment(MEAN, STD, seed=0)
    assert torch.equal(dev_gen(x.cuda()), A.StrongAugment(MEAN, STD, seed=0)(x.cuda()))
