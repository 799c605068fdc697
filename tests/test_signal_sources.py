"""Where a run's signals come from (``RunConfig.signal_source``): the cross-fitted probe, the fold warm-ups,
the temporal ensemble, the spec and its errors, the warm-up key, and the bench variants that set it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import robustprune.distributed as dist
from robustprune.cli import app
from robustprune.pipeline import make_signals, run
from robustprune.probe import cross_fitted_probe, stratified_folds
from robustprune.runconfig import RunConfig, resolve_config, warmup_key
from robustprune.signals import SignalSource, parse_signal_source
from robustprune.warmup import spread_folds

# ------------------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("warmup", SignalSource("warmup")),
        (" Ensemble ", SignalSource("ensemble")),
        ("probe:5", SignalSource("probe", 5)),
        ("folds:3", SignalSource("folds", 3, "full")),
        ("folds:10:fold", SignalSource("folds", 10, "fold")),
        ("folds:4:full", SignalSource("folds", 4, "full")),
    ],
)
def test_signal_source_spellings(spec, expected):
    src = parse_signal_source(spec)
    assert src == expected
    assert parse_signal_source(str(src)) == src  # the canonical spelling reads back
    assert src.out_of_sample == (src.kind in ("probe", "folds"))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("folds", "give the number of folds"),
        ("folds:1", "at least 2"),
        ("folds:x", "integer"),
        ("probe:5:fold", "give the number of folds"),
        ("warmup:3", "takes no folds"),
        ("folds:5:half", "'full' or 'fold'"),
        ("bagging", "unknown kind"),
        ("", "must be one of"),
    ],
)
def test_bad_signal_sources_are_refused_in_one_line(spec, match):
    with pytest.raises(ValueError, match=match) as info:
        RunConfig(signal_source=spec)
    assert "\n" not in str(info.value)


def test_the_cli_refuses_a_bad_source_with_one_line():
    res = CliRunner().invoke(app, ["run", "--signal-source", "folds:1", "--dry-run"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "at least 2" in lines[0]


def test_the_warmup_key_changes_with_the_source_and_k():
    keys = {
        s: json.dumps(warmup_key(resolve_config(RunConfig(signal_source=s))), sort_keys=True)
        for s in ("warmup", "ensemble", "probe:5", "folds:3", "folds:5", "folds:5:fold")
    }
    assert len(set(keys.values())) == len(keys)
    # spelled differently, the same source: the same key
    assert warmup_key(resolve_config(RunConfig(signal_source="FOLDS:5:full"))) == warmup_key(
        resolve_config(RunConfig(signal_source="folds:5"))
    )


# ------------------------------------------------------------------------------------- folds and probe


def test_folds_are_stratified_seeded_and_balanced():
    y = np.repeat(np.arange(4), [50, 31, 7, 12])
    f = stratified_folds(y, 5, seed=3)
    assert f.shape == y.shape and set(f.tolist()) == set(range(5))
    sizes = np.bincount(f, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    for c in range(4):
        per = np.bincount(f[y == c], minlength=5)
        assert per.max() - per.min() <= 1  # every class spread over the folds as evenly as its count allows
    assert np.array_equal(f, stratified_folds(y, 5, seed=3))
    assert not np.array_equal(f, stratified_folds(y, 5, seed=4))
    with pytest.raises(ValueError, match="folds must be an integer"):
        stratified_folds(y, 1)


def test_the_probe_never_predicts_an_example_it_was_fitted_on():
    """One-hot identity features: a probe that saw an example can learn its (random) label from its own
    coordinate; one that did not has nothing to go on. Out of fold, agreement with the labels is chance."""
    rng = np.random.default_rng(0)
    n, k = 400, 4
    x = np.eye(n, dtype=np.float32)
    y = rng.integers(0, k, n)
    res = cross_fitted_probe(x, y, folds=5, seed=0, l2=1e-4)
    assert abs(res.agreement(y) - 1 / k) < 0.08
    assert np.allclose(res.probs.sum(1), 1.0, atol=1e-5)
    # the control: a linear model fitted on every example predicts their labels back from these features
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression(C=100.0, max_iter=2000).fit(x, y).score(x, y) > 0.99


def test_the_probe_is_at_chance_on_random_labels_and_accurate_on_separable_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1500, 300)).astype(np.float32)
    y = rng.integers(0, 10, 1500)
    assert abs(cross_fitted_probe(x, y, folds=5, seed=0).agreement(y) - 0.1) < 0.04
    centres = rng.normal(size=(5, 20)) * 4
    yc = rng.integers(0, 5, 1000)
    xc = centres[yc] + rng.normal(size=(1000, 20))
    res = cross_fitted_probe(xc.astype(np.float16), yc, folds=5, seed=0)
    assert res.agreement(yc) > 0.97 and res.l2 in res.inner_losses
    assert np.array_equal(res.probs, cross_fitted_probe(xc.astype(np.float16), yc, folds=5, seed=0).probs)


@pytest.mark.parametrize(
    ("features", "labels", "match"),
    [
        (np.zeros((10, 3)), np.zeros(9, dtype=int), "rows"),
        (np.full((10, 3), np.nan), np.arange(10) % 2, "NaN|finite"),
        (np.zeros((10, 3)), np.zeros(10, dtype=int), "one class"),
    ],
)
def test_the_probe_refuses_bad_input(features, labels, match):
    with pytest.raises(ValueError, match=match):
        cross_fitted_probe(features, labels, folds=2)


def test_spreading_folds_over_ranks():
    assert not spread_folds(5, 1)
    assert spread_folds(2, 2) and spread_folds(5, 5) and spread_folds(5, 2)  # 3 rounds vs 2.5: within a quarter
    assert not spread_folds(5, 8) and not spread_folds(5, 4)  # idle ranks: every fold with all ranks instead


def test_alone_makes_a_world_of_one():
    with dist.alone():
        assert dist.world().size == 1 and dist.is_main()
    assert dist.owner_of(7, dist.World(1, 3)) == 1


# ---------------------------------------------------------------------------------------- in a run

_RAND = {"n": 240, "d": 48, "k": 4}


@pytest.fixture(scope="module")
def random_labels(tmp_path_factory):
    """An arrays dataset of noise inputs with random labels: anything a model predicts right beyond chance it
    has memorised."""
    rng = np.random.default_rng(0)
    n, d, k = _RAND["n"], _RAND["d"], _RAND["k"]
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    path = tmp_path_factory.mktemp("rand") / "rand.npz"
    np.savez(path, x=x, y=y, x_test=x[:40], y_test=y[:40])
    return path, y


def _memorising(path, source, **kw):
    cfg = RunConfig(dataset="arrays", dataset_params={"path": str(path)}, noise="none", learner="ce", model="mlp",
                    warmup_epochs=30, epochs=30, lr=0.1, batch_size=32, signal_source=source, **kw)  # fmt: skip
    return make_signals(cfg)


def test_a_fold_model_never_predicts_an_example_it_trained_on(random_labels):
    """The warm-up memorises random labels (in-sample agreement near 100%); the fold models' predictions of
    their held-out folds are at chance, and so are the per-epoch signals derived from them."""
    path, y = random_labels
    inside = _memorising(path, "warmup")
    assert np.mean(inside.probs.argmax(1) == y) > 0.9
    oof = _memorising(path, "folds:3:fold")
    agree = np.mean(oof.probs.argmax(1) == y)
    assert abs(agree - 1 / _RAND["k"]) < 0.1
    assert oof.correct.shape == (30, _RAND["n"]) and abs(oof.correct[-1].mean() - 1 / _RAND["k"]) < 0.1
    # the last epoch's held-out predictions are those of the finished fold models (float16 log-probabilities)
    assert np.mean(oof.correct[-1] == (oof.probs.argmax(1) == y)) > 0.98
    meta = oof.meta
    assert meta["out_of_sample"] and meta["signal_source"] == "folds:3:fold"
    assert meta["folds"]["sizes"] == np.bincount(stratified_folds(y, 3, 0), minlength=3).tolist()
    assert meta["agreement_with_given_labels"] == pytest.approx(agree)
    # the probe on the memorising warm-up's own features is out of sample for the probe only: the features
    # already separate the memorised labels, so it predicts them back (documented in docs/results.md)
    probe = _memorising(path, "probe:3")
    assert np.mean(probe.probs.argmax(1) == y) > 0.9 and probe.meta["in_sample_agreement_with_given_labels"] > 0.9


def test_fold_signals_reproduce_and_take_features_from_the_full_warmup():
    base = dict(dataset="digits", subset=300, warmup_epochs=2, epochs=4, learner="ce", model="mlp")
    a = make_signals(RunConfig(signal_source="folds:3", **base))
    b = make_signals(RunConfig(signal_source="folds:3", **base))
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.features, b.features)
    full = make_signals(RunConfig(signal_source="warmup", **base))
    assert np.array_equal(a.features, full.features)  # folds:K embeds with the warm-up on every example
    assert not np.array_equal(a.probs, full.probs)
    assert a.meta["folds"]["features"] == "a warm-up on every example"
    assert a.meta["warmup_seconds"] >= a.meta["full_warmup_seconds"] > 0


def test_ensemble_probs_are_the_mean_of_the_warmup_epochs():
    base = dict(dataset="digits", subset=300, warmup_epochs=3, epochs=4, learner="ce", model="mlp")
    sig = make_signals(RunConfig(signal_source="ensemble", extra_signals=("epoch_probs",), **base))
    mean = sig.epoch_probs.astype(np.float32).mean(0)
    assert np.allclose(sig.probs, mean / mean.sum(1, keepdims=True), atol=1e-6)
    plain = make_signals(RunConfig(signal_source="ensemble", **base))
    assert plain.epoch_probs is None and np.array_equal(plain.probs, sig.probs)


def test_probe_probs_are_the_cross_fitted_probe_of_the_features():
    base = dict(dataset="digits", subset=300, warmup_epochs=2, epochs=4, learner="ce", model="mlp", seed=4)
    sig = make_signals(RunConfig(signal_source="probe:4", **base))
    ref = cross_fitted_probe(sig.features, sig.labels, num_classes=10, folds=4, seed=4)
    assert np.array_equal(sig.probs, ref.probs) and sig.meta["probe"]["l2"] == ref.l2


def test_sources_need_a_warmup():
    with pytest.raises(ValueError, match="needs a warm-up"):
        make_signals(RunConfig(dataset="digits", subset=200, warmup_epochs=0, epochs=2, signal_source="probe:3",
                               method="prune4rel_auto"))  # fmt: skip


def test_an_interrupted_fold_warmup_resumes_to_the_same_signals(tmp_path):
    """Stop during the third fold: the finished folds' checkpoints hold their per-epoch predictions, and the
    resumed run's signals equal an uninterrupted run's."""
    base = dict(dataset="digits", subset=240, warmup_epochs=3, epochs=4, learner="ce", model="mlp",
                signal_source="folds:3:fold", fraction=0.5)  # fmt: skip
    ref = make_signals(RunConfig(**base))
    calls = {"n": 0}

    def stop(event):
        if getattr(event, "stage", "") == "warmup fold 3/3" and getattr(event, "logs", None) is not None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        make_signals(RunConfig(**base, out=str(out)), progress=stop)
    assert (out / "warmup-fold2.ckpt").exists() and not (out / "signals.npz").exists()
    sig = make_signals(RunConfig(**base, out=str(out), resume=True))
    for key in ("probs", "features", "correct", "losses", "margins"):
        assert np.array_equal(getattr(sig, key), getattr(ref, key)), key
    assert not list(out.glob("warmup-fold*.ckpt"))  # removed once signals.npz is written


def test_a_run_on_out_of_sample_signals_reports_them(tmp_path):
    res = run(RunConfig(dataset="digits", subset=300, warmup_epochs=2, epochs=3, learner="ce", model="mlp",
                        signal_source="folds:2", fraction=0.3, out=str(tmp_path / "r")))  # fmt: skip
    assert res.signals.meta["signal_source"] == "folds:2"
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["signal_source"] == "folds:2" and cfg["resolved"]["signal_source"]["from"] == "given"
    assert res.metrics["budget"] == 90


# ----------------------------------------------------------------------------------- from your own embeddings


def test_signals_from_embeddings_gives_out_of_sample_probs_that_select_takes():
    import robustprune as rp

    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 16)) * 3
    y_true = rng.integers(0, 4, 600)
    x = (centres[y_true] + rng.normal(size=(600, 16))).astype(np.float16)
    noisy = y_true.copy()
    flip = rng.random(600) < 0.3
    noisy[flip] = (noisy[flip] + 1) % 4
    sig = rp.signals_from_embeddings(x, noisy, folds=5, seed=1, true_labels=y_true)
    assert sig.features.dtype == np.float16 and sig.meta["out_of_sample"]
    ref = cross_fitted_probe(x, noisy, folds=5, seed=1)
    assert np.array_equal(sig.probs, ref.probs)
    assert np.mean(sig.probs.argmax(1) == y_true) > 0.9  # the probe sees through the flips it never fitted
    sel = rp.select("prune4rel_auto", signals=sig, fraction=0.2)
    assert sel.budget == 120 and np.mean(noisy[sel.indices] != y_true[sel.indices]) < 0.15


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.r_[np.zeros(50, int), np.ones(3, int)], "class 1 has 3 examples, fewer than the 5 folds"),
        (np.zeros(53, int), "one class only"),
    ],
)
def test_signals_from_embeddings_refuses_bad_labels(labels, match):
    import robustprune as rp

    with pytest.raises(ValueError, match=match):
        rp.signals_from_embeddings(np.random.default_rng(0).normal(size=(53, 4)), labels, folds=5)


def test_the_signals_command(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "y.npz", labels=y)
    out = tmp_path / "sig.npz"
    runner = CliRunner()
    res = runner.invoke(app, ["signals", "--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npz"),
                              "--folds", "3", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    from robustprune.signals import Signals

    sig = Signals.load(out)
    assert sig.n == 300 and np.array_equal(sig.labels, y) and sig.meta["probe"]["folds"] == 3
    assert "wrote" in res.output and "out of fold" in res.output
    again = runner.invoke(app, ["signals", "--features", str(tmp_path / "x.npy"), "--labels",
                                str(tmp_path / "y.npz"), "--out", str(out)])  # fmt: skip
    assert again.exit_code == 2 and "already exists" in again.output  # nothing already written is lost
    np.save(tmp_path / "bad.npy", np.r_[x[:-1], [[np.nan] * 8]])
    for args, match in (
        (["--features", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "x.npy")], "labels"),
        (["--features", str(tmp_path / "bad.npy"), "--labels", str(tmp_path / "y.npz")], "NaN|finite"),
        (["--features", str(tmp_path / "nope.npy"), "--labels", str(tmp_path / "y.npz")], "does not exist"),
    ):
        res = runner.invoke(app, ["signals", *args, "--out", str(tmp_path / "o.npz")])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
        assert __import__("re").search(match, lines[0]), lines[0]


def test_each_fold_fit_equals_a_logistic_regression_on_that_folds_standardised_rows():
    # the probe folds the standardisation into its weights, fits on fold-ordered views and writes its gradient
    # out; none of that may change the model: scikit-learn on each fold's own standardised rows, same objective
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    n, d, k, lam = 600, 12, 3, 0.01
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + rng.normal(size=(k, d))[y] + 5.0
    res = cross_fitted_probe(x.astype(np.float32), y, folds=4, seed=1, l2=lam)
    for f in range(4):
        tr, te = res.fold != f, res.fold == f
        mean, std = x[tr].mean(0), x[tr].std(0)
        clf = LogisticRegression(C=1.0 / (lam * tr.sum()), max_iter=5000, tol=1e-10)
        clf.fit((x[tr] - mean) / std, y[tr])
        want = clf.predict_proba((x[te] - mean) / std)
        assert np.abs(res.probs[te] - want).max() < 2e-3


def test_lambda_is_searched_on_a_sample_and_scaled_to_the_folds_size():
    rng = np.random.default_rng(4)
    n = 1500
    y = rng.integers(0, 5, n)
    x = (rng.normal(size=(5, 30))[y] * 0.7 + rng.normal(size=(n, 30))).astype(np.float32)
    whole = cross_fitted_probe(x, y, folds=5, seed=0)
    sampled = cross_fitted_probe(x, y, folds=5, seed=0, search_rows=300)
    # 1,200 rows of fold 0's training set, 300 searched: the lambda chosen on them is scaled by 300/1,200
    best = min(sampled.inner_losses, key=lambda lam: (sampled.inner_losses[lam], -lam))
    assert sampled.l2 == pytest.approx(best * 300 / 1200, rel=0.02)
    assert whole.l2 in whole.inner_losses
    assert abs(sampled.agreement(y) - whole.agreement(y)) < 0.03
