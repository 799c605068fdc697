"""``robustprune signals``: a signals file from a user's own embeddings and labels (a cross-fitted probe)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from robustprune.cli._common import ProgressBar, refuse_overwrite, stdout_console, user_errors


def signals_command(
    features: Annotated[
        Path,
        typer.Option("--features", metavar="PATH", help="Embeddings (N, D): .npy (memory-mapped) or .npz."),
    ],
    labels: Annotated[
        Path,
        typer.Option("--labels", metavar="PATH", help="Given (noisy) labels (N,): .npy or .npz."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="PATH", help="Signals file to write (.npz).")] = Path(
        "signals.npz"
    ),
    folds: Annotated[int, typer.Option("--folds", "-k", metavar="K", help="Folds of the cross-fitted probe.")] = 5,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Seed of the folds.")] = 0,
    true_labels: Annotated[
        Path | None,
        typer.Option("--true-labels", metavar="PATH", help="Clean labels, for evaluation only (optional)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Out-of-sample predicted probabilities for your own embeddings, written as a signals file.

    A multinomial logistic regression on the standardised embeddings is fitted on K-1 stratified folds and
    predicts the fold it did not see (its L2 strength chosen on an inner split of the noisy labels), so every
    example's probabilities come from a probe that never saw it. The file (labels, probs, features) is what
    robustprune select --signals, run --signals and every label-aware method take.
    """
    from robustprune._io import load_array
    from robustprune.probe import signals_from_embeddings

    with user_errors():
        out = out if out.suffix == ".npz" else Path(f"{out}.npz")
        refuse_overwrite([out], force)
        x = load_array(features, "features", key="features")
        y = load_array(labels, "labels", key="labels")
        yt = None if true_labels is None else load_array(true_labels, "true labels", key="true_labels")
        if np.ndim(x) != 2:
            raise ValueError(f"features must be (N, D); {features} holds an array of shape {np.shape(x)}")
        if np.ndim(y) != 1 or np.shape(y)[0] != np.shape(x)[0]:
            raise ValueError(
                f"labels hold {np.shape(y)[0] if np.ndim(y) else 0} rows ({labels}) but features hold "
                f"{np.shape(x)[0]} ({features}); give one label per embedding"
            )
        if folds < 2:
            raise ValueError(f"--folds must be at least 2, got {folds}")
        with ProgressBar("probe") as bar:
            sig = signals_from_embeddings(x, y, folds=folds, seed=seed, true_labels=yt, progress=bar)
        sig.save(out)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    probe = sig.meta["probe"]
    grid.add_row(
        "examples", Text(f"{sig.n} x {sig.features.shape[1]} ({sig.features.dtype}), {sig.num_classes} classes")
    )
    grid.add_row("probe", Text(f"{folds}-fold cross-fitted, L2 {probe['l2']:g} (chosen on an inner split)"))
    grid.add_row("out of fold", Text(f"predictions agree with {100 * sig.meta['agreement_with_given_labels']:.1f}% "
                                     "of the given labels"))  # fmt: skip
    if sig.true_labels is not None:
        right = float(np.mean(sig.probs.argmax(1) == sig.true_labels))
        grid.add_row(
            "true labels", Text(f"predictions right on {100 * right:.1f}% (noise {100 * sig.noise_rate():.1f}%)")
        )
    grid.add_row("time", Text(f"{probe['seconds']:.1f} s"))
    grid.add_row("wrote", Text(f"{out} (labels, probs, features)"))
    stdout_console().print(grid)
