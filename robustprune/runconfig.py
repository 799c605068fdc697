"""Run configuration: :class:`RunConfig` with every field declared once (:func:`opt`), its resolution, and
warm-up sharing keys.

:func:`resolve_config` fills every ``None`` of a :class:`RunConfig` from the dataset's protocol
(:mod:`robustprune.protocols`) and checks every name and option; :func:`warmup_key` names what a warm-up
depends on, so runs (and sweep cells) that agree on it can share one warm-up's signals.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from robustprune.protocols import protocol_for
from robustprune.signals import ON_DEMAND_SIGNALS, parse_signal_source

__all__ = [
    "RunConfig", "Resolved", "resolve", "resolve_config", "default_run_name", "safe_name", "warmup_key",
    "WARMUP_FIELDS", "RUNTIME_FIELDS", "Flag", "opt", "SECTIONS", "section_fields", "run_options", "tabular_data",
]  # fmt: skip


@dataclass(frozen=True)
class Flag:
    """How a :class:`RunConfig` field appears on ``robustprune run``'s command line.

    ``kind``: "value" (typed by the field), "path" (a file or folder, stored as a string), "pairs" (repeatable
    KEY=VALUE into a dict; ``example`` shows one), "params" (the same for method options, with the CLI's
    reserved keys refused), "switch" (``--x``), "toggle" (``--x/--no-x``, unset = None), or
    "unless_selection" (a value whose default applies only without ``--selection``).
    """

    names: tuple[str, ...]
    metavar: str | None = None
    kind: str = "value"
    example: str = ""


#: Sections of a RunConfig, and what a field's section decides.
SECTIONS = ("data", "training", "selection", "inputs", "evaluation", "runtime")
#: Fields of these sections determine a warm-up (runs that agree on them can share its signals).
WARMUP_SECTIONS = ("data", "training")
#: Fields of this section never change a result (not compared when a run is resumed).
RUNTIME_SECTION = "runtime"


@dataclass(frozen=True)
class Check:
    """A field's constraint, declared on its :func:`opt`: ``test(value)`` must hold for any value but None,
    else ``ValueError("<field> must be <phrase>, got <value>")``."""

    test: Callable[[Any], bool]
    phrase: str

    def __call__(self, name: str, value: Any) -> None:
        if value is not None and not self.test(value):
            raise ValueError(f"{name} must be {self.phrase}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def integer(low: int | None = None) -> Check:
    """An integer, at least ``low`` when given."""
    if low is None:
        return Check(_is_int, "an integer")
    return Check(lambda v: _is_int(v) and v >= low, f"an integer >= {low}")


def positive_number() -> Check:
    return Check(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a positive number")


def one_of(*values: str) -> Check:
    return Check(lambda v: v in values, " or ".join(repr(x) for x in values))


def share(*, closed_low: bool, closed_high: bool, note: str = "") -> Check:
    """A number in an interval of [0, 1] (``note`` says what it is)."""
    lo, hi = ("[" if closed_low else "("), ("]" if closed_high else ")")

    def test(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return False
        return (v >= 0 if closed_low else v > 0) and (v <= 1 if closed_high else v < 1)

    return Check(test, f"in {lo}0, 1{hi}" + (f" ({note})" if note else ""))


def text() -> Check:
    return Check(lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string")


def options() -> Check:
    return Check(
        lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v), "a dict of option name to value"
    )


def opt(
    default: Any, section: str, help: str, flag: Flag | None = None, *, grid: bool = True, check: Check | None = None
) -> Any:
    """A RunConfig field declared once: its default, its section, its help text, its command-line flag,
    whether a bench grid may set it in its ``[run]`` table, and its constraint (``check``, applied to every
    value but None when a config is made). ``default`` may be a factory (``dict``)."""
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    meta = {"section": section, "help": help, "flag": flag, "grid": grid, "check": check}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def section_fields(cls: type, *sections: str) -> tuple[str, ...]:
    """Names of ``cls``'s fields in ``sections``, in declaration order."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("section") in sections)


def run_options(cls: type) -> tuple[str, ...]:
    """Fields a bench grid may set for all its cells (its ``[run]`` table)."""
    return tuple(f.name for f in fields(cls) if f.metadata.get("grid", False))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. ``None`` = from the dataset protocol (see :func:`resolve_config`).

    Each field is declared once, with :func:`opt`: its default, its section (the data and training sections
    decide a warm-up; runtime fields never change a result), its help text (the command line's too), its flag
    and its constraint. The list of fields below is made from those declarations.
    """

    # data: what the training set and its noisy labels are (shared by a warm-up)
    dataset: str = opt(
        "digits",
        "data",
        "Dataset: {datasets}; digits needs no files.",
        Flag(("--dataset", "-d"), "NAME"),
        grid=False,
        check=text(),
    )
    dataset_params: dict[str, Any] = opt(
        dict,
        "data",
        "Dataset loader option KEY=VALUE (repeatable), e.g. cifar_n=FILE (CIFAR-N labels).",
        Flag(("--data-param",), "KEY=VALUE", "pairs", "cifar_n=CIFAR-10_human.pt"),
        check=options(),
    )
    subset: int | None = opt(
        None,
        "data",
        "Use a fixed seeded stratified subset of N training examples (CPU-sized runs).",
        Flag(("--subset",), "N"),
        check=integer(2),
    )
    noise: str = opt(
        "sym:0.4",
        "data",
        "Label noise: none, sym:R, asym:R, asym-pairs:R, instance:R, matrix:FILE, human[:NAME].",
        Flag(("--noise",), "SPEC"),
        grid=False,
        check=text(),
    )
    noise_seed: int | None = opt(None, "data", "Seed of the noise (default: seed).", grid=False, check=integer())
    val_fraction: float = opt(
        0.0,
        "data",
        "Hold out this share of the training set (given labels) to pick the best epoch; 0 reports the last epoch only.",
        Flag(("--val-fraction",), "F"),
        check=share(closed_low=True, closed_high=False, note="0 = no validation split"),
    )
    seed: int = opt(
        0,
        "data",
        "Seed of the noise, the selection and training.",
        Flag(("--seed", "-s"), "S"),
        grid=False,
        check=integer(),
    )
    # training: the learner and its schedule (shared by a warm-up)
    learner: str = opt(
        "sop",
        "training",
        "Re-labeling learner: ce, sop (SOP+), dividemix, elr.",
        Flag(("--learner", "-l"), "NAME"),
        grid=False,
        check=text(),
    )
    learner_params: dict[str, Any] = opt(
        dict,
        "training",
        "Learner option KEY=VALUE (repeatable), e.g. lr_u=1 (defaults: the dataset protocol).",
        Flag(("--learner-param",), "KEY=VALUE", "pairs", "lr_u=1"),
        grid=False,
        check=options(),
    )
    model: str | None = opt(
        None,
        "training",
        "Network: mlp, lenet, small_cnn, preact_resnet18, resnet18/34/50 (default: the dataset's).",
        Flag(("--model",), "NAME"),
    )
    warmup_epochs: int | None = opt(
        None,
        "training",
        "Warm-up epochs on the full noisy set before selection (default: the dataset's).",
        Flag(("--warmup-epochs",), "E"),
        check=integer(0),
    )
    epochs: int | None = opt(
        None,
        "training",
        "Training epochs on the subset, also the cosine schedule length (default: the dataset's).",
        Flag(("--epochs", "-e"), "E"),
        check=integer(1),
    )
    batch_size: int | None = opt(
        None, "training", "Batch size (default 128).", Flag(("--batch-size",), "B"), check=integer(1)
    )
    lr: float | None = opt(
        None, "training", "SGD learning rate (default: the dataset's).", Flag(("--lr",), "LR"), check=positive_number()
    )
    confidence_pass: str = opt(
        "clean",
        "training",
        "Inputs of the signals pass: clean, or strong (one strong augmentation per example, as released).",
        Flag(("--confidence-pass",), "VIEW"),
        check=one_of("clean", "strong"),
    )
    signal_source: str = opt(
        "probe:5",
        "training",
        "Where probs and per-epoch signals come from: probe:K (default probe:5; a K-fold cross-fitted linear "
        "probe on the warm-up features), folds:K[:fold] (K warm-ups on K-1 folds each; every example predicted "
        "by the model that did not see it), warmup (the warm-up's in-sample predictions, as released), "
        "ensemble (their mean over the warm-up epochs) or encoder:NAME[:K] (no warm-up: the probe on a "
        "pretrained encoder's embeddings, e.g. encoder:efficientnet-lite0; the [pretrained] extra).",
        Flag(("--signal-source",), "SPEC"),
    )
    # selection: which subset the fresh learner trains on
    method: str = opt(
        "prune4rel_auto",
        "selection",
        "Selection method (see: robustprune methods).",
        Flag(("--method", "-m"), "NAME"),
        grid=False,
        check=text(),
    )
    params: dict[str, Any] = opt(
        dict,
        "selection",
        "Method option KEY=VALUE (repeatable), e.g. tau=0.95; see robustprune methods NAME.",
        Flag(("--param", "-p"), "KEY=VALUE", "params"),
        grid=False,
        check=options(),
    )
    fraction: float | None = opt(
        0.5,
        "selection",
        "Share of training examples kept, in (0, 1] (default {default}).",
        Flag(("--fraction", "-f"), "F", "unless_selection"),
        grid=False,
        check=share(closed_low=False, closed_high=True, note="the share of examples kept"),
    )
    class_balanced: bool | None = opt(
        None,
        "selection",
        "Balance the budget over given labels (default: the method's).",
        Flag(("--class-balanced/--no-class-balanced",), None, "toggle"),
    )
    selection: str | None = opt(
        None,
        "selection",
        "Train on a subset chosen elsewhere: a select .npz, or "
        ".npy/.txt indices into the run's training set. Skips warm-up and selection.",
        Flag(("--selection",), "FILE", "path"),
        grid=False,
    )
    signals: str | None = opt(
        None,
        "selection",
        "Reuse the signals.npz of an earlier run on the same training set "
        "(same dataset, subset, noise and seed) instead of a new warm-up.",
        Flag(("--signals",), "FILE", "path"),
        grid=False,
    )
    extra_signals: tuple[str, ...] = opt(
        (),
        "selection",
        "On-demand signals to compute beside those the method requires: "
        + ", ".join(ON_DEMAND_SIGNALS)
        + " (the method's own are always computed).",
    )
    # inputs and evaluation: change what a run reports, not its warm-up
    data_dir: str | None = opt(
        None, "inputs", "Folder holding the dataset files.", Flag(("--data-dir",), "DIR", "path")
    )
    test_subset: int | None = opt(
        None,
        "evaluation",
        "Evaluate on a fixed stratified subset of N test examples.",
        Flag(("--test-subset",), "N"),
        check=integer(1),
    )
    eval_every: int = opt(
        1,
        "evaluation",
        "Evaluate test (and validation) accuracy every E epochs; the last epoch always.",
        Flag(("--eval-every",), "E"),
        check=integer(1),
    )
    # runtime: where and how, never what
    device: str | None = opt(None, "runtime", "cpu or cuda (default: cuda when available).", Flag(("--device",), "DEV"))
    eval_batch_size: int = opt(1024, "runtime", "Batch size of evaluation and prediction passes.", check=integer(1))
    out: str | None = opt(
        None,
        "runtime",
        "Run directory (default: runs/<dataset>-<noise>-<learner>-<method>-f<F>-s<S>).",
        Flag(("--out", "-o"), "DIR", "path"),
        grid=False,
    )
    force: bool = opt(
        False,
        "runtime",
        "Redo a run found in the run directory (its files are replaced).",
        Flag(("--force",), None, "switch"),
        grid=False,
    )
    resume: bool = opt(
        False,
        "runtime",
        "Continue an interrupted run in the run directory; finished stages are reused.",
        Flag(("--resume",), None, "switch"),
        grid=False,
    )

    def __post_init__(self) -> None:
        for f in fields(self):  # each field's own constraint, declared on its opt(...)
            if f.metadata.get("check") is not None:
                f.metadata["check"](f.name, getattr(self, f.name))
        # constraints between fields
        if self.fraction is None and self.selection is None:
            raise ValueError("fraction is required unless a selection file is given")
        object.__setattr__(self, "signal_source", str(parse_signal_source(self.signal_source)))
        if self.epochs is not None and self.warmup_epochs is not None and self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs}): the warm-up "
                "walks the first steps of the training schedule"
            )
        extra = self.extra_signals
        if isinstance(extra, str) or not isinstance(extra, (list, tuple)):
            raise ValueError(f"extra_signals must be a list of signal names, got {extra!r}")
        unknown = [e for e in extra if e not in ON_DEMAND_SIGNALS]
        if unknown:
            raise ValueError(
                f"extra_signals has {unknown[0]!r}; signals computed on demand: {', '.join(ON_DEMAND_SIGNALS)}"
            )
        object.__setattr__(self, "extra_signals", tuple(n for n in ON_DEMAND_SIGNALS if n in extra))
        if self.signals is not None and self.selection is not None:
            raise ValueError("give at most one of signals (reuse a warm-up) and selection (a fixed subset)")
        if self.force and self.resume:
            raise ValueError("give at most one of force (start over) and resume (continue)")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the result (every section but runtime), JSON-normalised; compared when a run
        is resumed."""
        runtime = section_fields(type(self), RUNTIME_SECTION)
        return json.loads(json.dumps({k: v for k, v in asdict(self).items() if k not in runtime}))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a ``config.json`` written by :func:`run` (unknown keys are ignored)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A config from the fields of ``data`` (unknown keys, such as config.json's metadata, are ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _fields_doc(cls: type) -> str:
    """The Attributes section of ``cls``'s docstring, from its fields' :func:`opt` declarations."""
    lines = ["", "    Attributes", "    ----------"]
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        helptext = f.metadata["help"].replace("{default}", repr(default)).replace("{datasets}", "a registered dataset")
        lines += [f"    {f.name} : {f.metadata['section']}", f"        {helptext}"]
    return "\n".join(lines) + "\n"


RunConfig.__doc__ = (RunConfig.__doc__ or "") + _fields_doc(RunConfig)


def _selection_file_params(params: dict[str, Any]) -> dict[str, Any]:
    """The one option a selection file takes: ``weighted`` (train with the weights the file holds, as craig and
    gradmatch write them; default true)."""
    unknown = sorted(set(params) - {"weighted"})
    if unknown:
        raise ValueError(
            f"a selection file takes only the option weighted (true: train with its per-example weights, if it has "
            f"any), not {unknown[0]!r}; method options apply to --method"
        )
    weighted = params.get("weighted", True)
    if not isinstance(weighted, bool):
        raise ValueError(f"weighted must be true or false, got {weighted!r}")
    return {"weighted": weighted} if "weighted" in params else {}


#: RunConfig fields whose ``None`` the dataset protocol fills.
_FROM_PROTOCOL = ("model", "epochs", "warmup_epochs", "batch_size", "lr")


@dataclass(frozen=True)
class Resolved:
    """A run's config as given, as resolved, and where each resolved value came from: the one decision of every
    value a run uses (:func:`resolve`); ``run --dry-run``, ``config.json``'s ``resolved`` and the run summary
    read it, nothing decides again.

    Attributes
    ----------
    given : RunConfig
        The config as the caller made it (``None`` = from the dataset protocol).
    config : RunConfig
        Every value filled in and every name canonical.
    origins : dict
        Where each value came from, by field name and by ``learner_params.KEY`` / ``params.KEY`` for the
        learner's and the method's options (defaults included): "given", "dataset protocol" (with a note for
        the CPU default model), the learner's or the method's default, "seed", "auto (...)" or "default".
    """

    given: RunConfig
    config: RunConfig
    origins: dict[str, str]

    def rows(self) -> list[tuple[str, Any, str]]:
        """Every value the run uses with its origin, as ``(key, value, origin)``, in declaration order."""
        c = self.config
        defaults = _option_defaults(c)
        out: list[tuple[str, Any, str]] = []
        for key, origin in self.origins.items():
            if key.startswith("learner_params."):
                value = c.learner_params.get(key.split(".", 1)[1], defaults.get(key))
            elif key.startswith("params."):
                value = c.params.get(key.split(".", 1)[1], defaults.get(key))
            else:
                value = getattr(c, key)
            out.append((key, value, origin))
        return out

    def with_runtime(self, **changes: Any) -> Resolved:
        """The same resolution with runtime fields (``out``, ``force``, ``resume``, ...) changed on both configs;
        they never change a result, so nothing is decided again."""
        bad = sorted(set(changes) - set(section_fields(RunConfig, RUNTIME_SECTION)))
        if bad:
            raise ValueError(f"with_runtime changes runtime fields only, not {bad[0]!r}")
        return replace(self, given=replace(self.given, **changes), config=replace(self.config, **changes))


def _option_defaults(c: RunConfig) -> dict[str, Any]:
    """The learner's and the method's option defaults, keyed as in :attr:`Resolved.origins`."""
    from robustprune.selection.registry import get_method
    from robustprune.train.learners import get_learner_class

    out: dict[str, Any] = {}
    for f in fields(get_learner_class(c.learner).Options):
        out[f"learner_params.{f.name}"] = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    if c.selection is None:
        out.update({f"params.{k}": v for k, v in get_method(c.method).options.items()})
    return out


def resolve(config: RunConfig, given: Collection[str] | None = None) -> Resolved:
    """Fill every ``None`` from the dataset protocol and canonicalise names, recording where each value came
    from; ValueError for unknown names or options (dataset, learner, model, method, noise spec, learner /
    method options).

    ``given`` names the fields the user set by a flag or a config file (None: those that differ from
    RunConfig's defaults); learner and method options count as given when they are in ``learner_params`` /
    ``params``. Needs no data: whether a user dataset is tabular (which picks its default model) is read from
    the dataset's metadata (:meth:`~robustprune.data.DatasetInfo.is_tabular`)."""
    from robustprune._device import resolve_device
    from robustprune.data import get_dataset_info
    from robustprune.models import get_model_info
    from robustprune.noise import parse_noise
    from robustprune.selection.registry import get_method
    from robustprune.train.learners import get_learner_class

    c = config
    if given is None:
        default = type(config)()
        given = {f.name for f in fields(config) if getattr(config, f.name) != getattr(default, f.name)}
    proto = protocol_for(c.dataset, tabular=tabular_data(c))
    loader_options = get_dataset_info(c.dataset).options
    unknown = sorted(set(c.dataset_params) - set(loader_options))
    if unknown:
        valid = ", ".join(loader_options) or "none"
        raise ValueError(f"dataset {c.dataset!r} has no option {unknown[0]!r}; valid: {valid}")
    learner_cls = get_learner_class(c.learner)
    lparams = {**proto.learner_params.get(learner_cls.name, {}), **c.learner_params}
    learner_cls.check_options(lparams)
    device = resolve_device(c.device)
    on_cpu_default = c.model is None and proto.cpu_model is not None and device.type == "cpu"
    model = get_model_info(c.model if c.model is not None else proto.cpu_model if on_cpu_default else proto.model).name
    if c.selection is not None:
        method, fraction, selection = "file", None, str(Path(c.selection).expanduser().resolve())
        params = _selection_file_params(c.params)
    else:
        info = get_method(c.method)
        if c.class_balanced and info.balance == "none":
            raise ValueError(f"method {info.name!r} does not support class balancing; drop class_balanced")
        method, fraction, selection = info.name, c.fraction, None
        params = {**proto.method_params.get(info.name, {}), **c.params}
        info.check_options(params)
    epochs = c.epochs if c.epochs is not None else max(proto.epochs, c.warmup_epochs or 0)
    warmup = c.warmup_epochs if c.warmup_epochs is not None else min(proto.warmup_epochs, epochs)
    if warmup > epochs:
        raise ValueError(f"warmup_epochs ({warmup}) must not exceed epochs ({epochs})")
    resolved = replace(
        c, dataset=get_dataset_info(c.dataset).name, noise=str(parse_noise(c.noise)),
        noise_seed=c.seed if c.noise_seed is None else c.noise_seed, learner=learner_cls.name,
        learner_params=lparams, model=model, method=method, params=params, fraction=fraction,
        selection=selection, epochs=epochs,
        signals=None if c.signals is None else str(Path(c.signals).expanduser().resolve()), warmup_epochs=warmup,
        batch_size=c.batch_size or proto.batch_size, lr=c.lr or proto.lr,
        data_dir=None if c.data_dir is None else str(Path(c.data_dir).expanduser()),
        device=str(device),
    )  # fmt: skip

    origins: dict[str, str] = {}
    for f in fields(config):
        if f.name in ("params", "learner_params", "out", "force", "resume"):
            continue
        if f.name in given:
            origins[f.name] = "given"
        elif f.name in _FROM_PROTOCOL and getattr(config, f.name) is None:
            origins[f.name] = "dataset protocol"
            if f.name == "model" and on_cpu_default and proto.cpu_model != proto.model:
                origins[f.name] = f"dataset protocol (CPU default; {proto.model} on a GPU)"
        elif f.name == "device" and config.device is None:
            origins[f.name] = "auto (CUDA when available)"
        elif f.name == "noise_seed" and config.noise_seed is None:
            origins[f.name] = "seed"
        else:
            origins[f.name] = "default"
    for f in fields(learner_cls.Options):
        key = f"learner_params.{f.name}"
        in_proto = f.name in proto.learner_params.get(learner_cls.name, {})
        origins[key] = (
            "given"
            if f.name in config.learner_params
            else "dataset protocol"
            if in_proto
            else (f"{learner_cls.name} default")
        )
    if selection is None:
        for key in info.options:
            in_proto = key in proto.method_params.get(info.name, {})
            origins[f"params.{key}"] = (
                "given" if key in config.params else "dataset protocol" if in_proto else (f"{info.name} default")
            )
    return Resolved(given=config, config=resolved, origins=origins)


def resolve_config(config: RunConfig) -> RunConfig:
    """The resolved config alone (see :func:`resolve`, which also says where each value came from)."""
    return resolve(config).config


#: RunConfig fields a warm-up depends on: runs that agree on all of them can share one warm-up's signals.
WARMUP_FIELDS = section_fields(RunConfig, *WARMUP_SECTIONS)
#: RunConfig fields that do not change the result (excluded when a resumed run is compared).
RUNTIME_FIELDS = frozenset(section_fields(RunConfig, RUNTIME_SECTION))


def warmup_key(config: RunConfig) -> dict[str, Any]:
    """The fields of a *resolved* config that determine its warm-up (and so its signals)."""
    return json.loads(json.dumps({k: getattr(config, k) for k in WARMUP_FIELDS}))


def default_run_name(config: RunConfig) -> str:
    """A directory name from the main choices, e.g. ``digits-sym0.4-sop-prune4rel-f0.5-s0``."""
    what = f"sel-{Path(config.selection).stem}" if config.selection else f"{config.method}-f{config.fraction:g}"
    name = f"{config.dataset}-{config.noise}-{config.learner}-{what}-s{config.seed}"
    return safe_name(name)


def safe_name(name: str) -> str:
    """``name`` as a file-system-safe directory name (``:`` and anything but ``A-Za-z0-9._+-`` dropped)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "", name.replace(":", ""))


def tabular_data(config: RunConfig) -> bool:
    """Whether the run's dataset is tabular rows (its default model then is the MLP), from metadata only."""
    from robustprune.data import get_dataset_info

    return get_dataset_info(config.dataset).is_tabular(config.data_dir, config.dataset_params)
