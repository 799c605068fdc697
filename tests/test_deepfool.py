"""DeepFool (Ducoffe & Precioso, 2018): the batched attack against analytic distances of linear models and a
per-sample loop, its step cap, the selection (smallest norms, per class) and a run that computes the signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robustprune as rp
from robustprune.train.deepfool import deepfool_norms


def _linear(k: int, d: int = 5, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, k).double()


def _analytic(model: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """min over c != y of |(w_c − w_y)·x + (b_c − b_y)| / ‖w_c − w_y‖, y the predicted class."""
    w, b = model.weight.detach(), model.bias.detach()
    f = x @ w.T + b
    y = f.argmax(1)
    best = torch.full((x.shape[0],), float("inf"), dtype=x.dtype)
    for c in range(w.shape[0]):
        d = (f[:, c] - f[torch.arange(len(y)), y]).abs() / (w[c] - w[y]).norm(dim=1)
        best = torch.where(y == c, best, torch.minimum(best, d))
    return best


def _on_boundary(model: nn.Linear, x: torch.Tensor, a: int = 0, c: int = 1) -> torch.Tensor:
    """``x`` projected onto the hyperplane f_a = f_c."""
    w, b = model.weight.detach(), model.bias.detach()
    u, off = w[c] - w[a], b[c] - b[a]
    return x - ((x @ u + off) / (u @ u))[:, None] * u


@pytest.mark.parametrize("k", [2, 5])
def test_linear_models_give_the_analytic_distance(k):
    model = _linear(k)
    x = torch.randn(80, 5, dtype=torch.float64) * 2
    norms, steps = deepfool_norms(model, x, batch_size=16)
    np.testing.assert_allclose(norms.numpy(), _analytic(model, x).numpy(), rtol=1e-5, atol=1e-6)
    assert norms.dtype == torch.float32 and steps.dtype == torch.int64
    assert (steps >= 1).all() and (steps <= 50).all()


def test_points_on_the_decision_boundary_have_zero_norm():
    model = _linear(2)
    x = _on_boundary(model, torch.randn(20, 5, dtype=torch.float64))
    norms, _ = deepfool_norms(model, x)
    assert norms.abs().max() < 1e-6
    # in the K-class case, a point on the boundary between its predicted class and the runner-up
    model = _linear(4, seed=1)
    x = torch.randn(200, 5, dtype=torch.float64)
    f = model(x).detach()
    top2 = f.topk(2, dim=1).indices
    pair = (top2[:, 0] == 0) & (top2[:, 1] == 1)
    xb = _on_boundary(model, x[pair], 0, 1)
    still_top = model(xb).detach().topk(2, dim=1).indices
    xb = xb[((still_top[:, 0] == 0) | (still_top[:, 0] == 1)) & ((still_top[:, 1] == 0) | (still_top[:, 1] == 1))]
    assert xb.shape[0] > 0
    assert deepfool_norms(model, xb)[0].abs().max() < 1e-6


def _mlp(seed: int = 0, k: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, k)).double()


def test_the_batched_attack_equals_a_per_sample_loop():
    model = _mlp()
    x = torch.randn(40, 4, dtype=torch.float64) * 2
    batched, steps = deepfool_norms(model, x, batch_size=13)
    single = [deepfool_norms(model, x[i : i + 1], batch_size=1) for i in range(x.shape[0])]
    np.testing.assert_allclose(batched.numpy(), torch.cat([s[0] for s in single]).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(steps.numpy(), torch.cat([s[1] for s in single]).numpy())


def test_max_iter_is_respected_and_overshoot_scales_the_step():
    model = _mlp(1)
    x = torch.randn(60, 4, dtype=torch.float64) * 2
    zero, steps0 = deepfool_norms(model, x, max_iter=0)
    assert (zero == 0).all() and (steps0 == 0).all()
    for cap in (1, 2, 3):
        _, steps = deepfool_norms(model, x, max_iter=cap)
        assert steps.max() <= cap
    _, uncapped = deepfool_norms(model, x)
    assert (uncapped > 1).any(), "some samples need several steps on a curved boundary"
    # one step on a linear model is the exact projection; an overshoot of 2% crosses the boundary at once
    lin = _linear(3)
    xl = torch.randn(50, 5, dtype=torch.float64)
    one, _ = deepfool_norms(lin, xl, max_iter=1)
    np.testing.assert_allclose(one.numpy(), _analytic(lin, xl).numpy(), rtol=1e-5)
    over, steps = deepfool_norms(lin, xl, overshoot=0.02)
    assert (steps == 1).all()
    np.testing.assert_allclose(over.numpy(), 1.02 * _analytic(lin, xl).numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="max_iter must be a non-negative integer"):
        deepfool_norms(lin, xl, max_iter=-1)
    with pytest.raises(ValueError, match="overshoot must be >= 0"):
        deepfool_norms(lin, xl, overshoot=-0.1)


def test_the_model_is_left_as_it_was():
    model = _mlp(2)
    model.train()
    deepfool_norms(model, torch.randn(8, 4, dtype=torch.float64), transform=lambda v: v * 0.5)
    assert model.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_select_keeps_the_smallest_norms_per_class_by_default():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [30, 10])
    d = rng.exponential(size=40)
    d[:30] *= 0.1  # class 0 is much closer to the boundary: unbalanced, it would take the whole budget
    sel = rp.select("deepfool", deepfool=d, labels=labels, budget=8)
    assert sel.params["class_balanced"] is True
    picked = set(sel.indices)
    assert picked == set(np.argsort(d[:30])[:6]) | set(30 + np.argsort(d[30:])[:2])
    flat = rp.select("deepfool", deepfool=d, labels=labels, budget=8, class_balanced=False)
    assert set(flat.indices) == set(np.argsort(d)[:8])
    with pytest.raises(ValueError, match=r"needs the signal 'deepfool' \(DeepFool.*extra_signals"):
        rp.select("deepfool", labels=labels, budget=8)
    with pytest.raises(ValueError, match="deepfool must be >= 0"):
        rp.select("deepfool", deepfool=-d, labels=labels, budget=8)
    with pytest.raises(ValueError, match="deepfool has 39 examples but labels has 40"):
        rp.select("deepfool", deepfool=d[:39], labels=labels, budget=8)


def test_a_deepfool_run_computes_the_norms_and_finishes(tmp_path):
    from robustprune.pipeline import run
    from robustprune.runconfig import RunConfig

    rng = np.random.default_rng(0)
    rows = tmp_path / "rows.npz"
    y = np.repeat(np.arange(3), 40)
    x = (rng.normal(size=(120, 6)) + y[:, None]).astype(np.float32)
    np.savez(rows, x=x, y=y, x_test=x[:30], y_test=y[:30])
    base = dict(dataset="arrays", dataset_params={"path": str(rows)}, learner="ce", warmup_epochs=2, epochs=2,
                device="cpu", noise="sym:0.2")  # fmt: skip
    res = run(RunConfig(method="deepfool", fraction=0.5, out=str(tmp_path / "r"), **base))
    d = res.signals.deepfool
    assert d.shape == (120,) and d.dtype == np.float32 and (d >= 0).all() and (d > 0).any()
    assert res.metrics["budget"] == 60 and res.signals.meta["deepfool"]["max_iter"] == 50
    assert rp.Signals.load(tmp_path / "r" / "signals.npz").deepfool is not None
