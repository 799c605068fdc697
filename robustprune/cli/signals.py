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
        Path | None,
        typer.Option("--features", metavar="PATH", help="Embeddings (N, D): .npy (memory-mapped) or .npz."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", metavar="PATH", help="Given (noisy) labels (N,): .npy or .npz."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            metavar="NAME",
            help="Embed a dataset's images with this pretrained encoder instead (efficientnet-lite0; "
            "the [pretrained] extra).",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            metavar="NAME",
            help="With --encoder: the dataset whose training images "
            "are embedded (loaded and noised as robustprune run would).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", metavar="DIR", help="With --dataset: folder of its files.")
    ] = None,
    subset: Annotated[
        int | None, typer.Option("--subset", metavar="N", help="With --dataset: a stratified subset of N images.")
    ] = None,
    noise: Annotated[
        str,
        typer.Option(
            "--noise", metavar="SPEC", help="With --dataset: label noise to inject (none for the dataset's own labels)."
        ),
    ] = "sym:0.4",
    image_size: Annotated[
        int | None, typer.Option("--image-size", metavar="PX", help="With --encoder: input size (default 64).")
    ] = None,
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

    With --encoder NAME --dataset D the embeddings are a pretrained encoder's of D's training images (in
    batches, with progress; cached), and the labels are D's with --noise injected as robustprune run --seed S
    would, so the file serves run --signals with the same dataset, subset, noise and seed.
    """
    from robustprune._io import load_array
    from robustprune.probe import signals_from_embeddings

    with user_errors():
        out = out if out.suffix == ".npz" else Path(f"{out}.npz")
        if encoder is None and dataset is not None:
            raise ValueError("--dataset goes with --encoder (embed its images); for your own arrays give --features")
        if encoder is not None:
            if features is not None:
                raise ValueError("give --features (your embeddings) or --encoder (embed a dataset), not both")
            if dataset is None:
                raise ValueError("--encoder needs --dataset: the images to embed")
        elif features is None or labels is None:
            raise ValueError("give --features and --labels (your embeddings), or --encoder NAME --dataset D")
        refuse_overwrite([out], force)
        if encoder is not None:
            x, y, yt, facts = _encode_dataset(encoder, dataset, data_dir, subset, noise, seed, image_size)
            if labels is not None:
                y = load_array(labels, "labels", key="labels")
        else:
            x = load_array(features, "features", key="features")
            y = load_array(labels, "labels", key="labels")
            yt = None
            facts = None
        if true_labels is not None:
            yt = load_array(true_labels, "true labels", key="true_labels")
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
        if facts is not None:
            sig.meta["encoder"] = facts
            sig.meta["signal_source"] = f"encoder:{encoder}:{folds}"
        sig.save(out)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    probe = sig.meta["probe"]
    grid.add_row(
        "examples", Text(f"{sig.n} x {sig.features.shape[1]} ({sig.features.dtype}), {sig.num_classes} classes")
    )
    if facts is not None:
        took = "from the cache" if facts["cached"] else f"in {facts['seconds']:.1f} s"
        grid.add_row("encoder", Text(f"{encoder} at {facts['image_size']} px, embedded {took}"))
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


def _encode_dataset(
    encoder: str, dataset: str, data_dir: Path | None, subset: int | None, noise: str, seed: int,
    image_size: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:  # fmt: skip
    """Embeddings of ``dataset``'s training images, its labels with ``noise`` (as robustprune run injects it),
    the clean labels and the encoder's facts."""
    from robustprune.encoders import encode_images
    from robustprune.runconfig import RunConfig, resolve_config
    from robustprune.stages import load_run_data

    c = resolve_config(RunConfig(dataset=dataset, data_dir=None if data_dir is None else str(data_dir),
                                 subset=subset, noise=noise, seed=seed))  # fmt: skip
    ds, noisy, _rec, _xv, _yv = load_run_data(c)
    with ProgressBar("encode") as bar:
        x, facts = encode_images(ds.x_train, encoder, image_size=image_size, progress=bar)
    return x, noisy, ds.y_train.numpy(), facts
