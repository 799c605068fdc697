"""``robustprune select``: choose a subset from a signals file (or a bundled example) and save it."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from robustprune.cli._common import (
    ProgressBar,
    fail,
    parse_key_values,
    refuse_overwrite,
    selection_path,
    stdout_console,
    user_errors,
)

if TYPE_CHECKING:  # the selection layer imports torch and every method: loaded when a command runs
    from robustprune.selection.result import Selection
    from robustprune.signals import Signals

#: --param keys that are set by their own option or by the signals file, with the fix to suggest.
_RESERVED = {
    "fraction": "use --fraction",
    "budget": "use --budget",
    "seed": "use --seed",
    "class_balanced": "use --class-balanced/--no-class-balanced",
    "progress": "the CLI supplies the progress callback",
    "method": "use --method",
    "signals": "use --signals",
}

_DEFAULT_NOISE_RATE = 0.4


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param`` items (``["k=v", ...]``) as a dict of parsed values; a malformed item is a usage error."""
    from robustprune.selection.registry import SIGNAL_NAMES

    reserved = {**_RESERVED, **{s: "signals come from --signals or --example" for s in SIGNAL_NAMES}}
    return parse_key_values(items, "--param", "k=10", reserved=reserved)


def _load_signals(signals: Path | None, example: str | None, noise_rate: float | None) -> "Signals":
    from robustprune.examples import EXAMPLES
    from robustprune.signals import Signals

    if example is not None:
        if example not in EXAMPLES:
            fail(f"unknown example {example!r}; known examples: {', '.join(sorted(EXAMPLES))}")
        rate = _DEFAULT_NOISE_RATE if noise_rate is None else noise_rate
        # The example's data is fixed (seed 0) so that --seed varies only the selection.
        return EXAMPLES[example](noise_rate=rate, seed=0)
    assert signals is not None
    if signals.is_dir():  # a directory of shards (part-00000.npz, ...): features stay on disk
        from robustprune.selection.shards import load_shards

        return load_shards(signals)  # type: ignore[return-value]
    return Signals.load(signals)


def _torchrun_share() -> tuple[Any, bool]:
    """Under torchrun (``WORLD_SIZE`` > 1): a ``SharedBuild`` with which the ranks build Prune4ReL's graph, or
    run its parts (``--param parts=P``), together, and whether this is rank 0 (the one that writes). Alone:
    (None, True)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None, True
    import robustprune.distributed as dist
    from robustprune.selection.core.graph import SharedBuild

    return SharedBuild(), dist.is_main()


def _histogram(counts: np.ndarray) -> str:
    if counts.shape[0] <= 20:
        return " ".join(f"{c}:{int(n)}" for c, n in enumerate(counts))
    covered = int(np.count_nonzero(counts))
    return (
        f"{covered}/{counts.shape[0]} classes covered; per class min {int(counts.min())}, "
        f"median {float(np.median(counts)):g}, max {int(counts.max())}"
    )


def _summary(sel: "Selection", sig: "Signals", written: list[Path], out_npz: Path) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()

    def row(name: str, value: str) -> None:
        grid.add_row(name, Text(value))

    row("method", sel.method)
    row("examples", str(sel.n))
    row("budget", f"{sel.budget} ({100.0 * sel.budget / sel.n:.1f}%)")
    row("class balanced", "yes" if sel.params.get("class_balanced") else "no")
    row("seed", str(sel.params.get("seed")))
    row("time", f"{sel.elapsed:.3f} s")
    counts = sel.class_counts(sig.labels, sig.num_classes)
    row("classes (given labels)", _histogram(counts))
    if sig.true_labels is not None:
        mask = sel.mask()
        noisy = sig.labels != sig.true_labels
        row(
            "noise rate",
            f"{100.0 * noisy[mask].mean():.1f}% in the subset vs {100.0 * noisy.mean():.1f}% overall",
        )
        if sig.probs is not None:
            # what a re-labeling learner starts from: the warm-up prediction against the true label
            from robustprune.selection.core.rows import argmax_rows

            right = argmax_rows(sig.probs) == sig.true_labels
            row(
                "warm-up prediction correct",
                f"{100.0 * right[mask].mean():.1f}% in the subset vs {100.0 * right.mean():.1f}% overall",
            )
    if sel.weights is not None:  # craig, gradmatch: one loss weight per kept example, saved beside the indices
        w = np.asarray(sel.weights, dtype=np.float64)
        row(
            "weights",
            f"one loss weight per kept example (min {w.min():.3g}, mean {w.mean():.3g}, max {w.max():.3g}), "
            f"in {out_npz}; robustprune run --selection {out_npz} trains with them, add --param weighted=false "
            "to train without them",
        )
    row("wrote", ", ".join(str(p) for p in written))
    stdout_console().print(grid)


def select_command(
    method: Annotated[
        str,
        typer.Option("--method", "-m", metavar="METHOD", help="Selection method (see: robustprune methods)."),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="PATH", help="Where to write the selection (.npz + .npz.json)."),
    ],
    signals: Annotated[
        Path | None,
        typer.Option(
            "--signals",
            "-s",
            metavar="PATH",
            help="Signals .npz (labels, probs, features, ...), or a directory of shards part-00000.npz, ...",
        ),
    ] = None,
    example: Annotated[
        str | None,
        typer.Option("--example", metavar="NAME", help="Use a bundled example instead of a file: digits."),
    ] = None,
    noise_rate: Annotated[
        float | None,
        typer.Option("--noise-rate", metavar="RATE", help="Label noise of the --example (default 0.4)."),
    ] = None,
    fraction: Annotated[
        float | None, typer.Option("--fraction", "-f", metavar="F", help="Share kept, in (0, 1].")
    ] = None,
    budget: Annotated[int | None, typer.Option("--budget", "-b", metavar="B", help="Number of examples kept.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="Method option key=value (repeatable); see robustprune methods.",
        ),
    ] = None,
    class_balanced: Annotated[
        bool | None,
        typer.Option("--class-balanced/--no-class-balanced", help="Balance over given labels (default: method's)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Seed of the selection.")] = 0,
    save_signals: Annotated[
        Path | None,
        typer.Option("--save-signals", metavar="PATH", help="With --example: also write its signals .npz here."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")] = False,
) -> None:
    """Select a subset with a registered method and write it (indices .npz and a JSON sidecar)."""
    from robustprune.selection.api import select as run_select
    from robustprune.selection.core.graph import BuildHandedOff
    from robustprune.selection.registry import get_method

    if (signals is None) == (example is None):
        import os

        # torchrun reads options after the module's name too, and takes --signals for its --signals-to-handle
        hint = " (under torchrun write -s PATH: torchrun takes --signals for its own option)"
        fail(
            "give exactly one of --signals PATH or --example NAME"
            + (hint if "TORCHELASTIC_RUN_ID" in os.environ else "")
        )
    if example is None and (save_signals is not None or noise_rate is not None):
        fail("--save-signals and --noise-rate only apply to --example")
    if (fraction is None) == (budget is None):
        fail("give exactly one of --fraction (share kept, 0 < F <= 1) or --budget (number of examples)")
    params = parse_params(param)

    with user_errors("--fraction", "--budget"):
        get_method(method)  # an unknown method fails before any expensive work
        out_npz = selection_path(out)
        targets = [out_npz, out_npz.with_name(out_npz.name + ".json")]
        if save_signals is not None:
            save_signals = save_signals if save_signals.suffix == ".npz" else Path(f"{save_signals}.npz")
            if save_signals.resolve() in {p.resolve() for p in targets}:
                fail("--save-signals must differ from --out")
            targets.append(save_signals)
        refuse_overwrite(targets, force)

        sig = _load_signals(signals, example, noise_rate)
        shared, main = _torchrun_share()
        with ProgressBar(f"{method}") as bar:
            try:
                sel = run_select(
                    method,
                    signals=sig,
                    fraction=fraction,
                    budget=budget,
                    class_balanced=class_balanced,
                    seed=seed,
                    progress=bar if main else None,
                    shared_build=shared,
                    **params,
                )
            except BuildHandedOff:
                return  # under torchrun: this rank's share went to rank 0, which writes the selection
        if not main:
            return
        written: list[Path] = []
        if save_signals is not None:
            written.append(sig.save(save_signals))
        written.extend(sel.save(out_npz))
    _summary(sel, sig, written, out_npz)
