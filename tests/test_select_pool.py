"""select() with a candidate pool and a starting set (active learning): the contract for every method, clear
errors, and plain-loop references for the methods that honour the starting set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robustprune as rp
from robustprune.selection.core.graph import rescaled_cosine_graph
from robustprune.selection.registry import register, unregister
from robustprune.selection.result import MethodOutput
from tests.reference_prune4rel import released_prune4rel
from tests.test_contract import N, rich_signals

SIG = rich_signals()
METHODS = rp.list_methods()
HONOURING = {"kcenter_greedy", "prune4rel", "prune4rel_auto", "submodular", "cal"}


def split(seed: int = 0, n_start: int = 40, n_cand: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """A random starting set and a disjoint candidate pool (some examples are in neither)."""
    perm = np.random.default_rng(seed).permutation(N)
    return perm[:n_start], perm[n_start : n_start + n_cand]


def _tanh32(x: np.ndarray) -> np.ndarray:
    return torch.tanh(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


# ---------------------------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("balanced", [False, True])
def test_picks_are_new_candidates_exact_budget_unique(method, balanced):
    info = rp.get_method(method)
    if balanced and info.balance == "none":
        pytest.skip("no class balance")
    start, cand = split()
    sel = rp.select(method, signals=SIG, budget=30, start=start, candidates=cand, class_balanced=balanced, seed=2)
    idx = sel.indices
    assert idx.dtype == np.int64 and idx.shape == (30,)
    assert np.unique(idx).size == 30
    assert np.isin(idx, cand).all(), "only candidates may be returned"
    assert not np.isin(idx, start).any(), "a starting-set member is never returned"
    assert sel.n == N and sel.params["budget"] == 30
    assert sel.params["n_candidates"] == cand.size and sel.params["n_start"] == start.size
    assert sel.params["start_used"] is (method in HONOURING)
    if sel.gains is not None:
        assert sel.gains.shape == (30,)
    if sel.scores is not None:
        assert sel.scores.shape == (N,)


@pytest.mark.parametrize("method", METHODS)
def test_start_alone_means_every_other_example_is_a_candidate(method):
    start, _ = split(1, n_start=100)
    mask = np.zeros(N, dtype=bool)
    mask[start] = True
    sel = rp.select(method, signals=SIG, budget=N - 100, start=mask, seed=0)  # every remaining example
    assert np.array_equal(np.sort(sel.indices), np.flatnonzero(~mask))
    assert sel.params["n_candidates"] == N - 100 and sel.params["n_start"] == 100


@pytest.mark.parametrize("method", ["uncertainty", "kcenter_greedy", "herding", "prune4rel"])
def test_budget_above_the_candidates_is_a_clear_error(method):
    start, cand = split(n_cand=20)
    with pytest.raises(ValueError, match=r"exceeds the number of candidates \(20\)"):
        rp.select(method, signals=SIG, budget=21, start=start, candidates=cand)
    with pytest.raises(ValueError, match="candidates"):
        rp.select(method, signals=SIG, fraction=0.5, candidates=cand)
    with pytest.raises(ValueError, match="candidates"):  # no candidate left at all
        rp.select(method, signals=SIG, budget=1, start=np.arange(N))


@pytest.mark.parametrize("method", ["uniform", "kcenter_greedy", "moderate"])
def test_overlapping_start_and_candidates_is_a_clear_error(method):
    start, cand = split()
    with pytest.raises(ValueError, match=r"disjoint.*1 example\(s\) are in both \(e\.g\. index"):
        rp.select(method, signals=SIG, budget=5, start=start, candidates=np.append(cand, start[3]))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"candidates": [3, 3, 4]}, "candidates holds duplicate index 3"),
        ({"candidates": [0, N]}, f"outside \\[0, {N}\\)"),
        ({"start": [-1]}, "start has index -1"),
        ({"candidates": np.ones(N + 1, dtype=bool)}, "boolean mask must have shape"),
        ({"start": [[1, 2]]}, "1-D array of example indices"),
        ({"candidates": [0.5, 2.0]}, "1-D array of example indices"),
    ],
)
def test_bad_index_sets_are_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        rp.select("uniform", signals=SIG, budget=1, **kw)


def test_plain_pruning_records_nothing_new_and_an_empty_start_is_pruning():
    plain = rp.select("kcenter_greedy", signals=SIG, budget=30, seed=4)
    assert not {"n_candidates", "n_start", "start_used"} & set(plain.params)
    empty = rp.select("kcenter_greedy", signals=SIG, budget=30, seed=4, start=[])
    np.testing.assert_array_equal(empty.indices, plain.indices)
    assert empty.params["n_candidates"] == N and empty.params["n_start"] == 0


def test_a_string_candidates_is_still_prune4rels_option():
    start, _ = split()
    sel = rp.select("prune4rel", signals=SIG, budget=20, tau=0.9, prefer="confident", start=start)
    assert sel.params["prefer"] == "confident" and "flagged" in sel.params
    assert sel.params["n_candidates"] == N - start.size and not np.isin(sel.indices, start).any()


# ---------------------------------------------------------------------------------------------- score methods


@pytest.mark.parametrize(("method", "keep"), [("uncertainty", "high"), ("small_loss", "low"), ("el2n", "high")])
@pytest.mark.parametrize("balanced", [False, True])
def test_score_methods_rank_within_the_candidates_only(method, keep, balanced):
    start, cand = split(2)
    full = rp.select(method, signals=SIG, budget=N)  # every example's score
    sel = rp.select(method, signals=SIG, budget=24, start=start, candidates=cand, class_balanced=balanced)
    np.testing.assert_array_equal(sel.scores, full.scores)  # scores stay over all N
    s = full.scores[cand]
    order = cand[np.argsort(-s if keep == "high" else s, kind="stable")]  # cand is ascending: ties to low index
    if not balanced:
        np.testing.assert_array_equal(sel.indices, order[:24])
    else:
        labels = SIG.labels
        quotas = rp.class_quotas(labels[cand], 24, 4)
        want = np.concatenate([order[labels[order] == k][: quotas[k]] for k in range(4)])
        assert set(sel.indices) == set(want)
        assert np.array_equal(np.bincount(labels[sel.indices], minlength=4), quotas)
    # the global best are outside the pool here, so ignoring the pool would fail
    assert not np.isin(full.indices[:24], cand).all()


# ---------------------------------------------------------------------------------------------- sliced methods


def test_methods_without_pool_support_run_on_the_candidates_alone():
    start, cand = split(3)
    sel = rp.select("herding", signals=SIG, budget=25, start=start, candidates=cand, class_balanced=False)
    sub = rp.select("herding", features=SIG.features[cand], budget=25, class_balanced=False)
    np.testing.assert_array_equal(sel.indices, cand[sub.indices])
    assert sel.params["start_used"] is False
    a = rp.select("ccs", signals=SIG, budget=25, candidates=cand, seed=5)
    wanted = ("labels", "probs", "correct", "losses", "margins")
    arrays = {k: v for k, v in SIG.arrays().items() if k in wanted}
    sub_sig = {k: (v[:, cand] if v.ndim == 2 and k != "probs" else v[cand]) for k, v in arrays.items()}
    b = rp.select("ccs", **sub_sig, budget=25, seed=5)
    np.testing.assert_array_equal(a.indices, cand[b.indices])
    if a.scores is not None:
        assert np.isnan(np.delete(a.scores, cand)).all()
        np.testing.assert_array_equal(a.scores[cand], b.scores)


def test_select_passes_start_and_pool_only_to_methods_that_accept_them():
    seen = {}

    def toy(*, features, budget, start=None, pool=None):
        seen.update(start=start, pool=pool)
        return MethodOutput(indices=pool[:budget])

    register("toy_pool", kind="greedy", requires=("features",), description="test")(toy)
    try:
        start, cand = split(4)
        sel = rp.select("toy_pool", signals=SIG, budget=3, start=start[::-1], candidates=cand)
        np.testing.assert_array_equal(seen["start"], np.sort(start))
        np.testing.assert_array_equal(seen["pool"], np.sort(cand))
        np.testing.assert_array_equal(sel.indices, np.sort(cand)[:3])
        assert sel.params["start_used"] is True
    finally:
        unregister("toy_pool")

    def bad(*, features, budget, start=None, pool=None):
        return MethodOutput(indices=start[:budget])

    register("toy_bad", kind="greedy", requires=("features",), description="test")(bad)
    try:
        with pytest.raises(RuntimeError, match="not a candidate"):
            rp.select("toy_bad", signals=SIG, budget=3, start=start, candidates=cand)
    finally:
        unregister("toy_bad")


def test_a_greedy_method_honouring_start_must_take_the_pool():
    def no_pool(*, features, budget, start=None):
        raise AssertionError

    with pytest.raises(ValueError, match="accepts start but not pool"):
        register("toy_no_pool", kind="greedy", requires=("features",), description="test")(no_pool)


# ---------------------------------------------------------------------------------------------- k-center


def kcenter_reference(x: np.ndarray, start: np.ndarray, cand: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Farthest-first from S0: each pick is the candidate farthest from S0 and the earlier picks."""
    chosen = list(start)
    picks, gains = [], []
    for _ in range(k):
        left = [i for i in cand if i not in picks]
        dist = [min(np.linalg.norm(x[i] - x[j]) for j in chosen) for i in left]
        j = int(np.argmax(dist))  # first maximal: lowest index (cand is ascending)
        picks.append(int(left[j]))
        gains.append(dist[j])
        chosen.append(left[j])
    return picks, gains


def test_kcenter_with_a_start_set_equals_the_plain_loop():
    start, cand = split(5, n_start=30, n_cand=100)
    x = SIG.features.astype(np.float64)
    sel = rp.select("kcenter_greedy", features=x, budget=20, start=start, candidates=cand)
    picks, gains = kcenter_reference(x, start, np.sort(cand), 20)
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.gains, gains, rtol=1e-9)
    # the start set matters: without it the traversal differs
    assert not np.array_equal(rp.select("kcenter_greedy", features=x, budget=20, candidates=cand).indices, picks)


def test_kcenter_balanced_start_per_class():
    start, cand = split(6, n_start=30, n_cand=100)
    x, labels = SIG.features.astype(np.float64), SIG.labels
    sel = rp.select("kcenter_greedy", features=x, labels=labels, budget=20, start=start, candidates=cand,
                    class_balanced=True)  # fmt: skip
    quotas = rp.class_quotas(labels[cand], 20, 4)
    for c in range(4):
        ref, _ = kcenter_reference(x, start[labels[start] == c], np.sort(cand[labels[cand] == c]), int(quotas[c]))
        np.testing.assert_array_equal(sel.indices[labels[sel.indices] == c], ref)


# ---------------------------------------------------------------------------------------------- Prune4ReL


def prune4rel_self_reference(probs, feats, start, cand, budget, tau, eta=1.0, labels=None):
    """The released dense self-gain rule with NC initialised by S0 and picks restricted to the candidates
    (balanced: the released round-robin over the candidates of each class)."""
    return released_prune4rel(probs, feats, budget, tau=tau, eta=eta, labels=labels, start=start, candidates=cand)


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("tau", [0.9, 0.8])
@pytest.mark.parametrize("scarce", [False, True])
def test_prune4rel_self_rule_with_a_start_set_equals_the_plain_loop(balanced, tau, scarce):
    start, cand = split(7, n_start=50, n_cand=150)
    if scarce:  # class 0 has 3 candidates: the round-robin must run out of it (and fire the break rule)
        cand = np.concatenate([cand[SIG.labels[cand] != 0], cand[SIG.labels[cand] == 0][:3]])
    labels = SIG.labels if balanced else None
    ref = prune4rel_self_reference(SIG.probs, SIG.features, start, cand, 40, tau, labels=labels)
    sel = rp.select("prune4rel", signals=SIG, budget=40, start=start, candidates=cand, tau=tau,
                    class_balanced=balanced, device="cpu")  # fmt: skip
    np.testing.assert_array_equal(sel.indices, ref)
    for engine in ("dense", "graph"):
        other = rp.select("prune4rel", signals=SIG, budget=40, start=start, candidates=cand, tau=tau,
                          class_balanced=balanced, engine=engine, device="cpu")  # fmt: skip
        np.testing.assert_array_equal(other.indices, ref)
    # the start set matters
    assert not np.array_equal(ref, prune4rel_self_reference(SIG.probs, SIG.features, [], cand, 40, tau, labels=labels))


@pytest.mark.parametrize("method", ["prune4rel", "prune4rel_auto"])
def test_prune4rel_exact_balanced_scarce_class(method):
    start, cand = split(13, n_start=50, n_cand=150)
    cand = np.concatenate([cand[SIG.labels[cand] != 1], cand[SIG.labels[cand] == 1][:2]])
    sel = rp.select(method, signals=SIG, budget=40, start=start, candidates=cand, gain="exact", class_balanced=True)
    assert np.isin(sel.indices, cand).all() and np.unique(sel.indices).size == 40
    assert (SIG.labels[sel.indices] == 1).sum() == 2  # the class's every candidate, nothing more


def test_prune4rel_exact_rule_with_a_start_set_equals_the_plain_loop():
    start, cand = split(8, n_start=50, n_cand=150)
    tau, eta = 0.85, 2.0
    g = rescaled_cosine_graph(SIG.features, tau)
    w = np.zeros((N, N))
    for i in range(N):
        idx, wt = g.row(i)
        w[i, idx] = wt
    c = SIG.probs.astype(np.float32).max(axis=1).astype(np.float64)
    nc = w[:, np.sort(start)] @ c[np.sort(start)]
    left = list(np.sort(cand))
    picks, gains = [], []
    for _ in range(30):
        g_all = [np.sum(np.tanh((nc + w[:, x] * c[x]) / eta) - np.tanh(nc / eta)) for x in left]
        j = int(np.argmax(g_all))
        picks.append(left[j])
        gains.append(g_all[j])
        nc = nc + w[:, left[j]] * c[left[j]]
        del left[j]
    sel = rp.select("prune4rel", signals=SIG, budget=30, start=start, candidates=cand, tau=tau, eta=eta,
                    gain="exact", class_balanced=False)  # fmt: skip
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.gains, gains, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["prune4rel", "prune4rel_auto"])
@pytest.mark.parametrize("gain", ["self", "exact"])
@pytest.mark.parametrize("balanced", [False, True])
def test_prune4rel_with_an_empty_start_is_plain_prune4rel(method, gain, balanced):
    kw = dict(signals=SIG, budget=50, gain=gain, class_balanced=balanced)
    plain = rp.select(method, **kw)
    empty = rp.select(method, **kw, start=np.array([], dtype=np.int64))
    np.testing.assert_array_equal(empty.indices, plain.indices)
    np.testing.assert_array_equal(empty.gains, plain.gains)
    assert empty.params["tau"] == plain.params["tau"] and empty.params["eta"] == plain.params["eta"]


# ---------------------------------------------------------------------------------------------- submodular


def rescaled_cos(x: np.ndarray) -> np.ndarray:
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 0.5 + 0.5 * z @ z.T


@pytest.mark.parametrize("function", ["facility_location", "graph_cut", "log_determinant"])
@pytest.mark.parametrize("optimizer", ["naive", "lazy"])
def test_submodular_with_a_start_set_equals_the_plain_loop(function, optimizer):
    start, cand = split(9, n_start=30, n_cand=120)
    x = SIG.features.astype(np.float64)
    s = rescaled_cos(x)
    np.fill_diagonal(s, 1.0)

    def f(chosen: list[int]) -> float:
        if not chosen:
            return 0.0
        if function == "facility_location":
            return float(s[:, chosen].max(axis=1).sum())
        if function == "graph_cut":
            return float(s[:, chosen].sum() - s[np.ix_(chosen, chosen)].sum())
        return float(np.linalg.slogdet(s[np.ix_(chosen, chosen)] + 1e-6 * np.eye(len(chosen)))[1])

    chosen, left, picks, gains = list(np.sort(start)), list(np.sort(cand)), [], []
    for _ in range(15):
        base = f(chosen)
        g_all = [f([*chosen, x_]) - base for x_ in left]
        j = int(np.argmax(g_all))
        picks.append(left[j])
        gains.append(g_all[j])
        chosen.append(left.pop(j))
    sel = rp.select("submodular", features=x, budget=15, start=start, candidates=cand, function=function,
                    optimizer=optimizer, class_balanced=False)  # fmt: skip
    np.testing.assert_array_equal(sel.indices, picks)
    np.testing.assert_allclose(sel.gains, gains, rtol=1e-4, atol=1e-5)


def test_submodular_balanced_with_start_uses_each_class_start():
    start, cand = split(10, n_start=30, n_cand=120)
    x, labels = SIG.features.astype(np.float64), SIG.labels
    sel = rp.select("submodular", features=x, labels=labels, budget=16, start=start, candidates=cand)
    quotas = rp.class_quotas(labels[cand], 16, 4)
    for c in range(4):
        members = np.flatnonzero(labels == c)
        s = rescaled_cos(x[members])
        pos = {int(m): i for i, m in enumerate(members)}
        best = s[:, [pos[int(i)] for i in start[labels[start] == c]]].max(axis=1)
        left, picks = sorted(int(i) for i in cand[labels[cand] == c]), []
        for _ in range(int(quotas[c])):
            g_all = [np.maximum(s[:, pos[i]] - best, 0).sum() for i in left]
            j = int(np.argmax(g_all))
            best = np.maximum(best, s[:, pos[left[j]]])
            picks.append(left.pop(j))
        np.testing.assert_array_equal(sel.indices[labels[sel.indices] == c], picks)


def test_submodular_stochastic_with_start_picks_candidates():
    start, cand = split(11)
    sel = rp.select("submodular", signals=SIG, budget=20, start=start, candidates=cand, optimizer="stochastic")
    assert np.isin(sel.indices, cand).all() and np.unique(sel.indices).size == 20


# ---------------------------------------------------------------------------------------------- Cal


def cal_reference(probs, x, labels, start, neighbors, eps=1e-8):
    """Mean symmetric KL of each example to its nearest labelled (start) examples of its class."""
    p = np.clip(probs.astype(np.float64), eps, None)
    p /= p.sum(1, keepdims=True)
    out = np.zeros(len(p))
    for i in range(len(p)):
        refs = [j for j in start if j != i and (labels is None or labels[j] == labels[i])]
        if not refs:
            continue
        d = [(np.sum((x[i] - x[j]) ** 2), j) for j in refs]
        nb = [j for _, j in sorted(d)[:neighbors]]
        out[i] = np.mean([0.5 * np.sum((p[i] - p[j]) * (np.log(p[i]) - np.log(p[j]))) for j in nb])
    return out


@pytest.mark.parametrize("within_class", [True, False])
def test_cal_with_a_start_set_uses_only_labelled_neighbours(within_class):
    start, cand = split(12, n_start=40, n_cand=120)
    x = SIG.features.astype(np.float64)
    ref = cal_reference(SIG.probs, x, SIG.labels if within_class else None, np.sort(start), 5)
    kw = dict(probs=SIG.probs, features=x, labels=SIG.labels, neighbors=5, within_class=within_class)
    sel = rp.select("cal", **kw, budget=30, start=start, candidates=cand)
    np.testing.assert_allclose(sel.scores, ref, rtol=1e-9, atol=1e-12)
    order = np.sort(cand)[np.argsort(-ref[np.sort(cand)], kind="stable")]
    np.testing.assert_array_equal(sel.indices, order[:30])
    # an unlabelled example is nobody's neighbour: changing its prediction changes no candidate's score
    other = np.setdiff1d(np.arange(N), np.concatenate([start, cand]))
    probs2 = SIG.probs.copy()
    probs2[other] = probs2[other][:, ::-1]
    sel2 = rp.select("cal", **{**kw, "probs": probs2}, budget=30, start=start, candidates=cand)
    np.testing.assert_array_equal(sel2.scores[cand], sel.scores[cand])
    # while pruning-mode Cal (no start) does look at them
    plain = rp.select("cal", **kw, budget=N)
    plain2 = rp.select("cal", **{**kw, "probs": probs2}, budget=N)
    assert not np.allclose(plain.scores[cand], plain2.scores[cand])


def test_cal_with_an_empty_start_is_pruning_cal():
    plain = rp.select("cal", signals=SIG, budget=40)
    empty = rp.select("cal", signals=SIG, budget=40, start=[])
    np.testing.assert_array_equal(empty.indices, plain.indices)
