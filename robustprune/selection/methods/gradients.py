"""Gradient-matching coresets: Craig, GradMatch and Glister, on per-example last-layer gradients.

For softmax cross-entropy the gradient of one example's loss with respect to the last linear layer (weights
and bias) is ``g_i = e_i ⊗ [h_i, 1]`` with ``e_i = p_i − onehot(y_i)`` (K numbers) and ``h_i`` the
penultimate features (D numbers). Every quantity these methods need factors through ``(e, [h, 1])``:

- ``⟨g_i, g_j⟩ = ⟨e_i, e_j⟩ · ⟨h̃_i, h̃_j⟩`` (``h̃ = [h, 1]``), so similarities and distances never build the
  K·(D+1)-dimensional vectors;
- ``⟨g_i, R⟩ = Σ_k e_ik (h̃_i · R_k)`` for any matrix ``R`` (K × (D+1)) in gradient space, so a projection on
  a residual or a validation gradient is one (n × (D+1)) · ((D+1) × K) product.

Gradients are per example (the loss is not averaged over a loader batch, so no example's gradient is
rescaled by the size of its batch; see ``spec/baselines.md`` 1.4). Craig and GradMatch return per-example
weights (``MethodOutput.weights``), scaled so that their mean over the subset is 1; ``weighted=False``
drops them, and a run then trains on the subset unweighted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from robustprune.selection.budget import class_quotas
from robustprune.selection.core.greedy import lazy_greedy
from robustprune.selection.registry import register
from robustprune.selection.result import MethodOutput

__all__ = [
    "craig",
    "gradmatch",
    "glister",
    "gradient_factors",
    "gradient_distances",
    "craig_group",
    "omp_group",
    "glister_greedy",
]

# above this many pairs a class's similarity matrix is not kept: its columns are recomputed when needed
_DENSE_PAIRS = 36_000_000
_BLOCK = 2048


def gradient_factors(probs: np.ndarray, labels: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The factors ``e = p − onehot(y)`` (N, K) and ``h̃ = [h, 1]`` (N, D+1) of the per-example last-layer
    gradients ``g_i = e_i ⊗ h̃_i``, in float64."""
    e = np.array(probs, dtype=np.float64)
    e[np.arange(e.shape[0]), np.asarray(labels, dtype=np.int64)] -= 1.0
    h = np.concatenate([np.asarray(features, dtype=np.float64), np.ones((e.shape[0], 1))], axis=1)
    return e, h


def _sq_norms(e: np.ndarray, h: np.ndarray) -> np.ndarray:
    return (e * e).sum(1) * (h * h).sum(1)


def gradient_distances(e: np.ndarray, h: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Euclidean distances ``‖g_i − g_j‖`` between the gradients of ``rows`` and ``cols`` (len(rows) × len(cols)),
    from the factors (no K·(D+1) vectors)."""
    sq = _sq_norms(e, h)
    inner = (e[rows] @ e[cols].T) * (h[rows] @ h[cols].T)
    d2 = sq[rows][:, None] + sq[cols][None, :] - 2.0 * inner
    return np.sqrt(np.maximum(d2, 0.0))


# ------------------------------------------------------------------------------------------------ craig
class _FacilityColumns:
    """Facility location ``F(S) = Σ_i max_{j∈S} s_ij`` with ``s_ij = M − ‖g_i − g_j‖`` on one group.

    ``M`` is ``2·max_i ‖g_i‖``, at least every distance (triangle inequality), so every similarity is
    non-negative. The greedy's picks do not depend on ``M`` as long as it bounds the distances: the first pick
    minimises ``Σ_i d_ix`` and every later gain is ``Σ_i max(0, min_{j∈S} d_ij − d_ix)``. (DeepCore's
    ``max d − d + 1e-3`` gives the same picks.) The similarity matrix is kept when it is small enough; else
    each column is recomputed from the factors in O(n·(K + D)).
    """

    def __init__(self, e: np.ndarray, h: np.ndarray) -> None:
        self.e, self.h = e, h
        self.n = e.shape[0]
        self.m = 2.0 * float(np.sqrt(_sq_norms(e, h).max())) if self.n else 0.0
        self.state = np.zeros(self.n)
        self.all = np.arange(self.n)
        self.dense = None
        if self.n * self.n <= _DENSE_PAIRS:
            self.dense = self.m - gradient_distances(e, h, self.all, self.all)

    def columns(self, cols: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense[:, cols]
        return self.m - gradient_distances(self.e, self.h, self.all, cols)

    def initial_gains(self) -> np.ndarray:
        out = np.empty(self.n)
        for a in range(0, self.n, _BLOCK):
            cols = self.all[a : a + _BLOCK]
            out[a : a + _BLOCK] = self.columns(cols).sum(0)
        return out

    def gain(self, x: int) -> float:
        col = self.dense[x] if self.dense is not None else self.columns(np.array([x]))[:, 0]
        return float(np.maximum(col - self.state, 0.0).sum())

    def add(self, x: int) -> None:
        col = self.dense[x] if self.dense is not None else self.columns(np.array([x]))[:, 0]
        np.maximum(self.state, col, out=self.state)

    def cluster_sizes(self, picks: np.ndarray) -> np.ndarray:
        """How many group members have each pick as their most similar pick (a pick counts itself)."""
        nearest = np.empty(self.n, dtype=np.int64)
        for a in range(0, self.n, _BLOCK):
            rows = self.all[a : a + _BLOCK]
            d = gradient_distances(self.e, self.h, rows, picks)
            nearest[a : a + _BLOCK] = d.argmin(1)
        nearest[picks] = np.arange(picks.shape[0])  # exact self-distance is 0 even where rounding is not
        return np.bincount(nearest, minlength=picks.shape[0]).astype(np.float64)


def craig_group(e: np.ndarray, h: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Craig on one group: lazy greedy facility location on gradient similarity. Returns positions of the
    ``k`` picks in pick order, their gains and their cluster sizes (the Craig weights)."""
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    fl = _FacilityColumns(e, h)
    picks, gains, _ = lazy_greedy(fl.initial_gains(), fl.gain, fl.add, k)
    return picks, gains, fl.cluster_sizes(picks)


def _groups(labels: np.ndarray | None, n: int, budget: int, class_balanced: bool) -> list[tuple[np.ndarray, int]]:
    if not class_balanced or labels is None:
        return [(np.arange(n), budget)]
    quotas = class_quotas(labels, budget)
    return [(np.flatnonzero(labels == c), int(quotas[c])) for c in np.flatnonzero(quotas)]


def _interleave(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """Merge per-group (indices, gains, weights) round by round, each group keeping its pick order."""
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    idx = np.concatenate([p[0] for p in parts])
    gains = np.concatenate([p[1] for p in parts])
    weights = np.concatenate([p[2] for p in parts])
    rank = np.concatenate([np.arange(p[0].shape[0]) for p in parts])
    order = np.argsort(rank, kind="stable")
    return idx[order].astype(np.int64), gains[order], weights[order]


def _craig_run(e: np.ndarray, h: np.ndarray, k: int) -> tuple:
    pos, gains, sizes = craig_group(e, h, k)
    return pos, gains, sizes, {}


def _weighted_groups(
    e: np.ndarray,
    h: np.ndarray,
    labels: np.ndarray,
    budget: int,
    class_balanced: bool,
    progress: Callable[[int, int], None] | None,
    run: Callable[[np.ndarray, np.ndarray, int], tuple],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """``run(e_group, h_group, quota)`` -> (positions, gains, weights, facts) on each class (or the whole set),
    merged round by round; returns global indices, gains, weights and each group's facts."""
    parts, facts = [], []
    groups = _groups(labels, e.shape[0], budget, class_balanced)
    for i, (members, k) in enumerate(groups):
        pos, gains, w, f = run(e[members], h[members], k)
        parts.append((members[pos], gains, w))
        facts.append(f)
        if progress is not None:
            progress(i + 1, len(groups))
    return (*_interleave(parts), facts)


def _mean_one(w: np.ndarray) -> np.ndarray:
    total = w.sum()
    return w * (w.shape[0] / total) if total > 0 else np.ones_like(w)


@register(
    "craig",
    kind="greedy",
    requires=("probs", "features", "labels"),
    balance="proportional",
    default_class_balanced=True,
    description="Craig: facility location on per-example gradient similarity, weights = cluster sizes",
)
def craig(
    *,
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    budget: int,
    class_balanced: bool = True,
    weighted: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> MethodOutput:
    """Craig (Mirzasoleiman, Bilmes & Leskovec, ICML 2020): per class when balanced, the lazy-greedy facility
    location maximiser of ``s_ij = M − ‖g_i − g_j‖`` over per-example last-layer gradients ``g``.

    Each pick's weight is the size of its cluster: the number of group members whose most similar pick it is
    (itself included; DeepCore adds one more). Weights are rescaled to mean 1 over the subset; ``weighted=False``
    returns none. ``gains`` are the facility-location gains at pick time.
    """
    e, h = gradient_factors(probs, labels, features)
    idx, gains, weights, _ = _weighted_groups(e, h, labels, budget, class_balanced, progress, _craig_run)
    return MethodOutput(
        indices=idx,
        gains=gains,
        weights=_mean_one(weights) if weighted else None,
        info={"max_cluster": int(weights.max()) if weights.size else 0},
    )


# ------------------------------------------------------------------------------------------------ gradmatch
def _lower_solve(low: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve_triangular

    return solve_triangular(low, rhs, lower=True, check_finite=False)


def omp_group(
    e: np.ndarray, h: np.ndarray, k: int, *, target: np.ndarray | None = None, lam: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Orthogonal matching pursuit of the target gradient (default: the group's mean gradient) by ``k``
    member gradients, with ridge ``lam · mean ‖g‖²`` and non-negative final weights.

    Each step picks the unselected member whose gradient has the largest signed inner product with the
    residual, refits the ridge least squares on all picks (an incremental Cholesky factor of the regularised
    Gram matrix, O(k²) per step), and updates the residual. The final weights solve the same regularised
    problem under ``w ≥ 0`` (NNLS). Picks whose NNLS weight is 0 stay in the subset, after the positive ones,
    with the smallest positive weight, so the subset always has exactly ``k`` members.

    Returns positions in order (positive weights in pick order first), the projection at pick time, the
    weights (sum ≈ 1 for a mean target; 0 nowhere) and facts (residual norm, number of zero NNLS weights).
    """
    from scipy.linalg import solve_triangular
    from scipy.optimize import nnls

    n, kk = e.shape[0], e.shape[1]
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0), {"zero_weights": 0}
    k = min(k, n)
    b = (e.T @ h) / n if target is None else np.asarray(target, dtype=np.float64).reshape(kk, h.shape[1])
    ridge = float(lam) * float(_sq_norms(e, h).mean())
    c_all = ((h @ b.T) * e).sum(1)  # ⟨g_i, b⟩
    picks = np.empty(k, dtype=np.int64)
    proj_at_pick = np.empty(k)
    chol = np.zeros((k, k))
    cols = np.empty((n, k))  # cols[:, t] = ⟨g_i, g_{pick t}⟩: the residual projection is c − cols·x
    taken = np.zeros(n, dtype=bool)
    proj = c_all.copy()
    x = np.zeros(0)
    for t in range(k):
        proj[taken] = -np.inf
        j = int(np.argmax(proj))
        picks[t], proj_at_pick[t] = j, proj[j]
        taken[j] = True
        cols[:, t] = (e @ e[j]) * (h @ h[j])
        # new row of the Cholesky factor of G_S + ridge·I
        row = _lower_solve(chol[:t, :t], cols[picks[:t], t]) if t else np.zeros(0)
        diag = cols[j, t] + ridge - float(row @ row)
        chol[t, :t], chol[t, t] = row, np.sqrt(max(diag, 1e-300))
        low = chol[: t + 1, : t + 1]
        x = solve_triangular(low.T, _lower_solve(low, c_all[picks[: t + 1]]), lower=False, check_finite=False)
        proj = c_all - cols[:, : t + 1] @ x
    resid = b - (e[picks] * x[:, None]).T @ h[picks]
    low = chol[:k, :k]
    w, _ = nnls(low.T, _lower_solve(low, c_all[picks]), maxiter=50 * k)
    positive = w > 0
    order = np.concatenate([np.flatnonzero(positive), np.flatnonzero(~positive)])
    fill = w[positive].min() if positive.any() else 1.0 / k
    weights = np.where(positive, w, fill)
    facts = {"zero_weights": int((~positive).sum()), "residual": float(np.sqrt((resid * resid).sum()))}
    return picks[order], proj_at_pick[order], weights[order], facts


@register(
    "gradmatch",
    kind="greedy",
    requires=("probs", "features", "labels"),
    balance="proportional",
    default_class_balanced=True,
    description="GradMatch: orthogonal matching pursuit of the mean gradient, non-negative weights",
)
def gradmatch(
    *,
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    budget: int,
    class_balanced: bool = True,
    lam: float = 0.01,
    weighted: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> MethodOutput:
    """GradMatch (Killamsetty et al., ICML 2021): per class when balanced, the examples whose weighted
    gradients match the class's mean gradient, by regularised orthogonal matching pursuit (:func:`omp_group`).

    Always exactly the budget (DeepCore drops zero NNLS weights and returns fewer). ``lam`` is the ridge
    relative to the group's mean squared gradient norm (scale-free; the released code hard-codes 1.0 on
    batch-scaled gradients). A class's weights are scaled by its size so classes keep their share of the loss,
    then all weights to mean 1; ``weighted=False`` returns none. ``gains`` are the residual projections at pick
    time.
    """
    if not lam >= 0:
        raise ValueError(f"lam must be non-negative, got {lam!r}")
    e, h = gradient_factors(probs, labels, features)

    def run(eg: np.ndarray, hg: np.ndarray, k: int) -> tuple:
        pos, gains, w, facts = omp_group(eg, hg, k, lam=lam)
        return pos, gains, w * eg.shape[0], facts  # a class's weights scaled by its size

    idx, gains, weights, facts = _weighted_groups(e, h, labels, budget, class_balanced, progress, run)
    resid = [f.get("residual", 0.0) for f in facts]
    return MethodOutput(
        indices=idx,
        gains=gains,
        weights=_mean_one(weights) if weighted else None,
        info={"zero_nnls_weights": sum(f["zero_weights"] for f in facts), "max_residual": max(resid, default=0.0)},
    )


# ------------------------------------------------------------------------------------------------ glister
def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def glister_greedy(
    e: np.ndarray,
    h: np.ndarray,
    quotas: list[tuple[np.ndarray, int]],
    val_logits: np.ndarray,
    val_labels: np.ndarray,
    val_h: np.ndarray,
    eta: float,
    trace: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Glister's greedy with the validation gradient updated after every pick.

    With the chosen set S (|S| = t), the last layer is virtually moved to ``θ − η·mean_{j∈S} g_j``; the
    validation logits follow in closed form (``Δz_v = −(η/t) Σ_{j∈S} (h̃_v·h̃_j) e_j``) and the validation
    gradient ``ḡ = mean_v (softmax(z_v) − onehot(y_v)) ⊗ h̃_v`` is recomputed. The next pick is the candidate
    with the largest ``⟨g_i, ḡ⟩`` (the first-order decrease of the validation loss) within the group whose turn
    it is (groups take turns in proportion to their quotas). ``trace``, when given, collects ḡ before each pick.
    """
    nv, kk = val_logits.shape
    onehot = np.zeros((nv, kk))
    onehot[np.arange(nv), val_labels] = 1.0
    acc = np.zeros((nv, kk))  # Σ_{j∈S} (h̃_v·h̃_j) e_j
    total = sum(q for _, q in quotas)
    # turn order: group g takes its r-th pick at "time" (r + 0.5) / quota_g (a proportional schedule)
    turns = np.concatenate([np.full(q, gi) for gi, (_, q) in enumerate(quotas)]).astype(np.int64)
    when = np.concatenate([(np.arange(q) + 0.5) / q for _, q in quotas]) if total else np.empty(0)
    turns = turns[np.argsort(when, kind="stable")]
    free = [np.ones(m.shape[0], dtype=bool) for m, _ in quotas]
    # gathered once, not at every step, in float32: each pick streams every candidate's factors and the
    # validation features once, so the pick rate is bound by memory traffic (the gain arithmetic is exact
    # enough: ranks of candidates, not sums over the set)
    group_h = [np.ascontiguousarray(h[m], dtype=np.float32) for m, _ in quotas]
    group_e = [np.ascontiguousarray(e[m], dtype=np.float32) for m, _ in quotas]
    val_h32 = np.ascontiguousarray(val_h, dtype=np.float32)
    val_h_t = np.ascontiguousarray(val_h32.T)
    picks = np.empty(total, dtype=np.int64)
    gains = np.empty(total)
    for t, gi in enumerate(turns):
        z = val_logits - (eta / t) * acc if t else val_logits
        gval = ((_softmax_rows(z) - onehot).T.astype(np.float32) @ val_h32).astype(np.float64) / nv  # K × (D+1)
        if trace is not None:
            trace.append(gval.copy())
        members = quotas[gi][0]
        g = np.einsum("ik,ik->i", group_h[gi] @ gval.T.astype(np.float32), group_e[gi]).astype(np.float64)
        g[~free[gi]] = -np.inf
        p = int(np.argmax(g))
        free[gi][p] = False
        j = int(members[p])
        picks[t], gains[t] = j, g[p]
        acc += np.outer(h[j].astype(np.float32) @ val_h_t, e[j])
    return picks, gains


@register(
    "glister",
    kind="greedy",
    requires=("probs", "features", "labels"),
    balance="proportional",
    default_class_balanced=True,
    description="Glister: greedy validation-loss decrease (Taylor), validation gradient updated per pick",
)
def glister(
    *,
    probs: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    budget: int,
    class_balanced: bool = True,
    eta: float = 0.1,
    validation: str = "holdout",
    holdout: float = 0.1,
    seed: int = 0,
) -> MethodOutput:
    """Glister (Killamsetty et al., AAAI 2021), one-step Taylor approximation with the validation gradient
    recomputed after each pick at the virtually updated last layer (the released DeepCore code never updates
    it, a misspelt keyword; see ``spec/baselines.md`` 2.13).

    ``validation="holdout"`` (default) uses a seeded random ``holdout`` share of the training examples as the
    validation set (their given labels, their warm-up logits ``log p``); ``"train"`` uses every example.
    Validation examples stay candidates. ``eta`` is the virtual step size. Balanced picks take turns between
    classes in proportion to their quotas, on one shared parameter trajectory.
    """
    if validation not in ("holdout", "train"):
        raise ValueError(f"validation must be 'holdout' or 'train', got {validation!r}")
    if not 0.0 < holdout <= 1.0:
        raise ValueError(f"holdout must be in (0, 1], got {holdout!r}")
    if not eta >= 0:
        raise ValueError(f"eta must be non-negative, got {eta!r}")
    e, h = gradient_factors(probs, labels, features)
    n = e.shape[0]
    if validation == "train":
        val = np.arange(n)
    else:
        rng = np.random.default_rng(seed)
        val = np.sort(rng.choice(n, size=max(1, int(round(holdout * n))), replace=False))
    val_logits = np.log(np.clip(np.asarray(probs, dtype=np.float64)[val], 1e-12, None))
    groups = _groups(labels, n, budget, class_balanced)
    picks, gains = glister_greedy(e, h, groups, val_logits, np.asarray(labels)[val], h[val], float(eta))
    return MethodOutput(indices=picks, gains=gains, info={"validation_size": int(val.shape[0])})
