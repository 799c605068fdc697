"""Signals: one bundle of named per-example arrays, the only input of the selection layer.

A signals file is a plain ``.npz`` that anyone can write with numpy alone::

    np.savez("signals.npz", labels=y, probs=p, features=h)         # the minimum most methods need

Keys (all optional except ``labels``; every array shares the same N):

========================  ===============  ===========================================================
key                       shape, dtype     meaning
========================  ===============  ===========================================================
``labels``                (N,) int         given, possibly noisy, class of each example
``probs``                 (N, K) float     softmax outputs of a warmed-up model
``features``              (N, D) float     penultimate embeddings (float16 is fine)
``correct``               (E, N) bool      per warm-up epoch: prediction equals the given label
``losses``                (E, N) float     per warm-up epoch: cross-entropy on the given label
``margins``               (E, N) float     per warm-up epoch: AUM margin (given logit minus best other)
``epoch_probs``           (E, N, K) float  per warm-up epoch: softmax of the training forward pass (float16;
                                           recorded only on demand, see :data:`ON_DEMAND_SIGNALS`)
``deepfool``              (N,) float       DeepFool minimal-perturbation norm ‖r‖ (not squared) of each
                                           example under the warmed-up model (on demand)
``true_labels``           (N,) int         clean labels, known only when the noise was injected
``schema_version``        () int           written by :meth:`Signals.save`; files without it are read
                                           as the current version
``meta_json``             (bytes,) uint8   free-form JSON metadata (dataset, learner, seed, ...)
========================  ===============  ===========================================================
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from robustprune._io import atomic_write_bytes
from robustprune._validation import (
    check_distances,
    check_dynamics,
    check_epoch_probs,
    check_features,
    check_labels,
    check_probs,
    check_same_examples,
)

__all__ = [
    "Signals", "SignalSpec", "SIGNALS", "SIGNAL_NAMES", "check_signals", "example_axis", "SCHEMA_VERSION",
    "ON_DEMAND_SIGNALS", "load_signals", "save_signals", "SignalSource",
    "parse_signal_source", "SIGNAL_SOURCES",
]  # fmt: skip

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SignalSpec:
    """One named per-example array: how it is shaped, what it means and how it is checked.

    :data:`SIGNALS` is the one table of them: :class:`Signals`, the method registry (which signals a method may
    ask for), ``select``'s validation and its error messages, and the README's table all read it.
    """

    name: str
    shape: str  # e.g. "(E, N, K) float"
    meaning: str
    example_axis: int  # the axis that indexes examples
    ndim: int
    check: Callable[[Any, int | None], np.ndarray]  # (value, N or None) -> the validated array
    class_axis: int | None = None  # the axis whose length is the number of classes K
    on_demand: bool = False  # computed by a run only when asked (large or slow)
    note: str = ""  # how it is produced, when that needs saying
    method_input: bool = True  # False: carried by a bundle, never given to a method (true_labels)


#: Every array a signals bundle may hold, in the order they are checked (labels first: the others are
#: compared with it).
SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("labels", "(N,) int", "the given (possibly noisy) class index of each example", 0, 1,
               lambda v, n: check_labels(v, n)),
    SignalSpec("probs", "(N, K) float", "softmax outputs of a warmed-up model on each training example", 0, 2,
               lambda v, n: check_probs(v, n), class_axis=1),
    SignalSpec("features", "(N, D) float", "penultimate-layer embeddings of each training example (float16 is "
               "fine)", 0, 2, lambda v, n: check_features(v, n)),
    SignalSpec("correct", "(E, N) bool", "per warm-up epoch: the prediction equals the given label", 1, 2,
               lambda v, n: check_dynamics(v, "correct", n, boolean=True)),
    SignalSpec("losses", "(E, N) float", "per warm-up epoch: cross-entropy on the given label", 1, 2,
               lambda v, n: check_dynamics(v, "losses", n)),
    SignalSpec("margins", "(E, N) float", "per warm-up epoch: AUM margin (given-label logit minus the largest "
               "other logit)", 1, 2, lambda v, n: check_dynamics(v, "margins", n)),
    SignalSpec("epoch_probs", "(E, N, K) float", "per-epoch softmax outputs of the warm-up's training passes "
               "(float16)", 1, 3, lambda v, n: check_epoch_probs(v, n), class_axis=2, on_demand=True,
               note="recorded only on demand: a run records it when its method needs it, make_signals when "
               "extra_signals=['epoch_probs']"),
    SignalSpec("deepfool", "(N,) float", "DeepFool minimal-perturbation norm (not squared) of each example under "
               "the warmed-up model", 0, 1, lambda v, n: check_distances(v, "deepfool", n), on_demand=True,
               note="computed only on demand: a run computes it when its method needs it, make_signals when "
               "extra_signals=['deepfool']"),
    SignalSpec("true_labels", "(N,) int", "clean labels, known only when the noise was injected", 0, 1,
               lambda v, n: check_labels(v, n), method_input=False),
)  # fmt: skip
_SPECS = {s.name: s for s in SIGNALS}
_ARRAY_KEYS = tuple(_SPECS)
_AXES = {s.name: (s.example_axis, s.ndim) for s in SIGNALS}

#: The signals a selection method may ask for.
SIGNAL_NAMES = tuple(s.name for s in SIGNALS if s.method_input)

#: Signals a run computes only when asked, because they are large (``epoch_probs`` is E·N·K) or slow
#: (``deepfool`` runs an attack): when the run's method requires them, or when a config lists them in
#: ``extra_signals`` (see :class:`robustprune.runconfig.RunConfig`).
ON_DEMAND_SIGNALS = tuple(s.name for s in SIGNALS if s.on_demand)


def example_axis(name: str) -> int:
    """The axis of signal ``name`` that indexes examples."""
    return _SPECS[name].example_axis


def check_signals(arrays: dict[str, Any], *, trusted: frozenset[str] | set[str] = frozenset()) -> dict[str, np.ndarray]:
    """The one validation of named signal arrays, by :data:`SIGNALS`: each array by its own check (except those
    in ``trusted``, already checked, e.g. by a :class:`Signals`), every array with the same number of examples,
    every class axis of the same length K, and labels below K. ``None`` entries are skipped. Returns the
    validated arrays (cast as each check casts), in the table's order."""
    present = {k: v for k, v in arrays.items() if v is not None}
    check_same_examples(present, _AXES)
    out: dict[str, np.ndarray] = {}
    n = None
    for spec in SIGNALS:
        if spec.name not in present:
            continue
        value = present[spec.name]
        arr = value if spec.name in trusted else spec.check(value, n)
        n = int(arr.shape[spec.example_axis])
        out[spec.name] = arr
    classes = [
        (s.name, int(out[s.name].shape[s.class_axis])) for s in SIGNALS if s.class_axis is not None and s.name in out
    ]
    if len({k for _, k in classes}) > 1:
        (a, ka), (b, kb) = classes[0], classes[1]
        raise ValueError(f"{b} has {kb} classes but {a} has {ka}")
    if classes:
        name, k = classes[0]
        for lab in ("labels", "true_labels"):
            if lab in out and int(out[lab].max()) >= k:
                raise ValueError(
                    f"{lab} must be < the number of classes ({k}) given by {name}, found {int(out[lab].max())}"
                )
    return out


@dataclass
class Signals:
    """Named per-example arrays computed once (after warm-up) and shared by every selection method.

    Construction validates shapes, dtypes, finiteness, label range and that every array has the same
    number of examples N; the error message names the array at fault.
    """

    labels: np.ndarray
    probs: np.ndarray | None = None
    features: np.ndarray | None = None
    correct: np.ndarray | None = None
    losses: np.ndarray | None = None
    margins: np.ndarray | None = None
    epoch_probs: np.ndarray | None = None
    deepfool: np.ndarray | None = None
    true_labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels is None:
            raise ValueError("labels are required: the given class index of each example")
        for name, arr in check_signals({k: getattr(self, k) for k in _ARRAY_KEYS}).items():
            setattr(self, name, arr)
        if not isinstance(self.meta, dict):
            raise ValueError("meta must be a dict of JSON-serialisable values")

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """K from ``probs`` (or ``epoch_probs``) when present, otherwise one more than the largest label."""
        if self.probs is not None:
            return int(self.probs.shape[1])
        if self.epoch_probs is not None:
            return int(self.epoch_probs.shape[2])
        top = int(self.labels.max())
        if self.true_labels is not None:
            top = max(top, int(self.true_labels.max()))
        return top + 1

    def available(self) -> tuple[str, ...]:
        """Names of the arrays that are present."""
        return tuple(k for k in _ARRAY_KEYS if getattr(self, k) is not None)

    def arrays(self) -> dict[str, np.ndarray]:
        """The present arrays by name."""
        return {k: getattr(self, k) for k in self.available()}

    def noise_rate(self) -> float | None:
        """Share of examples whose given label differs from the true label (None without true labels)."""
        if self.true_labels is None:
            return None
        return float(np.mean(self.labels != self.true_labels))

    def subset(self, indices: np.ndarray) -> Signals:
        """Signals of the examples at ``indices`` (per-epoch arrays are sliced along N)."""
        idx = np.asarray(indices, dtype=np.int64)
        kw: dict[str, Any] = {}
        for k in self.available():
            a = getattr(self, k)
            kw[k] = np.take(a, idx, axis=_SPECS[k].example_axis)
        return Signals(**kw, meta=dict(self.meta))

    def save(self, path: str | os.PathLike, *, compress: bool = False) -> Path:
        """Write an ``.npz`` with a schema version, atomically."""
        path = Path(path)
        data: dict[str, np.ndarray] = self.arrays()
        data["schema_version"] = np.array(SCHEMA_VERSION, dtype=np.int64)
        data["meta_json"] = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        (np.savez_compressed if compress else np.savez)(buf, **data)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Signals:
        """Read and validate a signals file; errors name the file and the array at fault."""
        path = Path(path)
        if not path.exists():
            raise ValueError(f"signals file {path} does not exist")
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            raise ValueError(
                f"cannot read signals file {path}: not a numpy .npz archive (write one with np.savez)"
            ) from None
        with z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError(f"signals file {path} is a single array, expected an .npz with named arrays")
            keys = set(z.files)
            version = int(z["schema_version"]) if "schema_version" in keys else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise ValueError(
                    f"signals file {path} has schema version {version}, newer than this robustprune "
                    f"({SCHEMA_VERSION}); upgrade robustprune"
                )
            if "labels" not in keys:
                raise ValueError(f"signals file {path} has no 'labels' array (found: {sorted(keys)})")
            unknown = keys - set(_ARRAY_KEYS) - {"schema_version", "meta_json"}
            if unknown:
                raise ValueError(
                    f"signals file {path} has unknown arrays {sorted(unknown)}; known keys: {', '.join(_ARRAY_KEYS)}"
                )
            try:
                arrays = {k: z[k] for k in _ARRAY_KEYS if k in keys}
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise ValueError(f"cannot read signals file {path}: {exc}") from None
            meta: dict[str, Any] = {}
            if "meta_json" in keys:
                try:
                    meta = json.loads(bytes(z["meta_json"]).decode())
                except (ValueError, UnicodeDecodeError):
                    raise ValueError(f"signals file {path}: meta_json is not valid JSON") from None
        try:
            return cls(**arrays, meta=meta)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"signals file {path}: {exc}") from None


def load_signals(path: str | os.PathLike) -> Signals:
    """Read a signals ``.npz`` (see :class:`Signals` for the keys)."""
    return Signals.load(path)


def save_signals(signals: Signals, path: str | os.PathLike, *, compress: bool = False) -> Path:
    """Write ``signals`` to ``path`` atomically."""
    return signals.save(path, compress=compress)


#: Where a run's ``probs`` (and per-epoch signals) come from: the kinds of :class:`SignalSource`.
SIGNAL_SOURCES = {
    "warmup": "in-sample: the warm-up model's predictions of the examples it trained on (the released protocol)",
    "ensemble": "in-sample: the mean of the warm-up epochs' softmax outputs (a temporal ensemble)",
    "probe": "out-of-sample: a K-fold cross-fitted linear probe on the warm-up model's features",
    "folds": "out-of-sample: K warm-ups, each on K-1 folds; every example predicted by the one that did not see it",
    "encoder": "out-of-sample, no warm-up: a K-fold cross-fitted linear probe on a pretrained encoder's embeddings",
}


@dataclass(frozen=True)
class SignalSource:
    """Where the label-aware signals of a run come from (``RunConfig.signal_source``).

    ``kind`` is one of :data:`SIGNAL_SOURCES`; ``folds`` is K for ``probe`` and ``folds`` (0 otherwise);
    ``features`` says which model embeds the examples for ``folds``: ``"full"`` (a warm-up on every
    example, the space Prune4ReL's graph and the coverage methods work in) or ``"fold"`` (the first fold
    model's embedding of every example, saving that warm-up).

    ``encoder`` (kind ``encoder``) names a pretrained image encoder (:mod:`robustprune.encoders`) whose
    embeddings replace the warm-up: no network is trained on the labels before selection.

    Spelled ``warmup``, ``ensemble``, ``probe:K``, ``folds:K`` or ``folds:K:fold``, and ``encoder:NAME`` or
    ``encoder:NAME:K`` (K = 5 by default).
    """

    kind: str = "warmup"
    folds: int = 0
    features: str = "full"
    encoder: str = ""

    @property
    def out_of_sample(self) -> bool:
        return self.kind in ("probe", "folds", "encoder")

    @property
    def full_warmup(self) -> bool:
        """Whether a warm-up on every training example is run (for its predictions or its features)."""
        return self.kind not in ("folds", "encoder") or (self.kind == "folds" and self.features == "full")

    def __str__(self) -> str:
        if self.kind in ("warmup", "ensemble"):
            return self.kind
        if self.kind == "encoder":
            return f"encoder:{self.encoder}:{self.folds}"
        return f"{self.kind}:{self.folds}" + (":fold" if self.kind == "folds" and self.features == "fold" else "")


def parse_signal_source(spec: Any) -> SignalSource:
    """A :class:`SignalSource` from its spelling (``"folds:5"``); ValueError naming the valid forms."""
    if isinstance(spec, SignalSource):
        return spec
    forms = "warmup, ensemble, probe:K, folds:K[:fold] or encoder:NAME[:K] (K >= 2)"
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"signal_source must be one of {forms}, got {spec!r}")
    parts = [p.strip().lower() for p in spec.strip().split(":")]
    kind = parts[0]
    if kind not in SIGNAL_SOURCES:
        raise ValueError(f"signal_source {spec!r}: unknown kind {kind!r}; use {forms}")
    if kind == "encoder":
        from robustprune.encoders import ENCODERS

        if len(parts) < 2 or parts[1] not in ENCODERS or len(parts) > 3:
            raise ValueError(f"signal_source {spec!r}: name an encoder ({', '.join(ENCODERS)}), e.g. "
                             f"encoder:{next(iter(ENCODERS))}; use {forms}")  # fmt: skip
        k = parts[2] if len(parts) == 3 else "5"
        if not k.isdigit() or int(k) < 2:
            raise ValueError(f"signal_source {spec!r}: the number of folds must be an integer >= 2")
        return SignalSource("encoder", int(k), encoder=parts[1])
    if kind in ("warmup", "ensemble"):
        if len(parts) > 1:
            raise ValueError(f"signal_source {spec!r}: {kind} takes no folds; use {forms}")
        return SignalSource(kind)
    if len(parts) < 2 or len(parts) > (3 if kind == "folds" else 2):
        raise ValueError(f"signal_source {spec!r}: give the number of folds, e.g. {kind}:5; use {forms}")
    try:
        k = int(parts[1])
    except ValueError:
        raise ValueError(f"signal_source {spec!r}: the number of folds must be an integer >= 2") from None
    if k < 2:
        raise ValueError(f"signal_source {spec!r}: the number of folds must be at least 2, got {k}")
    features = "full"
    if len(parts) == 3:
        if parts[2] not in ("full", "fold"):
            raise ValueError(f"signal_source {spec!r}: the features of folds are 'full' or 'fold', got {parts[2]!r}")
        features = parts[2]
    return SignalSource(kind, k, features)


# Keep the field list and the key list in step.
assert tuple(f.name for f in fields(Signals) if f.name != "meta") == _ARRAY_KEYS
