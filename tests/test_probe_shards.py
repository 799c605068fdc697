"""The cross-fitted probe on inputs read a block of rows at a time: fitted on a stratified sample
(``fit_rows``), every row predicted by the probe of its fold; and ``robustprune signals --features DIR`` on a
directory of shards, writing one ``part-*.probs.npy`` per shard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustprune.cli import app
from robustprune.probe import cross_fitted_probe, stratified_folds, stratified_sample
from robustprune.selection.shards import load_shards, save_shards


@pytest.fixture(autouse=True)
def one_thread():
    """Fits of a few thousand rows: one torch thread (two oversubscribe a machine shared with other work)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def blobs(n: int, d: int = 8, k: int = 4, flip: float = 0.2, spread: float = 1.5, seed: int = 0):
    """Float16 Gaussian blobs, one per class, with a share ``flip`` of the labels moved to the next class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    true = rng.integers(0, k, n)
    x = (centres[true] + rng.normal(size=(n, d))).astype(np.float16)
    noisy = true.copy()
    moved = rng.random(n) < flip
    noisy[moved] = (noisy[moved] + 1) % k
    return x, noisy, true


class CountingRows:
    """A row source that records every row index it is asked for."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.shape, self.dtype, self.reads = x, x.shape, x.dtype, []

    def __getitem__(self, idx):
        rows = np.arange(self.shape[0])[idx]
        self.reads.append(np.atleast_1d(rows))
        return self.x[idx]


def snapshot(directory: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(directory.iterdir())}


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(res, pattern: str) -> None:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert re.search(pattern, lines[0]), lines[0]


# --------------------------------------------------------------------------------------- the probe


def test_with_fit_rows_at_least_n_every_source_gives_the_in_memory_probs(tmp_path):
    x, y, _ = blobs(3000, d=12)
    ref = cross_fitted_probe(x, y, folds=5, seed=3, l2=1e-3)
    assert ref.fit_rows == 3000 and not ref.sampled and len(ref.probes) == 5
    save_shards(tmp_path / "sh", 700, labels=y, features=x)
    np.save(tmp_path / "x.npy", x)
    sources = {
        "shards": load_shards(tmp_path / "sh").features,
        "memmap": np.load(tmp_path / "x.npy", mmap_mode="r"),
        "counting": CountingRows(x),
    }
    for name, src in sources.items():
        res = cross_fitted_probe(src, y, folds=5, seed=3, l2=1e-3, fit_rows=3000)
        assert res.fit_rows == 3000 and res.l2 == ref.l2, name
        assert np.allclose(res.probs, ref.probs, atol=1e-6, rtol=0), name
    got = []
    keep = lambda a, b, p: got.append((a, b, p.copy()))  # noqa: E731
    res = cross_fitted_probe(sources["memmap"], y, folds=5, seed=3, l2=1e-3, out=keep, block=1000)
    assert res.probs is None and [(a, b) for a, b, _ in got] == [(0, 1000), (1000, 2000), (2000, 3000)]
    assert np.allclose(np.concatenate([p for *_, p in got]), ref.probs, atol=1e-6, rtol=0)
    assert res.agreement() == pytest.approx(ref.agreement(y))


def test_a_sampled_probe_reads_only_the_sample_to_fit_and_predicts_every_row_once():
    x, y, _ = blobs(5000, d=8)
    src = CountingRows(x)
    res = cross_fitted_probe(src, y, folds=5, seed=1, l2=1e-3, fit_rows=1200, block=1024)
    fold = stratified_folds(y, 5, 1)
    sample = stratified_sample(y, fold, 1200, 1)
    assert res.sampled and res.fit_rows == sample.size and abs(sample.size - 1200) <= 5 * 4
    assert sum(r.size for r in src.reads) == res.fit_rows + 5000  # the sample's rows once, then one pass over N
    first = np.concatenate(src.reads[:2])  # the sample is read in ascending blocks of 1024 rows
    assert np.array_equal(first, sample) and all(np.all(np.diff(r) > 0) for r in src.reads)
    assert np.array_equal(np.concatenate(src.reads[2:]), np.arange(5000))
    # stratified: each class and each fold hold their share of the sample
    assert np.allclose(np.bincount(y[sample]) / sample.size, np.bincount(y) / y.size, atol=0.01)
    assert np.bincount(fold[sample]).max() - np.bincount(fold[sample]).min() <= 4
    # every row is predicted by the probe fitted without its fold
    for f in range(5):
        rows = np.flatnonzero(res.fold == f)
        with torch.no_grad():
            own = res.probes[f].probs(torch.from_numpy(x[rows].astype(np.float32))).numpy()
        assert np.allclose(res.probs[rows], own, atol=1e-6)
        assert res.probes[f].rows == int(np.count_nonzero(fold[sample] != f))


def test_no_row_is_predicted_by_a_probe_that_saw_it():
    """Random labels on 32-dimensional noise, the probes fitted on a sample of 100 rows: a probe predicts the
    (random) labels of the rows it was fitted on back (it memorises them), and nothing else. Every row, in the
    sample or not, is predicted at chance: by the probe of its fold, which never saw it."""
    rng = np.random.default_rng(0)
    n, d, k = 2000, 32, 4
    x = rng.normal(size=(n, d)).astype(np.float16)
    y = rng.integers(0, k, n)
    res = cross_fitted_probe(x, y, folds=5, seed=0, l2=1e-4, fit_rows=100)
    sample = stratified_sample(y, res.fold, 100, 0)
    assert res.fit_rows == sample.size == 100
    with torch.no_grad():
        xs = torch.from_numpy(x[sample].astype(np.float32))
        pred = np.stack([p.probs(xs).numpy().argmax(1) for p in res.probes])  # (folds, sample rows)
    saw = res.fold[sample][None, :] != np.arange(5)[:, None]  # probe f was fitted on the sample outside fold f
    assert np.mean((pred == y[sample])[saw]) > 0.95  # the control: fitted rows' labels are predicted back
    assert np.array_equal(res.probs[sample].argmax(1), pred[res.fold[sample], np.arange(sample.size)])
    assert np.mean(res.probs[sample].argmax(1) == y[sample]) < 0.4  # out of fold: chance (1/4), not 0.95
    assert abs(res.agreement() - 1 / k) < 0.04


def test_a_probe_fitted_on_a_sample_is_about_as_accurate_as_one_fitted_on_every_row():
    x, y, true = blobs(6000, d=8, k=4, flip=0.3, spread=1.5, seed=3)
    full = cross_fitted_probe(x, y, folds=5, seed=0, l2=1e-2)
    part = cross_fitted_probe(x, y, folds=5, seed=0, l2=1e-2, fit_rows=1500)
    acc_full = np.mean(full.probs.argmax(1) == true)
    acc_part = np.mean(part.probs.argmax(1) == true)
    assert 0.75 < acc_full < 0.99  # overlapping blobs: the accuracy has room to differ
    assert abs(acc_part - acc_full) < 0.02, (acc_part, acc_full)
    assert part.agreement() == pytest.approx(np.mean(part.probs.argmax(1) == y))


@pytest.mark.parametrize("fit_rows", [19, 2.5, True, "1000"])
def test_a_bad_fit_rows_is_refused_in_one_line(fit_rows):
    x, y, _ = blobs(500)
    with pytest.raises(ValueError, match=r"^fit_rows must be a whole number of at least 20 \(classes × folds\)"):
        cross_fitted_probe(x, y, folds=5, fit_rows=fit_rows)


def test_a_row_source_with_nan_is_refused_naming_the_row(tmp_path):
    x, y, _ = blobs(2000)
    x[1733, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    for fit_rows in (None, 500):
        with pytest.raises(ValueError, match="features contains NaN \\(first at row 1733\\)"):
            cross_fitted_probe(np.load(tmp_path / "x.npy", mmap_mode="r"), y, folds=3, fit_rows=fit_rows)


# --------------------------------------------------------------------------------------- the command line


def test_the_signals_command_on_a_shard_directory(tmp_path):
    x, y, true = blobs(3000, d=12, k=4, flip=0.25)
    plain, npy, zipped = tmp_path / "plain", tmp_path / "npy", tmp_path / "zipped"
    save_shards(plain, 1100, labels=y, features=x, true_labels=true)  # uncompressed .npz
    save_shards(zipped, 1000, compress=True, labels=y, features=x)  # decompressed a shard at a time
    save_shards(npy, 750, labels=y)  # labels in the .npz, embeddings as part-*.features.npy beside them
    for j, a in enumerate(range(0, 3000, 750)):
        np.save(npy / f"part-{j:05d}.features.npy", x[a : a + 750])
    ref = cross_fitted_probe(x, y, folds=5, seed=0, fit_rows=1200)
    for directory, shards in ((plain, 3), (npy, 4), (zipped, 3)):
        res = invoke("signals", "--features", directory, "--fit-rows", 1200)
        assert res.exit_code == 0, res.output
        for fact in ("3000 x 12 (float16), 4 classes", f"{shards} shards", "stratified sample of 1,200 of the 3,000",
                     "out of fold", f"wrote        {shards} files {directory}/part-*.probs.npy"):  # fmt: skip
            assert fact in res.output, (fact, res.output)
        files = sorted(directory.glob("part-*.probs.npy"))
        assert len(files) == shards and not list(directory.glob("*.partial"))
        assert all(np.load(f).dtype == np.float32 for f in files)
        facts = json.loads((directory / "probe.json").read_text())
        assert facts["out_of_sample"] is True and facts["fit_rows"] == ref.fit_rows and facts["rows"] == 3000
        assert facts["folds"] == 5 and facts["seed"] == 0 and facts["l2"] == ref.l2
        assert facts["agreement_with_given_labels"] == pytest.approx(ref.agreement())
        sig = load_shards(directory)
        assert {"labels", "probs", "features"} <= set(sig.available())
        assert np.allclose(sig.probs, ref.probs, atol=1e-6, rtol=0)
        if directory == zipped:
            continue
        sel = tmp_path / f"sel-{directory.name}.npz"
        picked = invoke("select", "-s", directory, "--method", "prune4rel_auto", "--fraction", "0.1",
                        "--param", "parts=4", "--param", "device=cpu", "--out", sel)  # fmt: skip
        assert picked.exit_code == 0, picked.output
        idx = np.load(sel)["indices"]
        assert idx.size == 300 and np.unique(idx).size == 300
        assert ("true labels  predictions right on" in res.output) == (directory == plain)
    right = json.loads((plain / "probe.json").read_text())["agreement_with_true_labels"]
    assert right == pytest.approx(np.mean(ref.probs.argmax(1) == true)) and right > 0.8
    # a single .npy goes through the same --fit-rows
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    res = invoke("signals", "--features", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--fit-rows", 1200,
                 "--out", tmp_path / "one.npz")  # fmt: skip
    assert res.exit_code == 0, res.output
    from robustprune.signals import Signals

    one = Signals.load(tmp_path / "one.npz")
    assert one.meta["probe"]["fit_rows"] == ref.fit_rows and np.allclose(one.probs, ref.probs, atol=1e-6, rtol=0)


def test_the_signals_command_on_a_directory_refuses_and_changes_nothing(tmp_path):
    x, y, _ = blobs(2000, d=8)
    done = tmp_path / "done"
    save_shards(done, 800, labels=y, features=x)
    assert invoke("signals", "--features", done, "--fit-rows", 600).exit_code == 0
    bare = tmp_path / "bare"  # embeddings without labels
    bare.mkdir()
    np.savez(bare / "part-00000.npz", features=x)
    nofeat = tmp_path / "nofeat"
    save_shards(nofeat, 1000, labels=y)
    held = tmp_path / "held"  # probabilities inside the .npz
    save_shards(held, 1000, labels=y, features=x, probs=np.full((2000, 4), 0.25, dtype=np.float32))
    cases = [
        (done, [], r"part-00000\.probs\.npy already exists .*--force"),
        (done, ["--out", tmp_path / "o.npz"], r"directory of shards.*drop --out"),
        (done, ["--labels", tmp_path / "y.npy"], r"directory of shards.*drop --labels"),
        (bare, [], r"no 'labels' array"),
        (nofeat, [], r"no 'features' array"),
        (held, [], r"holds a probs array.*without probs"),
        (held, ["--force"], r"holds a probs array.*without probs"),
        (done, ["--fit-rows", 3, "--force"], r"--fit-rows must be a whole number of at least 20 \(classes × folds\)"),
    ]
    for directory, extra, pattern in cases:
        before = snapshot(directory)
        res = invoke("signals", "--features", directory, *extra)
        one_error_line(res, pattern)
        assert snapshot(directory) == before, (directory, extra)
    # with --force the probabilities are replaced (here by a probe with other folds)
    old = np.load(done / "part-00000.probs.npy")
    res = invoke("signals", "--features", done, "--fit-rows", 600, "--folds", 3, "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((done / "probe.json").read_text())["folds"] == 3
    assert not np.array_equal(np.load(done / "part-00000.probs.npy"), old)


def test_an_interrupted_probe_leaves_no_probabilities_under_their_names(tmp_path, monkeypatch):
    import robustprune.probe as probe

    x, y, _ = blobs(3000, d=8)
    save_shards(tmp_path / "sh", 1000, labels=y, features=x)
    before = snapshot(tmp_path / "sh")
    real = probe.cross_fitted_probe

    def stop_midway(*args, out, **kw):
        def writer(a, b, p):
            if a >= 1500:
                raise RuntimeError("stopped")
            out(a, b, p)

        return real(*args, out=writer, block=500, **kw)

    monkeypatch.setattr(probe, "cross_fitted_probe", stop_midway)
    res = invoke("signals", "--features", tmp_path / "sh", "--fit-rows", 1000)
    assert isinstance(res.exception, RuntimeError)
    assert snapshot(tmp_path / "sh") == before  # the shard already written was a temporary file, now removed


def test_the_shard_writer_puts_every_row_in_its_shard_even_around_an_empty_one(tmp_path):
    from robustprune.cli.signals import _ShardWriter

    probs = np.random.default_rng(0).random((7, 3)).astype(np.float32)
    w = _ShardWriter(tmp_path, [("part-00000", 0, 3), ("part-00001", 3, 3), ("part-00002", 3, 7), ("part-00003", 7, 7)],
                     3, None)  # fmt: skip
    for a in range(0, 7, 2):
        w(a, min(7, a + 2), probs[a : a + 2])
    assert not list(tmp_path.glob("*.probs.npy"))  # nothing under the real names before publish
    files = w.publish()
    assert [f.name for f in files] == [f"part-0000{j}.probs.npy" for j in range(4)]
    got = [np.load(f) for f in files]
    assert [g.shape for g in got] == [(3, 3), (0, 3), (4, 3), (0, 3)]
    assert np.array_equal(np.concatenate(got), probs)


def test_force_replaces_probabilities_the_shards_could_not_load_and_bad_rows_are_named(tmp_path):
    x, y, _ = blobs(2000, d=8)
    done = tmp_path / "done"
    save_shards(done, 800, labels=y, features=x)
    for j, (a, b) in enumerate(((0, 800), (800, 1600), (1600, 2000))):  # stale probabilities of 3 classes, not 4
        np.save(done / f"part-{j:05d}.probs.npy", np.full((b - a, 3), 1 / 3, dtype=np.float32))
    with pytest.raises(ValueError, match=r"labels must be < the number of classes \(3\) given by probs"):
        load_shards(done)
    res = invoke("signals", "--features", done, "--fit-rows", 600, "--force")  # the stale files are not read
    assert res.exit_code == 0, res.output
    assert load_shards(done).probs.shape == (2000, 4)
    # the probe checks every feature row as it reads it (load_shards does not scan them first here)
    bad = x.astype(np.float32)
    bad[1234, 2] = np.nan
    nan = tmp_path / "nan"
    save_shards(nan, 800, labels=y, features=bad)
    before = snapshot(nan)
    one_error_line(
        invoke("signals", "--features", nan, "--fit-rows", 600), r"features contains NaN \(first at row 1234\)"
    )
    assert snapshot(nan) == before
