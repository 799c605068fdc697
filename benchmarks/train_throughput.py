"""Training throughput: robustprune's engine against a per-sample DataLoader pipeline, same model and process.

Both loops train the same network (same initial weights, SGD with momentum 0.9, Nesterov, weight decay
5e-4, lr 0.02: ``TrainConfig``'s defaults) with cross-entropy, and differ only in how a batch reaches it:

- **reference**: what the released research code does with torchvision. A ``Dataset`` holds the images
  (uint8, H×W×C numpy, as torchvision's CIFAR datasets do) and its ``__getitem__`` turns *one* image into a
  normalised float tensor with per-sample transforms; a ``DataLoader`` (shuffle, ``num_workers`` worker
  processes, ``pin_memory`` on CUDA) collates them and the batch is copied to the device. Transforms
  (``--reference-transforms``):

  * ``pil`` (default): PIL per image, as torchvision + the AutoAugment ``CIFAR10Policy`` code that SOP,
    DivideMix and Prune4ReL ship: weak = pad + random crop + horizontal flip + ToTensor + Normalize;
    strong = AutoAugment (one random sub-policy per image, same policy table and magnitudes as
    ``robustprune.train.augment``) + flip + crop + ToTensor + Normalize + Cutout (numpy mask).
  * ``torch``: robustprune's own batched augmentation called on a batch of ONE image with a per-worker
    generator (the same maths as the engine, but per sample).

- **engine**: robustprune's training engine: the whole uint8 training split is one tensor on the device;
  each step takes a tensor of indices (``EpochContext.batches``), gathers the images and runs the batched
  ``WeakAugment`` / ``StrongAugment`` on the device (``EpochContext.view``), then the same forward/backward
  (``EpochContext.forward``) and SGD step; ``EpochContext.step_end`` books the loss without a host sync
  (on CUDA it checks divergence every 50 steps, exactly as in training).

On CUDA both loops use bf16 autocast and channels_last (model and inputs), so the comparison is about the
input pipeline. For each view (weak, strong) the script warms up, then times ``--steps`` steps of each loop,
in ``--rounds`` alternating rounds so that drifting machine load hits both alike (the reference's workers
are stopped while the engine runs, and the batches they prefetch at each start are consumed untimed), and
prints images/second side by side with the ratio. ``--workers auto`` first probes a few worker counts
for the reference with short runs and keeps the fastest for that view (the probe figures are printed).
``--breakdown`` (default on) also times the pieces alone: the train step on a fixed batch, the engine's
batched augmentation, and each per-sample transform in one process (µs per image). ``--model none`` times
the input pipelines alone (batches made and delivered to the device, no training).

An input pipeline can at most remove its own share of the step: engine/reference is bounded by
(train step alone) / (reference), which the breakdown shows; on a CPU the model usually dominates.

Examples::

    python benchmarks/train_throughput.py                                   # synthetic CIFAR, ResNet-18
    python benchmarks/train_throughput.py --data fashion-mnist --model small_cnn --steps 30   # small CPU run
    python benchmarks/train_throughput.py --data fashion-mnist --model lenet --steps 60  # a light CPU model
    python benchmarks/train_throughput.py --data fashion-mnist --model none --steps 30  # pipelines alone
    python benchmarks/train_throughput.py --device cuda --workers 8 --steps 500
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info

from robustprune._device import resolve_device
from robustprune.data import load_dataset, make_dataset
from robustprune.models import build_model
from robustprune.train.autoaugment import AUTOAUGMENT_CIFAR10_POLICY
from robustprune.train.batches import TrainData
from robustprune.train.engine import EpochContext, RunInfo, TrainConfig

try:
    from PIL import Image, ImageEnhance, ImageOps
except ImportError:  # pragma: no cover - Pillow is the "images" extra
    Image = None

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# ------------------------------------------------------------------------------------------------ data


def get_data(name: str, seed: int):
    """An ArrayDataset: synthetic CIFAR-like noise, or Fashion-MNIST (synthetic 1x28x28 if absent)."""
    if name == "fashion-mnist":
        try:
            return load_dataset("fashion-mnist"), "fashion-mnist (real, 60000 train images)"
        except (ValueError, OSError) as exc:
            note = f"fashion-mnist not found ({str(exc).splitlines()[0][:80]}); synthetic 1x28x28 instead"
            shape, n = (1, 28, 28), 60000
    else:
        note, shape, n = "synthetic-cifar (random uint8 3x32x32, 50000 images)", (3, 32, 32), 50000
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=gen)
    ds = make_dataset("synthetic", x, y, x[:16], y[:16], num_classes=10)
    if shape[0] == 3:  # CIFAR-10's statistics, as the reference code hard-codes them
        ds = dataclasses.replace(ds, mean=CIFAR10_MEAN, std=CIFAR10_STD)
    return ds, note


# --------------------------------------------------------------------- per-sample reference transforms


def _lin(a: float, b: float) -> list[float]:
    return [a + (b - a) * i / 9 for i in range(10)]


#: The AutoAugment search-space magnitudes (bins 0..9), as in the released ``CIFAR10Policy``.
PIL_MAGNITUDES = {
    "ShearX": _lin(0.0, 0.3), "ShearY": _lin(0.0, 0.3),
    "TranslateX": _lin(0.0, 150 / 331), "TranslateY": _lin(0.0, 150 / 331),
    "Rotate": _lin(0.0, 30.0), "Solarize": _lin(256.0, 0.0),
    "Posterize": [int(round(v)) for v in _lin(8.0, 4.0)],
    "Color": _lin(0.0, 0.9), "Contrast": _lin(0.0, 0.9),
    "Sharpness": _lin(0.0, 0.9), "Brightness": _lin(0.0, 0.9),
    "AutoContrast": [0] * 10, "Equalize": [0] * 10, "Invert": [0] * 10, "Identity": [0] * 10,
}  # fmt: skip


def pil_autoaugment(img, rng: np.random.Generator, policy=AUTOAUGMENT_CIFAR10_POLICY, fill: int = 128):
    """One image through a random sub-policy; each step fires with its probability (PIL ops)."""
    fillc = fill if img.mode == "L" else (fill,) * len(img.getbands())
    for name, p, m in policy[int(rng.integers(len(policy)))]:
        if rng.random() >= p:
            continue
        v = PIL_MAGNITUDES[name][m]
        s = v if rng.random() < 0.5 else -v  # signed ops; unsigned ones ignore it
        w, h = img.size
        affine, bicubic = Image.Transform.AFFINE, Image.Resampling.BICUBIC
        if name == "ShearX":
            img = img.transform(img.size, affine, (1, s, 0, 0, 1, 0), bicubic, fillcolor=fillc)
        elif name == "ShearY":
            img = img.transform(img.size, affine, (1, 0, 0, s, 1, 0), bicubic, fillcolor=fillc)
        elif name == "TranslateX":
            img = img.transform(img.size, affine, (1, 0, s * w, 0, 1, 0), fillcolor=fillc)
        elif name == "TranslateY":
            img = img.transform(img.size, affine, (1, 0, 0, 0, 1, s * h), fillcolor=fillc)
        elif name == "Rotate":
            img = img.rotate(s, fillcolor=fillc)
        elif name == "Color":
            img = ImageEnhance.Color(img).enhance(1 + s)
        elif name == "Contrast":
            img = ImageEnhance.Contrast(img).enhance(1 + s)
        elif name == "Sharpness":
            img = ImageEnhance.Sharpness(img).enhance(1 + s)
        elif name == "Brightness":
            img = ImageEnhance.Brightness(img).enhance(1 + s)
        elif name == "Posterize":
            img = ImageOps.posterize(img, int(v))
        elif name == "Solarize":
            img = ImageOps.solarize(img, v)
        elif name == "AutoContrast":
            img = ImageOps.autocontrast(img)
        elif name == "Equalize":
            img = ImageOps.equalize(img)
        elif name == "Invert":
            img = ImageOps.invert(img)
    return img


class PerSampleDataset(Dataset):
    """Per-sample pipeline: ``__getitem__`` augments one uint8 image into a normalised float tensor."""

    def __init__(
        self,
        x_nchw: torch.Tensor,
        labels: torch.Tensor,
        view: str,
        mean,
        std,
        *,
        padding: int,
        cutout: int,
        impl: str,
        seed: int = 0,
    ) -> None:
        self.view, self.impl, self.padding, self.cutout = view, impl, padding, cutout
        self.labels = labels.numpy().tolist()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        if impl == "pil":
            hwc = x_nchw.permute(0, 2, 3, 1).numpy()  # as torchvision's CIFAR datasets store images
            self.images = np.ascontiguousarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)
        else:
            from robustprune.train.augment import StrongAugment, WeakAugment

            self.images = x_nchw
            cls = WeakAugment if view == "weak" else StrongAugment
            extra = {} if view == "weak" else {"cutout_size": cutout}
            self.tf = cls(mean, std, padding=padding, **extra)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.impl == "torch":  # the project's augmentation on a batch of one image
            return self.tf(self.images[i : i + 1], self.gen)[0], self.labels[i]
        rng, p = self.rng, self.padding
        img = Image.fromarray(self.images[i])
        if self.view == "strong":
            img = pil_autoaugment(img, rng)
        if rng.random() < 0.5:  # RandomHorizontalFlip
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        w, h = img.size  # RandomCrop(size, padding=p): pad with 0, then crop at a random offset
        img = ImageOps.expand(img, border=p, fill=0)
        top, left = int(rng.integers(2 * p + 1)), int(rng.integers(2 * p + 1))
        img = img.crop((left, top, left + w, top + h))
        t = torch.from_numpy(np.array(img))  # ToTensor (a copy, as torchvision's)
        t = (t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)).contiguous().float().div(255)
        t = t.sub_(self.mean).div_(self.std)  # Normalize
        if self.view == "strong" and self.cutout > 0:  # Cutout (DeVries & Taylor's numpy-mask code)
            mask = np.ones((h, w), np.float32)
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y1, y2 = np.clip(cy - self.cutout // 2, 0, h), np.clip(cy + self.cutout // 2, 0, h)
            x1, x2 = np.clip(cx - self.cutout // 2, 0, w), np.clip(cx + self.cutout // 2, 0, w)
            mask[y1:y2, x1:x2] = 0.0
            t = t * torch.from_numpy(mask).expand_as(t)
        return t, self.labels[i]


def _worker_init(worker_id: int) -> None:
    info = get_worker_info()
    info.dataset.reseed(info.seed % 2**63)  # a distinct stream per worker (base seed + worker id)


def make_loader(ds: Dataset, batch_size: int, workers: int, cuda: bool, seed: int) -> DataLoader:
    kwargs = {}
    if workers > 0:
        kwargs = {"persistent_workers": True, "worker_init_fn": _worker_init, "prefetch_factor": 2}
        if sys.platform.startswith("linux"):
            kwargs["multiprocessing_context"] = "fork"  # as the released code runs on Linux
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=cuda,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def _batches_forever(loader: DataLoader):
    while True:
        yield from loader


def _close(loader: DataLoader) -> None:
    it = getattr(loader, "_iterator", None)
    if it is not None and hasattr(it, "_shutdown_workers"):
        it._shutdown_workers()
    loader._iterator = None


# ----------------------------------------------------------------------------------------------- loops


class Setup:
    """Device, model template, data on the device and the settings shared by both loops."""

    def __init__(self, args, ds) -> None:
        self.args = args
        self.dev = resolve_device(args.device)
        self.cuda = self.dev.type == "cuda"
        self.amp = self.cuda and not args.no_amp
        self.cl = self.cuda and not args.no_channels_last
        self.ds = ds
        c, h = int(ds.x_train.shape[1]), int(ds.x_train.shape[-1])
        self.padding, self.cutout = max(1, h // 8), max(1, h // 2)  # TrainData.from_dataset's defaults
        self.data = TrainData.from_dataset(ds, device=self.dev, padding=self.padding, cutout_size=self.cutout)
        self.model0 = None  # --model none: input pipeline only
        if args.model != "none":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(args.seed)
                self.model0 = build_model(args.model, int(ds.num_classes), in_channels=c, image_size=h)
        self.config = TrainConfig(
            batch_size=args.batch_size,
            seed=args.seed,
            device=str(self.dev),
            amp=self.amp,
            channels_last=self.cl,
        )  # the engine's EpochContext reads amp / channels_last from here

    def fresh_model(self):
        """A copy of the template model on the device (same initial weights every time) and its SGD."""
        if self.model0 is None:
            return None, None
        model = copy.deepcopy(self.model0).to(self.dev)
        if self.cl:
            model = model.to(memory_format=torch.channels_last)
        c = self.config
        opt = torch.optim.SGD(
            model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
        )
        return model.train(), opt

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)


def _sgd_step(model, opt, logits, y):
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


class ReferenceRunner:
    """Per-sample DataLoader -> host-to-device copy -> train step (no host sync: no ``.item()``).

    ``open`` starts the loader's workers and ``close`` stops them, so that they never run (prefetching)
    while the engine is being timed; the model and optimiser persist across rounds.
    """

    def __init__(self, s: Setup, dataset: Dataset, workers: int) -> None:
        self.s, self.dataset, self.workers = s, dataset, workers
        self.model, self.opt = s.fresh_model()
        self.loader, self.it, self.opened = None, None, 0

    def open(self) -> None:
        seed = self.s.args.seed + self.opened
        self.loader = make_loader(self.dataset, self.s.args.batch_size, self.workers, self.s.cuda, seed)
        self.it, self.opened = _batches_forever(self.loader), self.opened + 1

    def step(self) -> int:
        s = self.s
        x, y = next(self.it)
        x = x.to(s.dev, non_blocking=True)
        y = y.to(s.dev, non_blocking=True)
        if s.cl:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.model is not None:
            with s.autocast():
                logits = self.model(x)
            _sgd_step(self.model, self.opt, logits.float(), y)
        return int(x.shape[0])

    def close(self) -> None:
        if self.loader is not None:
            _close(self.loader)
        self.loader, self.it = None, None


def engine_steps(s: Setup):
    """(ctx, idx) pairs of the engine's batches, epoch after epoch (a fresh EpochContext per epoch)."""
    run = RunInfo(None, s.data, torch.arange(s.data.num_samples, device=s.dev), "bench", epochs=10**9)
    epoch = 0
    while True:
        ctx = EpochContext(run, epoch, s.config, [], None)
        for idx in ctx.batches():
            yield ctx, idx
        epoch += 1


class EngineRunner:
    """Index batch -> batched augmentation on the device -> the same train step, as the learners do."""

    def __init__(self, s: Setup, view: str) -> None:
        self.s, self.view = s, view
        self.model, self.opt = s.fresh_model()
        self.it = engine_steps(s)

    def step(self) -> int:
        ctx, idx = next(self.it)
        x = ctx.view(self.view, idx)
        if self.model is not None:
            logits = ctx.forward(self.model, x)
            ctx.step_end(_sgd_step(self.model, self.opt, logits, self.s.data.labels[idx]))
        return int(idx.shape[0])


def run_steps(s: Setup, runner, n: int) -> tuple[int, float]:
    """(images, seconds) of ``n`` steps; the device is synchronised only before and after."""
    s.sync()
    t0 = time.perf_counter()
    images = sum(runner.step() for _ in range(n))
    s.sync()
    return images, time.perf_counter() - t0


def compare(s: Setup, view: str, dataset: Dataset, workers: int, steps: int, warmup: int, rounds: int):
    """Images/s of reference and engine, timed in alternating rounds (so load drift hits both alike).

    Each reference round starts its DataLoader afresh and first runs ``2 * workers + 1`` untimed steps (the
    very first round ``warmup`` more), which consume the batches prefetched while the workers started; its
    workers are stopped before the engine's round, so they never compete with it for the CPU.
    """
    ref, eng = ReferenceRunner(s, dataset, workers), EngineRunner(s, view)
    totals = {"ref": [0, 0.0], "eng": [0, 0.0]}
    sizes = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
    try:
        for r, n in enumerate(k for k in sizes if k > 0):
            ref.open()
            run_steps(s, ref, 2 * workers + 1 + (warmup if r == 0 else 0))
            images, secs = run_steps(s, ref, n)
            ref.close()
            totals["ref"][0] += images
            totals["ref"][1] += secs
            if r == 0:
                run_steps(s, eng, warmup)
            images, secs = run_steps(s, eng, n)
            totals["eng"][0] += images
            totals["eng"][1] += secs
    finally:
        ref.close()
    return [(images / secs, secs) for images, secs in (totals["ref"], totals["eng"])]


def probe_workers(s: Setup, dataset: Dataset, candidates, steps: int, warmup: int) -> list[tuple[float, int]]:
    """(images/s, workers) of a short reference run for each worker count."""
    out = []
    for w in candidates:
        ref = ReferenceRunner(s, dataset, w)
        try:
            ref.open()
            run_steps(s, ref, warmup + 2 * w + 1)
            images, secs = run_steps(s, ref, steps)
        finally:
            ref.close()
        out.append((images / secs, w))
    return out


def breakdown(s: Setup, view: str, impl: str, steps: int) -> dict[str, float]:
    """The pieces alone: train step on a fixed batch, batched augmentation, per-sample transform."""
    out = {}
    steps = max(1, min(steps, s.data.num_samples // s.args.batch_size))
    idx_all = torch.randperm(s.data.num_samples)[: s.args.batch_size * steps].to(s.dev)
    batches = idx_all.view(steps, -1)
    tf = getattr(s.data, view)
    gen = torch.Generator(device=s.dev).manual_seed(1)
    for b in batches[:2]:
        tf(s.data.x[b], gen)
    s.sync()
    t0 = time.perf_counter()
    for b in batches:
        tf(s.data.x[b], gen)
    s.sync()
    out["engine augmentation alone (img/s)"] = idx_all.numel() / (time.perf_counter() - t0)
    model, opt = s.fresh_model()
    if model is None:
        return _per_sample_costs(s, view, impl, out)
    x = s.data.clean(s.data.x[batches[0]])
    if s.cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = s.data.labels[batches[0]]

    def step():
        with s.autocast():
            logits = model(x)
        _sgd_step(model, opt, logits.float(), y)

    for _ in range(2):
        step()
    s.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    s.sync()
    out["train step alone, fixed batch (img/s)"] = idx_all.numel() / (time.perf_counter() - t0)
    return _per_sample_costs(s, view, impl, out)


def _per_sample_costs(s: Setup, view: str, impl: str, out: dict[str, float]) -> dict[str, float]:
    impls = [impl] + [i for i in ("pil", "torch") if i != impl and (i != "pil" or Image is not None)]
    for name in impls:  # the per-sample transform alone, in this process (no DataLoader, no collate)
        ds = PerSampleDataset(
            s.ds.x_train[:1024], s.ds.y_train[:1024], view, s.ds.mean, s.ds.std,
            padding=s.padding, cutout=s.cutout, impl=name,
        )  # fmt: skip
        for i in range(16):
            ds[i]
        n = 256
        t0 = time.perf_counter()
        for i in range(n):
            ds[i]
        out[f"per-sample {name} transform alone (us/img)"] = 1e6 * (time.perf_counter() - t0) / n
    return out


# ------------------------------------------------------------------------------------------------ main


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    return f"CPU ({name})"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=["synthetic-cifar", "fashion-mnist"], default="synthetic-cifar")
    p.add_argument(
        "--model",
        default=None,
        help="a registered model, or 'none' (input pipeline only, no training); "
        "default: preact_resnet18 (CIFAR), small_cnn (Fashion-MNIST)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--steps", type=int, default=None, help="timed steps per loop (default: 1000 CUDA, 20 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 20 CUDA, 3 CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="time reference and engine in this many alternating rounds")
    p.add_argument("--workers", default="auto", help="reference DataLoader workers: an int, or 'auto' (probe)")
    p.add_argument(
        "--reference-transforms",
        choices=["pil", "torch"],
        default=None,
        help="per-sample transforms of the reference (default: pil when Pillow is installed)",
    )
    p.add_argument("--views", default="weak,strong", help="comma-separated subset of weak,strong")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-amp", action="store_true", help="CUDA: no bf16 autocast (both loops)")
    p.add_argument("--no-channels-last", action="store_true", help="CUDA: NCHW instead (both loops)")
    p.add_argument(
        "--breakdown",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the pieces alone (train step, augmentation, per-sample transform)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available in this torch build/machine; use --device cpu")
    if args.model is None:
        args.model = "small_cnn" if args.data == "fashion-mnist" else "preact_resnet18"
    if args.reference_transforms is None:
        args.reference_transforms = "pil" if Image is not None else "torch"
    if args.reference_transforms == "pil" and Image is None:
        p.error("--reference-transforms pil needs Pillow (pip install pillow)")
    args.views = [v.strip() for v in args.views.split(",") if v.strip()]
    if not args.views or any(v not in ("weak", "strong") for v in args.views):
        p.error("--views must list weak and/or strong")
    if args.workers != "auto":
        try:
            args.workers = int(args.workers)
            assert args.workers >= 0
        except (ValueError, AssertionError):
            p.error(f"--workers must be 'auto' or a non-negative integer, got {args.workers!r}")
    for name in ("steps", "warmup", "batch_size", "threads", "rounds"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive, got {v}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds, note = get_data(args.data, args.seed)
    s = Setup(args, ds)
    steps = args.steps or (1000 if s.cuda else 20)
    warmup = args.warmup if args.warmup is not None else (20 if s.cuda else 3)
    ncpu = _cpu_count()
    if args.workers == "auto":
        base = [2, 4, 8, 12, 16] if s.cuda else [0, 1, 2]
        candidates = sorted({w for w in base if w <= ncpu} | ({ncpu} if s.cuda else set()))
    else:
        candidates = [args.workers]
    shape = "x".join(str(d) for d in ds.x_train.shape[1:])
    print(
        f"torch {torch.__version__} | {_device_name(s.dev)} | torch threads {torch.get_num_threads()} | "
        f"{ncpu} CPUs usable | python {platform.python_version()}"
    )
    print(
        f"data {note}: {ds.x_train.shape[0]} x {shape} uint8 | model {args.model} | "
        f"batch {args.batch_size} | steps {steps} (+{warmup} warm-up, {args.rounds} rounds) | "
        f"bf16 {s.amp} | channels_last {s.cl}"
    )
    print(
        f"augmentation: padding {s.padding}, cutout {s.cutout} | reference: per-sample "
        f"{args.reference_transforms} transforms, DataLoader(shuffle, drop_last, pin_memory={s.cuda}), "
        f"workers {'auto ' + str(candidates) if args.workers == 'auto' else candidates[0]}"
    )
    rows = []
    for view in args.views:
        dset = PerSampleDataset(
            ds.x_train,
            ds.y_train,
            view,
            ds.mean,
            ds.std,
            padding=s.padding,
            cutout=s.cutout,
            impl=args.reference_transforms,
            seed=args.seed,
        )
        workers = candidates[0]
        if len(candidates) > 1:
            probe_steps = max(5, min(50, steps // 10))
            res = probe_workers(s, dset, candidates, probe_steps, warmup)
            print(
                f"  [{view}] reference worker probe ({probe_steps} steps each): "
                + ", ".join(f"{w} workers {ips:.0f} img/s" for ips, w in res)
            )
            workers = max(res)[1]
        (ref_ips, ref_t), (eng_ips, eng_t) = compare(s, view, dset, workers, steps, warmup, args.rounds)
        rows.append((view, ref_ips, workers, eng_ips))
        print(
            f"  [{view}] reference {ref_ips:9.0f} img/s ({ref_t:.1f} s, {workers} workers) | "
            f"engine {eng_ips:9.0f} img/s ({eng_t:.1f} s) | engine/reference {eng_ips / ref_ips:.2f}x"
        )
        if args.breakdown:
            parts = breakdown(s, view, args.reference_transforms, max(3, min(steps // 3, 50)))
            print("  [" + view + "] breakdown: " + " | ".join(f"{k} {v:.0f}" for k, v in parts.items()))
        sys.stdout.flush()
    print()
    print(f"{'view':<8}{'reference img/s':>17}{'workers':>9}{'engine img/s':>14}{'engine/reference':>18}")
    for view, ref_ips, workers, eng_ips in rows:
        print(f"{view:<8}{ref_ips:>17.0f}{workers:>9d}{eng_ips:>14.0f}{eng_ips / ref_ips:>17.2f}x")


if __name__ == "__main__":
    main()
