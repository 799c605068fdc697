"""Distributed training on two CPU processes (gloo): sharded epochs, gathered per-sample state, sharded
prediction, rank-0 checkpoints, and ``torchrun -m robustprune run`` against one process.

Comparisons with one process use the matching effective batch: two ranks with ``batch_size=B`` against one
process with ``batch_size=2B``. Every epoch's permutation is the same on every rank and is cut into global
batches of 2B, of which rank r takes positions r, r+2, ...; so each optimisation step sees the same examples
as the single-process step, DDP's averaged gradients are the gradients of the mean loss over those 2B
examples, and the SOP+ u/v gradients are scaled by 1/2 to match. Without random augmentation and batch-level
non-linearities (BatchNorm, SOP+'s class-balance term) the two runs then agree up to float rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import robustprune.distributed as dist
from robustprune.selection.result import Selection
from robustprune.train.batches import index_batches
from tests import _distributed_workers as W

B = 8  # per-rank batch; the single-process reference uses 2 * B


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    """Equal up to ``rtol`` of the larger tensor's scale (NaN where both are NaN)."""
    a, b = a.double(), b.double()
    if not torch.equal(a.isnan(), b.isnan()):
        return False
    a, b = a.nan_to_num(), b.nan_to_num()
    scale = max(float(b.abs().max()), 1e-30)
    return float((a - b).abs().max()) <= rtol * scale


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(W.engine_worker, args=(2, W.free_port(), str(out), B), nprocs=2, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return out, ranks


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_single_process_world_is_a_no_op():
    w = dist.world()
    assert (w.rank, w.size, w.distributed, w.is_main) == (0, 1, False, True)
    t = torch.arange(6.0).view(3, 2)
    assert dist.all_gather_cat(t) is t and dist.all_reduce(t) is t
    dist.sync_rows(t, torch.tensor([1]))
    assert torch.equal(t, torch.arange(6.0).view(3, 2))
    assert dist.block(7) == slice(0, 7)
    assert dist.on_main(lambda a: a + 1, 1) == 2 and dist.broadcast_object("x") == "x"


def test_shards_partition_each_global_batch():
    idx = torch.arange(W.N)[2:-2]
    single = index_batches(idx, 2 * B, seed=0, epoch=1)
    ranks = [index_batches(idx, B, seed=0, epoch=1, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for s, a, b in zip(single, *ranks, strict=True):
        assert sorted(torch.cat([a, b]).tolist()) == sorted(s.tolist())
    blocks = [dist.block(7, dist.World(r, 3)) for r in range(3)]
    assert [(b.start, b.stop) for b in blocks] == [(0, 2), (2, 4), (4, 7)]


@pytest.mark.parametrize("name", sorted(W.EXACT))
def test_two_ranks_match_one_process_with_the_global_batch(two_ranks, name):
    _, ranks = two_ranks
    single = W.train(name, 2 * B, W.EXACT[name])
    keys = [k for k in single if k.startswith(("state/", "param/", "rec/"))]
    assert any(k.startswith("state/") for k in keys)
    for k in keys:
        a, b = ranks[0][name][k], single[k]
        # every rank holds the whole gathered state, the same networks and the same record
        assert torch.equal(a.nan_to_num(), ranks[1][name][k].nan_to_num()), k
        if a.dtype.is_floating_point:  # float16 probabilities: one rounding step
            assert _close(a, b, 2e-3 if a.dtype == torch.float16 else 1e-5), k
        else:
            assert torch.equal(a, b), k
    assert bool(ranks[0][name]["rec/seen"][:, W.SUBSET].all())  # every subset example recorded in every epoch, once
    for h0, h1 in zip(ranks[0][name]["history"], single["history"], strict=True):
        assert h0["steps"] == h1["steps"] and abs(h0["loss"] - h1["loss"]) <= 1e-5 * abs(h1["loss"])


def test_sop_state_moved_and_is_gathered_from_both_ranks(two_ranks):
    _, ranks = two_ranks
    u0 = W.learner("sop", B, **W.EXACT["sop"]).u.cpu()
    u = ranks[0]["sop"]["state/u"]
    changed = (u != u0).view(-1)
    assert changed[W.SUBSET].all() and not changed[[0, 1, W.N - 2, W.N - 1]].any()


def test_dividemix_split_and_networks_agree_across_ranks(two_ranks):
    _, ranks = two_ranks
    a, b = ranks[0]["dividemix"], ranks[1]["dividemix"]
    for k in a:
        if k.startswith(("state/", "param/", "rec/")):
            assert torch.equal(a[k].nan_to_num(), b[k].nan_to_num()), k  # BatchNorm statistics averaged
    prob = a["state/clean_prob"]
    assert torch.isfinite(prob[:, W.SUBSET]).all() and prob[:, [0, 1]].isnan().all()
    assert [h.get("labeled_fraction") is not None for h in a["history"]] == [False, True, True]


def test_sharded_prediction_is_gathered_in_example_order(two_ranks):
    _, ranks = two_ranks
    p = ranks[0]["predict"]
    assert p["sharded"].shape == (W.N, W.K) and p["features"].shape == (W.N, 16)
    assert torch.allclose(p["sharded"], p["local"], atol=1e-6)
    assert torch.equal(p["sharded"], ranks[1]["predict"]["sharded"])


def test_collectives_gather_in_rank_order_and_carry_rank0_errors(two_ranks):
    _, ranks = two_ranks
    for rank, res in enumerate(ranks):
        assert res["world"] == (rank, 2)
        assert res["ragged"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
        assert res["empty"] == (0, 3) and res["flags"].tolist() == [True, True, False, True]
        # gather_cat: the whole on rank 0 only, in rank order; an empty tensor of the same columns elsewhere
        assert res["to_main"].tolist() == ([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]] if rank == 0 else [])
        assert res["to_main"].shape[1:] == (2,)
        assert res["main_only"] == ("main" if rank == 0 else None)
        assert res["error"] == "refused on rank 0"


def test_checkpoint_from_two_ranks_resumes_in_one_process(two_ranks):
    out, _ = two_ranks
    ckpt = out / "sop.ckpt"
    assert ckpt.exists() and not list(out.glob(".sop.ckpt.*"))
    one = W.learner("sop", B, 2, **W.EXACT["sop"])
    res = one.fit(W.tabular(), W.SUBSET, checkpoint=ckpt)
    assert res.resumed_from == 1 and len(res.history) == 2
    assert np.isfinite(one.u.numpy()).all()


def test_shared_graph_build_equals_one_process(two_ranks):
    """With a SharedBuild the two ranks split the tiles; rank 0 gets the one-process graph bit for bit and
    the same Prune4ReL picks; rank 1 hands off; an edge-budget overrun is the same error on both ranks; a
    second build with a spent SharedBuild is rank 0's alone."""
    import robustprune as rp
    from robustprune.selection.core.graph import rescaled_cosine_graph, upper_tiles

    _, ranks = two_ranks
    x, probs, labels = W.graph_inputs()
    ref = rescaled_cosine_graph(x, 0.95, device="cpu", block_size=512)
    assert len(upper_tiles(3000, 512)) == 21 and ref.nnz > 3000
    indptr, indices, weights, backend = ranks[0]["shared_graph"]
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_array_equal(weights, ref.weights)
    assert backend == "blocked (2 ranks)" and ranks[1]["shared_graph"] == "handed off"
    assert ranks[0]["second_build"] == "blocked" and "second_build" not in ranks[1]
    want = rp.select("prune4rel", probs=probs, features=x, labels=labels, budget=600, tau=0.95, gain="exact",
                     block_size=512, device="cpu")  # fmt: skip
    picks, used = ranks[0]["shared_select"]
    np.testing.assert_array_equal(picks, want.indices)
    assert used == "blocked (2 ranks)" and ranks[1]["shared_select"] == "handed off"
    for r in ranks:
        assert "max_edges=1000" in r["shared_overflow"]


# ------------------------------------------------------------------------------ torchrun, end to end

#: digits, 40% symmetric noise, SOP+ on the MLP, prune4rel_auto keeping half: long enough to be past the
#: chaotic first epochs (test accuracy ~0.85), a few seconds per run
RUN = ["run", "--dataset", "digits", "--subset", "600", "--warmup-epochs", "10", "--epochs", "20", "--learner", "sop",
       "--model", "mlp", "--device", "cpu", "--fraction", "0.5"]  # fmt: skip


def _launch(args: list[str], nproc: int = 1, *, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m robustprune ARGS`` (one process) or the same under ``torchrun --nproc_per_node=NPROC``,
    one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "robustprune"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                    "-m", "robustprune"]  # fmt: skip
    proc = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parents[1])  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _robustprune(out, batch_size: int, nproc: int = 1) -> subprocess.CompletedProcess:
    return _launch([*RUN, "--batch-size", str(batch_size), "--out", str(out)], nproc)


def test_torchrun_two_ranks_match_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m robustprune run`` against ``python -m robustprune run`` with the same
    effective batch (2 x 16 against 32).

    Each step sees the same examples in both runs (same permutation, same global batches: the step counts must
    be equal), but the random augmentation draws differ (each rank has its own stream and draws for its half of
    the batch), BatchNorm normalises over 16 rows instead of 32, and SOP+'s class-balance term is taken per rank.
    So the runs are the same algorithm on differently drawn noise, and the tolerance is the spread of a change
    of training seed with the same noisy labels (measured on this configuration, 5 seeds: selected subsets
    overlap 80-82%, test accuracies differ by up to 7.0 points, 2.9 on average). Required: overlap >= 70% (a
    random half overlaps 50% +- 3%) and |test accuracy difference| <= 7 points. Measured on a 2-core CPU: 78.7%
    and 2.5 points.
    """
    _robustprune(tmp_path / "one", 32)
    two = _robustprune(tmp_path / "two", 16, nproc=2)
    runs = {}
    for name in ("one", "two"):
        d = tmp_path / name
        metrics = json.loads((d / "metrics.json").read_text())
        runs[name] = metrics, set(Selection.load(d / "selection.npz").indices.tolist())
    (m1, s1), (m2, s2) = runs["one"], runs["two"]
    assert [h["steps"] for h in m1["history"]] == [h["steps"] for h in m2["history"]]
    assert len(s1) == len(s2) == 300
    assert len(s1 & s2) / len(s1) >= 0.70
    # the two ranks built Prune4ReL's graph together
    assert Selection.load(tmp_path / "two" / "selection.npz").params["graph_backend"] == "blocked (2 ranks)"
    assert Selection.load(tmp_path / "one" / "selection.npz").params["graph_backend"] == "blocked"
    assert abs(m1["test_accuracy"] - m2["test_accuracy"]) <= 0.07
    # rank 0 alone wrote the run directory and printed
    log = (tmp_path / "two" / "run.log").read_text().splitlines()
    assert sum("start robustprune" in line for line in log) == 1
    assert sum(" train epoch " in line for line in log) == 20
    assert two.stdout.count("re-labeling accuracy") == 1  # the summary, once
    assert two.stderr.count("re-labeling accuracy") == 1  # the evaluation stage's line, once
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


AL = ["al", "--dataset", "digits", "--subset", "400", "--learner", "ce", "--model", "mlp", "--device", "cpu",
      "--epochs", "4", "--initial", "40", "--n-query", "20", "--rounds", "2"]  # fmt: skip


@pytest.mark.parametrize("method", ["forgetting", "prune4rel_auto"])
def test_torchrun_active_learning_loop(tmp_path, method):
    """``torchrun --nproc_per_node=2 -m robustprune al`` with a training-dynamics method: both ranks train their
    shards, predict their blocks (the per-epoch passes included) and take rank 0's queries; rank 0 alone writes
    and prints. The loop is compared with one process for what must be equal (the initial draw, the files, the
    pool sizes); its accuracy is not, because on 40-80 examples the augmentation draws and per-rank BatchNorm
    move test accuracy by more than any useful tolerance (the training equivalence itself is tested above)."""
    runs = {}
    for name, nproc, bs in (("one", 1, 32), ("two", 2, 16)):
        proc = _launch([*AL, "--method", method, "--batch-size", str(bs), "--out", str(tmp_path / name)], nproc)
        assert proc.stdout.count("final test accuracy") == 1, proc.stdout
        rows = json.loads((tmp_path / name / "rounds.json").read_text())["rounds"]
        with np.load(tmp_path / name / "pool.npz") as z:
            runs[name] = rows, z["indices"], z["round"]
    (r1, p1, a1), (r2, p2, a2) = runs["one"], runs["two"]
    assert [r["labelled"] for r in r1] == [r["labelled"] for r in r2] == [40, 60, 80]
    assert np.unique(p2).size == 80 and np.bincount(a2).tolist() == [40, 20, 20]
    np.testing.assert_array_equal(p1[a1 == 0], p2[a2 == 0])  # the initial draw does not depend on the world
    if method == "forgetting":  # per-epoch passes, sharded
        assert all(r["dynamics_epochs"] == 4 for r in r2[:-1])
    else:  # the two ranks built each query's graph together
        assert all(r["graph_backend"] == "blocked (2 ranks)" for r in r2[:-1])
        assert all(r["graph_backend"] == "blocked" for r in r1[:-1])
    log = (tmp_path / "two" / "al.log").read_text().splitlines()
    assert sum("round " in line and "labelled" in line for line in log) == 3, log
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


BENCH_TOML = """\
datasets = ["digits"]
noises = ["sym:0.4"]
learners = ["ce"]
methods = ["uniform", "prune4rel"]
fractions = [0.5]
seeds = [0]

[run]
subset = 300
test_subset = 200
warmup_epochs = 2
epochs = 2
model = "mlp"
device = "cpu"
"""


def test_torchrun_bench_sweep(tmp_path):
    """``torchrun --nproc_per_node=2 -m robustprune bench``: the ranks run each warm-up and cell together
    (Prune4ReL's graph built by both), rank 0 alone writes the sweep directory and the report; a rerun
    reuses every cell on every rank; --jobs is refused under torchrun."""
    (tmp_path / "grid.toml").write_text(BENCH_TOML)
    args = ["bench", "--config", str(tmp_path / "grid.toml"), "--out", str(tmp_path / "s")]

    def launch(*extra):
        return _launch([*args, *extra], 2, check=False)

    proc = launch()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "2 cells computed, 0 reused, 0 failed" in proc.stdout
    meta = json.loads((tmp_path / "s" / "bench.json").read_text())
    assert meta["world_size"] == 2 and not meta["failed"]
    assert (tmp_path / "s" / "report.md").exists()
    cells = sorted((tmp_path / "s" / "cells").glob("*/*/metrics.json"))
    assert len(cells) == 2
    p4r = next(p for p in cells if p.parent.name.startswith("prune4rel"))
    assert Selection.load(p4r.parent / "selection.npz").params["graph_backend"] == "blocked (2 ranks)"
    again = launch()
    assert again.returncode == 0 and "0 cells computed, 2 reused" in again.stdout, again.stderr[-2000:]
    refused = launch("--jobs", "2")
    assert refused.returncode != 0 and "drop --jobs" in refused.stderr + refused.stdout


def test_torchrun_deals_fold_warmups_to_the_ranks(tmp_path):
    """``--signal-source folds:2:fold`` under torchrun with 2 processes: each rank trains one fold model alone
    (no DDP), and the exchanged out-of-fold signals equal one process's bit for bit (same device, one thread)."""
    from robustprune.signals import Signals

    args = ["run", "--dataset", "digits", "--subset", "300", "--warmup-epochs", "3", "--epochs", "3", "--learner",
            "ce", "--model", "mlp", "--device", "cpu", "--fraction", "0.3", "--batch-size", "32",
            "--signal-source", "folds:2:fold"]  # fmt: skip
    _launch([*args, "--out", str(tmp_path / "one")])
    _launch([*args, "--out", str(tmp_path / "two")], nproc=2)
    one, two = (Signals.load(tmp_path / d / "signals.npz") for d in ("one", "two"))
    for key in ("probs", "features", "correct", "losses", "margins"):
        assert np.array_equal(getattr(one, key), getattr(two, key)), key
    assert one.meta["folds"]["ranks"] == "one process" and two.meta["folds"]["ranks"] == "dealt to ranks"
    assert one.meta["folds"]["test_accuracy"] == two.meta["folds"]["test_accuracy"]
    assert not list((tmp_path / "two").glob("warmup-fold*.ckpt"))
