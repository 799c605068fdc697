"""``robustprune signals``: a signals file from a user's own embeddings and labels (a cross-fitted probe)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from robustprune.cli._common import ProgressBar, fail, refuse_overwrite, stdout_console, user_errors


def signals_command(
    features: Annotated[
        Path | None,
        typer.Option(
            "--features",
            metavar="PATH",
            help="Embeddings (N, D): .npy (memory-mapped) or .npz; or a directory of shards holding labels and "
            "features (part-00000.npz, ...), which gets one part-*.probs.npy per shard.",
        ),
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
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="Signals file to write (.npz; default signals.npz). Not with a shard "
            "directory: its probabilities are written into it.",
        ),
    ] = None,
    folds: Annotated[int, typer.Option("--folds", "-k", metavar="K", help="Folds of the cross-fitted probe.")] = 5,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="Seed of the folds.")] = 0,
    fit_rows: Annotated[
        int,
        typer.Option(
            "--fit-rows",
            metavar="N",
            help="With more rows than N, fit the probes on a stratified sample of about N rows, then predict "
            "every row (each by the probe that left its fold out), a block at a time.",
        ),
    ] = 1_000_000,
    true_labels: Annotated[
        Path | None,
        typer.Option("--true-labels", metavar="PATH", help="Clean labels, for evaluation only (optional)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output file (or a shard directory's probabilities).")
    ] = False,
) -> None:
    """Out-of-sample predicted probabilities for your own embeddings: a signals file, or one file per shard.

    A multinomial logistic regression on the standardised embeddings is fitted on K-1 stratified folds and
    predicts the fold it did not see (its L2 strength chosen on an inner split of the noisy labels), so every
    example's probabilities come from a probe that never saw it. The file (labels, probs, features) is what
    robustprune select --signals, run --signals and every label-aware method take.

    With --encoder NAME --dataset D the embeddings are a pretrained encoder's of D's training images (in
    batches, with progress; cached), and the labels are D's with --noise injected as robustprune run --seed S
    would, so the file serves run --signals with the same dataset, subset, noise and seed.

    With more rows than --fit-rows (default 1,000,000) the probes are fitted on a stratified sample of about
    that many rows, and every row is then predicted, a block at a time, by the probe fitted without its fold.
    --features DIR, a directory of shards (part-00000.npz, ... holding labels and features, or
    part-00000.features.npy beside them), is read shard by shard and never whole: each shard's out-of-fold
    probabilities are written as DIR/part-00000.probs.npy, ... (float32), with the probe's facts in
    DIR/probe.json; robustprune select -s DIR then reads them with the shards.
    """
    from robustprune._io import load_array
    from robustprune.probe import signals_from_embeddings

    with user_errors():
        if features is not None and features.is_dir():
            given = {"--labels": labels, "--encoder": encoder, "--dataset": dataset, "--out": out,
                     "--true-labels": true_labels}  # fmt: skip
            extra = [flag for flag, value in given.items() if value is not None]
            if extra:
                raise ValueError(
                    f"--features {features} is a directory of shards: their labels (and true_labels) are read from "
                    f"them and their probabilities written into them; drop {' and '.join(extra)}"
                )
            _shards_command(features, folds, seed, fit_rows, force)
            return
        out = Path("signals.npz") if out is None else out
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
        with ProgressBar("probe") as bar, _fit_rows_flag():
            sig = signals_from_embeddings(x, y, folds=folds, seed=seed, true_labels=yt, fit_rows=fit_rows, progress=bar)
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
    grid.add_row("probe", Text(_probe_line(folds, probe["l2"], probe["fit_rows"], sig.n)))
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


@contextmanager
def _fit_rows_flag() -> Iterator[None]:
    """The probe's ``fit_rows`` errors, naming the flag ``--fit-rows`` instead."""
    try:
        yield
    except ValueError as exc:
        if str(exc).startswith("fit_rows "):
            raise ValueError(f"--fit-rows {str(exc)[len('fit_rows ') :]}") from None
        raise


def _probe_line(folds: int, l2: float, fitted: int, n: int) -> str:
    line = f"{folds}-fold cross-fitted, L2 {l2:g} (chosen on an inner split)"
    if fitted < n:
        line += f", fitted on a stratified sample of {fitted:,} of the {n:,} rows"
    return line


class _ShardWriter:
    """``out`` of :func:`~robustprune.probe.cross_fitted_probe` for a shard directory: collects the streamed
    blocks of probabilities into one ``<stem>.probs.npy.partial`` per shard (a memory-mapped ``.npy``, closed
    when its last row arrives); :meth:`publish` renames them all to ``<stem>.probs.npy`` once every shard is
    written, :meth:`discard` removes them. Also counts the predictions equal to the true labels, if any."""

    def __init__(self, directory: Path, shards: list[tuple[str, int, int]], k: int, true_labels: Any) -> None:
        self.directory, self.shards, self.k, self.true_labels = directory, shards, k, true_labels
        self.at = 0  # the shard being written
        self.current: np.memmap | None = None
        self.written: list[Path] = []
        self.right = 0

    def _part(self, stem: str) -> Path:
        return self.directory / f"{stem}.probs.npy.partial"

    def _open(self) -> None:
        stem, a, b = self.shards[self.at]
        self.current = np.lib.format.open_memmap(self._part(stem), mode="w+", dtype=np.float32, shape=(b - a, self.k))
        self.written.append(self._part(stem))

    def _close(self) -> None:
        if self.current is not None:
            self.current.flush()
            self.current = None
        self.at += 1

    def __call__(self, start: int, stop: int, probs: np.ndarray) -> None:
        if self.true_labels is not None:
            self.right += int(np.count_nonzero(probs.argmax(1) == self.true_labels[start:stop]))
        while start < stop:
            _stem, a, b = self.shards[self.at]
            if self.current is None:
                self._open()
            take = min(stop, b) - start
            self.current[start - a : start - a + take] = probs[:take]  # type: ignore[index]
            probs, start = probs[take:], start + take
            if start == b:  # the shard is complete (at once for an empty one)
                self._close()

    def complete(self) -> list[Path]:
        """Write the empty shards after the last row, if any; the files :meth:`publish` will make."""
        while self.at < len(self.shards):
            self._open()
            self._close()
        return [part.with_suffix("") for part in self.written]

    def publish(self) -> list[Path]:
        """Rename every written file from ``<name>.partial`` to ``<name>`` (also any file added to
        ``written``, e.g. ``probe.json.partial``)."""
        self.complete()
        final = []
        for part in self.written:
            os.replace(part, part.with_suffix(""))
            final.append(part.with_suffix(""))
        return final

    def discard(self) -> None:
        self.current = None
        for part in self.written:
            part.unlink(missing_ok=True)


def _shards_command(directory: Path, folds: int, seed: int, fit_rows: int, force: bool) -> None:
    """The probe on a directory of shards: each shard's out-of-fold probabilities into ``<stem>.probs.npy``,
    the probe's facts into ``probe.json``; a summary on stdout."""
    import zipfile

    from robustprune.probe import check_probe_labels, cross_fitted_probe
    from robustprune.selection.shards import SHARD_PATTERN, load_shards

    names = sorted(f.name for f in directory.iterdir() if SHARD_PATTERN.match(f.name))
    for name in names:
        if name.endswith(".npz"):
            try:
                with zipfile.ZipFile(directory / name) as zf:
                    held = "probs.npy" in zf.namelist()
            except (OSError, zipfile.BadZipFile):
                held = False  # load_shards names an unreadable shard
            if held:
                raise ValueError(
                    f"{directory / name} holds a probs array, which a new probe cannot replace inside the .npz; "
                    "write the shards again without probs (labels and features only) first"
                )
    stems = sorted({SHARD_PATTERN.match(name).group(1) for name in names})  # type: ignore[union-attr]
    targets = [directory / f"{stem}.probs.npy" for stem in stems] + [directory / "probe.json"]
    if not force:
        for t in targets:
            if os.path.lexists(t):
                fail(f"{t} already exists (an earlier probe's output); pass --force to replace the probabilities")
    # the old probabilities (with --force) are not read; the probe checks every feature row as it reads it
    sig = load_shards(directory, only=("features", "true_labels"), check_on_disk=False)
    if sig.features is None:
        raise ValueError(
            f"the shards in {directory} have no 'features' array; the probe needs the embeddings (features in "
            "every part-*.npz, or part-*.features.npy beside them)"
        )
    if folds < 2:
        raise ValueError(f"--folds must be at least 2, got {folds}")
    y = check_probe_labels(sig.labels, folds)
    k = int(max(y.max(), -1 if sig.true_labels is None else sig.true_labels.max())) + 1
    writer = _ShardWriter(directory, sig.shards, k, sig.true_labels)
    try:
        with ProgressBar("probe") as bar, _fit_rows_flag():
            res = cross_fitted_probe(
                sig.features, y, num_classes=k, folds=folds, seed=seed, fit_rows=fit_rows, out=writer, progress=bar
            )
        written = writer.complete()
        facts = {
            "signal_source": f"probe:{folds} on given embeddings", "out_of_sample": True, "folds": folds,
            "l2": res.l2, "seed": seed, "fit_rows": res.fit_rows, "rows": sig.n, "num_classes": k,
            "seconds": round(res.seconds, 4), "agreement_with_given_labels": res.agreement(),
            "inner_log_loss": {f"{lam:g}": v for lam, v in res.inner_losses.items()},
            "shards": len(sig.shards), "files": [p.name for p in written],
        }  # fmt: skip
        if sig.true_labels is not None:
            facts["agreement_with_true_labels"] = writer.right / sig.n
        part = directory / "probe.json.partial"
        writer.written.append(part)
        part.write_text(json.dumps(facts, indent=1) + "\n")
        writer.publish()
    except BaseException:
        writer.discard()
        raise
    x = sig.features
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "examples",
        Text(f"{sig.n} x {x.shape[1]} ({np.dtype(x.dtype)}), {k} classes, {len(sig.shards)} shards in {directory}"),
    )
    grid.add_row("probe", Text(_probe_line(folds, res.l2, res.fit_rows, sig.n)))
    grid.add_row("out of fold", Text(f"predictions agree with {100 * res.agreement():.1f}% of the given labels"))
    if sig.true_labels is not None:
        noise = float(np.mean(y != sig.true_labels))
        grid.add_row(
            "true labels",
            Text(f"predictions right on {100 * facts['agreement_with_true_labels']:.1f}% (noise {100 * noise:.1f}%)"),
        )
    grid.add_row("time", Text(f"{res.seconds:.1f} s"))
    grid.add_row("wrote", Text(f"{len(written)} files {directory}/part-*.probs.npy and {directory}/probe.json"))
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
