"""Evaluation functions, run configs and the end-to-end pipeline (tiny digits runs, a few seconds each)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import robustprune as rp
from robustprune import evaluate as ev
from robustprune.data import FASHION_MNIST_SYSTEM_DIR
from robustprune.pipeline import run
from robustprune.protocols import PROTOCOLS, protocol_for
from robustprune.runconfig import RunConfig, resolve_config
from robustprune.rundir import StageDone
from robustprune.selection.result import load_indices

TINY = dict(subset=300, warmup_epochs=2, epochs=3)
METRIC_KEYS = {
    "test_accuracy", "relabel_accuracy", "relabel_accuracy_all", "subset_noise_rate", "noise_rate",
    "fraction", "budget", "method", "learner", "timings", "class_counts", "class_counts_true", "history",
    "best_epoch", "test_accuracy_at_best_val", "warmup_test_accuracy", "num_train", "num_test",
}  # fmt: skip


# ------------------------------------------------------------------------------------------ evaluate


def test_accuracy_from_indices_and_probs():
    y = np.array([0, 1, 2, 1])
    assert ev.accuracy(np.array([0, 1, 1, 1]), y) == 0.75
    probs = np.eye(3)[[0, 2, 2, 0]]
    assert ev.accuracy(probs, y) == 0.5
    assert ev.accuracy(torch.tensor(probs), torch.tensor(y), indices=[1, 2]) == 0.5
    with pytest.raises(ValueError, match="zero examples"):
        ev.accuracy(np.array([0]), np.array([0]), indices=np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="4 entries"):
        ev.accuracy(np.zeros(3, dtype=int), y)


def test_relabel_accuracy_noise_rate_and_counts():
    true = np.array([0, 0, 1, 1, 2, 2])
    given = np.array([0, 1, 1, 0, 2, 2])  # examples 1 and 3 are noisy
    pred = np.array([0, 0, 1, 1, 1, 2])  # the learner fixes 1 and 3 but gets 4 wrong
    sel = np.array([1, 3, 4])
    assert ev.relabel_accuracy(pred, true, sel) == pytest.approx(2 / 3)
    assert ev.relabel_accuracy(pred, true) == pytest.approx(5 / 6)
    assert ev.noise_rate(given, true, sel) == pytest.approx(2 / 3)
    assert ev.noise_rate(given, true) == pytest.approx(1 / 3)
    mask = np.zeros(6, dtype=bool)
    mask[sel] = True
    assert ev.noise_rate(given, true, mask) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(ev.class_counts(given, sel, num_classes=4), [1, 1, 1, 0])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        ev.noise_rate(given, true, [6])
    rep = ev.subset_report(sel, given, true_labels=true, predictions=np.eye(3)[pred], num_classes=3)
    assert rep["budget"] == 3 and rep["fraction"] == 0.5
    assert rep["relabel_accuracy"] == pytest.approx(2 / 3) and rep["relabel_accuracy_all"] == pytest.approx(5 / 6)
    assert rep["class_counts"] == [1, 1, 1] and rep["class_counts_true"] == [1, 1, 1]
    wrong = given[sel] != true[sel]
    assert rep["class_noise_rates"] == [float(wrong[given[sel] == k].mean()) for k in range(3)]
    assert ev.subset_report(sel, given, true_labels=true, num_classes=4)["class_noise_rates"][3] is None
    bare = ev.subset_report(sel, given)
    assert bare["noise_rate"] is None and bare["relabel_accuracy"] is None and bare["class_noise_rates"] is None


def test_history_summary_picks_best_epoch_on_validation_only():
    hist = [
        {"epoch": 1, "test_acc": 0.5, "val_acc": 0.4},
        {"epoch": 2, "test_acc": 0.9, "val_acc": 0.6},  # best on test, not on validation
        {"epoch": 3, "test_acc": 0.7, "val_acc": 0.8},
        {"epoch": 4, "test_acc": 0.6, "val_acc": 0.8},  # tie: the earliest wins
        {"epoch": 5, "test_acc": 0.65, "val_acc": 0.75},
    ]
    s = ev.summarize_history(hist)
    assert s["test_accuracy"] == 0.65 and s["best_epoch"] == 3
    assert s["val_accuracy"] == 0.8 and s["test_accuracy_at_best_val"] == 0.7
    assert s["val_accuracy_last"] == 0.75  # the last epoch's, beside the last epoch's test accuracy
    s = ev.summarize_history([{"epoch": 1, "test_acc": 0.3}])
    assert s["test_accuracy"] == 0.3 and s["best_epoch"] is None and s["test_accuracy_at_best_val"] is None
    assert s["val_accuracy_last"] is None
    assert ev.best_epoch([]) is None


# ------------------------------------------------------------------------------------------ config


def test_protocol_table_follows_the_spec():
    c10 = resolve_config(RunConfig(dataset="cifar10", method="prune4rel"))
    assert (c10.model, c10.epochs, c10.warmup_epochs, c10.lr, c10.batch_size) == (
        "preact_resnet18",
        300,
        10,
        0.02,
        128,
    )
    assert c10.learner_params == {"rc": 0.9, "rb": 0.1, "lr_u": 10.0, "lr_v": 100.0}
    assert c10.params == {"tau": 0.975, "eta": 1.0}
    c100 = resolve_config(RunConfig(dataset="cifar-100n", method="prune4rel", params={"eta": 2.0}))
    assert c100.dataset == "cifar100" and c100.warmup_epochs == 30 and c100.learner_params["lr_u"] == 1.0
    assert c100.params == {"tau": 0.95, "eta": 2.0}
    # Fashion-MNIST: small_cnn, but lenet when the run is on a CPU and no model was asked for
    assert resolve_config(RunConfig(dataset="fmnist", device="cpu")).model == "lenet"
    assert resolve_config(RunConfig(dataset="fmnist", device="cpu", model="small_cnn")).model == "small_cnn"
    assert protocol_for("fmnist").model == "small_cnn" and protocol_for("mnist").cpu_model == "lenet"
    assert resolve_config(RunConfig(dataset="digits", device="cpu")).model == "mlp"
    d = resolve_config(RunConfig(learner_params={"lr_u": 1}, epochs=4))
    assert d.model == "mlp" and d.epochs == 4 and d.warmup_epochs == 4 and d.learner_params["lr_u"] == 1
    assert d.noise_seed == 0 and d.device == "cpu" and set(PROTOCOLS) >= {"cifar10", "cifar100", "digits"}
    assert resolve_config(d) == d  # resolving is idempotent


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(fraction=0), r"fraction must be in \(0, 1\]"),
        (dict(fraction=1.5), "fraction"),
        (dict(val_fraction=1.0), "val_fraction"),
        (dict(warmup_epochs=5, epochs=3), "must not exceed epochs"),
        (dict(confidence_pass="weak"), "confidence_pass"),
        (dict(force=True, resume=True), "at most one"),
        (dict(subset=1), "subset"),
    ],
)
def test_bad_config_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dataset="nope"), "unknown dataset 'nope'"),
        (dict(learner="nope"), "unknown learner 'nope'"),
        (dict(model="nope"), "unknown model 'nope'"),
        (dict(method="nope"), "nope"),
        (dict(noise="sym"), "noise"),
        (dict(params={"bogus": 1}), "no option 'bogus'"),
        (dict(learner_params={"bogus": 1}), "no option 'bogus'"),
        (dict(learner_params={"rc": -1.0}), "rc must be non-negative"),
        (dict(device="cuda:99"), "cuda"),
        (dict(dataset_params={"bogus": 1}), "dataset 'digits' has no option 'bogus'"),
    ],
)
def test_bad_names_fail_before_any_work(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        run(RunConfig(out=str(tmp_path / "r"), **kwargs))
    assert not (tmp_path / "r").exists()


def test_load_indices_formats_and_errors(tmp_path):
    np.save(tmp_path / "i.npy", np.array([4, 0, 2]))
    assert load_indices(tmp_path / "i.npy", 5)[0].tolist() == [4, 0, 2]
    mask = np.zeros(5, dtype=bool)
    mask[[1, 3]] = True
    np.save(tmp_path / "m.npy", mask)
    assert load_indices(tmp_path / "m.npy", 5)[0].tolist() == [1, 3]
    (tmp_path / "i.txt").write_text("3\n1, 2\n")
    assert load_indices(tmp_path / "i.txt", 5)[0].tolist() == [3, 1, 2]
    sel = rp.select("uniform", labels=np.arange(5) % 2, budget=2, seed=0)
    sel.save(tmp_path / "s.npz")
    idx, method = load_indices(tmp_path / "s.npz", 5)
    assert method == "uniform" and idx.tolist() == sel.indices.tolist()
    with pytest.raises(ValueError, match="made from 5 examples"):
        load_indices(tmp_path / "s.npz", 6)
    for text, match in (("1 7", r"index 7 outside \[0, 5\)"), ("1 1", "duplicate"), ("", "no indices"),
                        ("a b", "integer")):  # fmt: skip
        (tmp_path / "bad.txt").write_text(text)
        with pytest.raises(ValueError, match=match):
            load_indices(tmp_path / "bad.txt", 5)
    with pytest.raises(ValueError, match="does not exist"):
        load_indices(tmp_path / "missing.npy", 5)


# ------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    events = []
    result = run(RunConfig(out=str(out), **TINY), progress=events.append)
    return result, out, events


def test_run_writes_artifacts_and_metrics(tiny_run):
    result, out, events = tiny_run
    names = {"config.json", "signals.npz", "selection.npz", "selection.npz.json", "metrics.json", "run.log"}
    assert names <= set(os.listdir(out)) and not [p for p in os.listdir(out) if p.endswith((".ckpt", ".tmp"))]
    m = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(m) and m == result.metrics
    assert m["method"] == "prune4rel_auto" and m["learner"] == "sop" and m["fraction"] == 0.5 and m["budget"] == 150
    for key in ("test_accuracy", "relabel_accuracy", "relabel_accuracy_all", "subset_noise_rate"):
        assert 0.0 <= m[key] <= 1.0
    assert m["noise_rate"] == pytest.approx(0.4, abs=0.01) and sum(m["class_counts"]) == 150
    assert len(m["history"]) == 3 and m["best_epoch"] is None
    assert {"warmup", "signals", "selection", "train", "evaluate", "total"} <= set(m["timings"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "mlp" and cfg["method"] == "prune4rel_auto" and cfg["epochs"] == 3
    assert m["selection"]["target_degree"] == 8.0 and 0 <= m["selection"]["tau"] <= 1  # 4 N / budget
    stages = [e.stage for e in events if isinstance(e, StageDone)]
    assert stages == ["data", "warmup", "signals", "select", "train", "evaluate"]
    assert any(e.stage == "train" and e.logs is None for e in events)  # per-step events
    assert "train epoch 3/3" in (out / "run.log").read_text()


def test_signals_bundle_is_reusable_by_select(tiny_run):
    result, out, _ = tiny_run
    sig = rp.Signals.load(out / "signals.npz")
    assert sig.n == 300 and sig.probs.shape == (300, 10) and sig.correct.shape == (2, 300)
    assert sig.true_labels is not None and sig.noise_rate() == pytest.approx(0.4, abs=0.01)
    assert sig.meta["learner"] == "sop" and sig.meta["warmup_epochs"] == 2
    again = rp.select("prune4rel_auto", signals=sig, fraction=0.5, seed=0)
    np.testing.assert_array_equal(again.indices, rp.Selection.load(out / "selection.npz").indices)
    assert rp.select("forgetting", signals=sig, fraction=0.2).budget == 60


def test_finished_run_is_not_overwritten(tiny_run):
    _, out, _ = tiny_run
    before = (out / "metrics.json").stat().st_mtime_ns
    with pytest.raises(ValueError, match="finished run.*--force"):
        run(RunConfig(out=str(out), **TINY))
    res = run(RunConfig(out=str(out), resume=True, **TINY))  # nothing left to do: read back
    assert res.metrics["test_accuracy"] == tiny_run[0].metrics["test_accuracy"]
    assert (out / "metrics.json").stat().st_mtime_ns == before


class Interrupt(Exception):
    pass


def test_resume_reuses_finished_stages_and_matches_uninterrupted(tiny_run, tmp_path):
    out = tmp_path / "r"

    def stop_in_training(info):
        if info.stage == "train" and info.logs is not None and info.epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(RunConfig(out=str(out), **TINY), progress=stop_in_training)
    assert (out / "train.ckpt").exists() and not (out / "metrics.json").exists()
    stamps = {n: (out / n).stat().st_mtime_ns for n in ("signals.npz", "selection.npz")}

    with pytest.raises(ValueError, match="unfinished run.*--resume"):
        run(RunConfig(out=str(out), **TINY))
    with pytest.raises(ValueError, match="differs in noise_seed, seed"):
        run(RunConfig(out=str(out), resume=True, seed=1, **TINY))

    events = []
    res = run(RunConfig(out=str(out), resume=True, **TINY), progress=events.append)
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps
    assert not any(e.stage == "warmup" for e in events if not isinstance(e, StageDone))  # no warm-up epoch
    assert all(e.reused for e in events if isinstance(e, StageDone) and e.stage == "warmup")
    epochs = [e for e in events if not isinstance(e, StageDone) and e.stage == "train" and e.logs]
    assert [e.epoch for e in epochs if "loss" in e.logs] == [2]
    assert set(res.reused) == {"signals", "selection"} and "resumed after epoch 2" in (out / "run.log").read_text()
    ref = tiny_run[0].metrics
    for key in ("test_accuracy", "relabel_accuracy", "relabel_accuracy_all", "subset_noise_rate"):
        assert res.metrics[key] == ref[key], key
    assert [h["loss"] for h in res.metrics["history"]] == [h["loss"] for h in ref["history"]]
    assert not (out / "train.ckpt").exists()

    forced = run(RunConfig(out=str(out), force=True, **TINY))  # starts over: everything recomputed
    assert forced.reused == () and (out / "signals.npz").stat().st_mtime_ns != stamps["signals.npz"]


def test_selection_file_validation_split_and_strong_pass(tiny_run, tmp_path):
    idx = np.arange(0, 240, 3)
    np.savetxt(tmp_path / "idx.txt", idx, fmt="%d")
    res = run(RunConfig(selection=str(tmp_path / "idx.txt"), val_fraction=0.2, learner="ce", **TINY))
    m = res.metrics
    assert res.signals is None and m["method"] == "file" and m["budget"] == 80 and m["num_train"] == 240
    assert m["num_val"] == 60 and m["best_epoch"] in (1, 2, 3) and m["test_accuracy_at_best_val"] is not None
    assert res.config.fraction is None and m["timings"]["warmup"] == 0.0
    np.testing.assert_array_equal(res.selection.indices, idx)
    with pytest.raises(ValueError, match=r"index 280 outside \[0, 240\)"):
        np.savetxt(tmp_path / "bad.txt", [1, 280], fmt="%d")
        run(RunConfig(selection=str(tmp_path / "bad.txt"), val_fraction=0.2, **TINY))

    strong = run(RunConfig(confidence_pass="strong", learner="ce", method="uncertainty", **TINY))
    clean = run(RunConfig(learner="ce", method="uncertainty", **TINY))
    assert strong.signals.meta["confidence_pass"] == "strong"
    assert not np.allclose(strong.signals.probs, clean.signals.probs)  # augmented inputs
    np.testing.assert_array_equal(strong.signals.correct, clean.signals.correct)  # same warm-up


@pytest.mark.parametrize("learner", ["dividemix", "elr"])
def test_every_learner_runs_end_to_end(learner):
    res = run(RunConfig(learner=learner, subset=200, warmup_epochs=1, epochs=2, fraction=0.6))
    m = res.metrics
    assert m["learner"] == learner and m["budget"] == 120 and 0 <= m["relabel_accuracy"] <= 1
    assert res.signals.probs.shape == (200, 10) and len(m["history"]) == 2


@pytest.mark.skipif(
    not Path(FASHION_MNIST_SYSTEM_DIR).is_dir(), reason="Fashion-MNIST is not installed in the system folder"
)
def test_real_fashion_mnist_subset(tmp_path):
    res = run(RunConfig(dataset="fashion-mnist", subset=500, test_subset=500, warmup_epochs=1, epochs=2,
                        model="mlp", learner="ce", fraction=0.4, out=str(tmp_path / "f")))  # fmt: skip
    m = res.metrics
    assert m["dataset"] == "fashion-mnist" and m["num_train"] == 500 and m["num_test"] == 500
    assert m["budget"] == 200 and 0 <= m["test_accuracy"] <= 1 and m["noise_rate"] == pytest.approx(0.4)
    assert rp.Signals.load(tmp_path / "f" / "signals.npz").features.shape[0] == 500


@pytest.mark.parametrize("method", ["full", "uniform"])
def test_no_warmup_with_a_labels_only_method_skips_the_prediction_pass(tmp_path, method):
    fraction = 1.0 if method == "full" else 0.5
    res = run(
        RunConfig(method=method, fraction=fraction, subset=300, warmup_epochs=0, epochs=2, out=str(tmp_path / "r"))
    )
    sig = rp.Signals.load(tmp_path / "r" / "signals.npz")
    assert sig.probs is None and sig.features is None  # nothing from an untrained network
    np.testing.assert_array_equal(sig.labels, res.signals.labels)
    assert res.metrics["warmup_test_accuracy"] is None
    assert res.metrics["timings"]["signals"] == 0.0
    assert res.metrics["budget"] == round(fraction * 300)
    # with a warm-up the same method still gets real predictions
    res2 = run(RunConfig(method=method, fraction=fraction, subset=300, warmup_epochs=1, epochs=2))
    assert res2.signals.probs is not None and res2.metrics["warmup_test_accuracy"] is not None


def test_resume_after_moving_the_signals_file_compares_content_not_path(tiny_run, tmp_path):
    _, src, _ = tiny_run
    first = tmp_path / "a" / "signals.npz"
    first.parent.mkdir()
    shutil.copy(src / "signals.npz", first)
    out = tmp_path / "cell"
    cfg = dict(TINY, method="uniform", fraction=0.3)
    done = run(RunConfig(out=str(out), signals=str(first), **cfg))
    stored = json.loads((out / "config.json").read_text())
    assert set(stored["inputs_sha256"]) == {"signals"}
    (out / "metrics.json").unlink()  # as if the run had been interrupted during training

    moved = tmp_path / "b" / "signals.npz"  # the same bytes under another path (a moved sweep)
    moved.parent.mkdir()
    shutil.move(first, moved)
    again = run(RunConfig(out=str(out), signals=str(moved), resume=True, **cfg))
    assert again.metrics["test_accuracy"] == done.metrics["test_accuracy"]

    # other content under the old name is still refused
    other = rp.Signals.load(moved)
    other.probs[:] = np.roll(other.probs, 1, axis=1)
    other.save(first)
    (out / "metrics.json").unlink()
    with pytest.raises(ValueError, match="cannot resume .*differs in signals"):
        run(RunConfig(out=str(out), signals=str(first), resume=True, **cfg))


def test_metrics_summarise_the_learners_per_example_state_by_label_correctness():
    # SOP+ must learn to add mass (u^2) to wrong given labels, not to right ones
    sop = run(RunConfig(learner="sop", method="uniform", fraction=1.0, warmup_epochs=0, epochs=30))
    u = sop.metrics["sample_state"]["u"]
    assert set(u) == {"all", "wrong_label", "right_label"}
    assert u["wrong_label"] > 0.5 > 0.1 > u["right_label"]
    assert set(sop.metrics["sample_state"]) == {"u", "v"}
    # DivideMix's clean posterior must be lower on wrong labels; CE keeps no per-example state
    dm = run(RunConfig(learner="dividemix", subset=400, method="uniform", fraction=1.0, warmup_epochs=2, epochs=4))
    cp = dm.metrics["sample_state"]["clean_prob"]
    assert 0.0 <= cp["wrong_label"] < cp["right_label"] <= 1.0
    ce = run(RunConfig(learner="ce", subset=300, method="uniform", fraction=0.5, warmup_epochs=0, epochs=1))
    assert ce.metrics["sample_state"] == {}


def test_a_run_resolves_its_config_once_and_reads_tabular_arrays_from_metadata(tmp_path, monkeypatch):
    import robustprune.pipeline as pipeline_mod

    rng = np.random.default_rng(0)
    rows, images = tmp_path / "rows.npz", tmp_path / "images.npz"
    y = np.repeat(np.arange(3), 40)
    np.savez(rows, x=rng.normal(size=(120, 6)).astype(np.float32), y=y, x_test=np.ones((30, 6), np.float32),
             y_test=np.repeat(np.arange(3), 10))  # fmt: skip
    np.savez(images, x=rng.integers(0, 255, size=(120, 1, 8, 8)).astype(np.uint8), y=y)
    # the default model comes from the file's header: no array is loaded to resolve a config
    assert resolve_config(RunConfig(dataset="arrays", dataset_params={"path": str(rows)})).model == "mlp"
    assert resolve_config(RunConfig(dataset="arrays", dataset_params={"path": str(images)})).model == "small_cnn"
    assert resolve_config(RunConfig(dataset="arrays", dataset_params={"path": "missing.npz"})).model == "small_cnn"

    calls = []
    real = pipeline_mod.resolve
    monkeypatch.setattr(pipeline_mod, "resolve", lambda c, given=None: calls.append(c) or real(c, given))
    res = run(RunConfig(dataset="arrays", dataset_params={"path": str(rows)}, method="uniform", warmup_epochs=1,
                        epochs=1, out=str(tmp_path / "r")))  # fmt: skip
    assert len(calls) == 1 and res.metrics["model"] == "mlp"


def test_weighted_methods_train_with_their_weights_unless_turned_off(tiny_run, tmp_path):
    _, first, _ = tiny_run
    cfg = {**TINY, "method": "craig", "signals": str(first / "signals.npz")}
    weighted = run(RunConfig(out=str(tmp_path / "w"), **cfg))
    sel = rp.Selection.load(tmp_path / "w" / "selection.npz")
    assert sel.weights is not None and sel.weights.shape == (150,)
    assert weighted.metrics["selection"]["weights"]["mean"] == pytest.approx(1.0)
    plain = run(RunConfig(out=str(tmp_path / "p"), params={"weighted": False}, **cfg))
    assert rp.Selection.load(tmp_path / "p" / "selection.npz").weights is None
    assert "weights" not in plain.metrics["selection"]
    np.testing.assert_array_equal(rp.Selection.load(tmp_path / "p" / "selection.npz").indices, sel.indices)
    assert [h["loss"] for h in weighted.metrics["history"]] != [h["loss"] for h in plain.metrics["history"]]
    given = run(RunConfig(out=str(tmp_path / "g"), selection=str(tmp_path / "w" / "selection.npz"), **TINY))
    assert given.metrics["selection"]["weights"] == weighted.metrics["selection"]["weights"]
    assert [h["loss"] for h in given.metrics["history"]] == [h["loss"] for h in weighted.metrics["history"]]
    # the documented way to train on a weighted file without its weights (it used to be dropped silently)
    wfile = str(tmp_path / "w" / "selection.npz")
    unweighted = run(RunConfig(out=str(tmp_path / "u"), selection=wfile, params={"weighted": False}, **TINY))
    assert "weights" not in unweighted.metrics["selection"]
    assert [h["loss"] for h in unweighted.metrics["history"]] == [h["loss"] for h in plain.metrics["history"]]
    with pytest.raises(ValueError, match="a selection file takes only the option weighted.*not 'tau'"):
        run(RunConfig(selection=wfile, params={"tau": 0.5}, **TINY))
