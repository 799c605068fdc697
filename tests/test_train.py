"""Training loop, recorders, checkpoints and the four learners, on tiny separable data (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustprune import Signals
from robustprune.data import make_dataset
from robustprune.models import build_model
from robustprune.train.batches import FeatureTransform, TrainData, index_batches
from robustprune.train.engine import Callback, DivergenceError, TrainConfig
from robustprune.train.inference import predict
from robustprune.train.learners import build_learner, co_divide, gmm_clean_prob, list_learners
from robustprune.train.recorders import DynamicsRecorder, EvalAccuracy

K, D, N = 3, 12, 96
FAST = {"dividemix": {"warmup_epochs": 1}, "sop": {"lr_u": 1.0, "lr_v": 10.0}}


def _tabular(n: int = N, seed: int = 0, nan_row: int | None = None) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(K, D, generator=g) * 3
    y = torch.arange(n) % K
    x = centers[y] + torch.randn(n, D, generator=g)
    mean, std = x.mean(0).tolist(), x.std(0).tolist()
    if nan_row is not None:
        x[nan_row] = float("nan")
    return TrainData(x, y, K, FeatureTransform(mean, std), FeatureTransform(mean, std, noise_std=0.1),
                     FeatureTransform(mean, std))  # fmt: skip


def _mlp():
    return build_model("mlp", K, in_channels=D, image_size=1, hidden=(16,))


def _learner(name: str, epochs: int = 3, **kw):
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=0.05, min_lr=1e-3, device="cpu")
    return build_learner(name, _mlp, K, N, cfg, **{**FAST.get(name, {}), **kw})


def _eval_ce(learner, data: TrainData) -> float:
    probs, _ = learner.predict(data.x, transform=data.clean)
    return float(F.nll_loss(torch.log(probs.clamp_min(1e-12)), data.labels))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Stop(Exception):
    pass


class _StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == self.epoch:
            raise _Stop


# ------------------------------------------------------------------------------------------- engine


def test_index_batches_cover_once_and_shard_without_duplicates():
    idx = torch.arange(0, 200, 2)  # a subset of global indices
    full = index_batches(idx, 16, seed=3, epoch=1)
    assert torch.equal(torch.cat(full).sort().values, idx)
    assert all(b.numel() >= 2 for b in full)
    assert torch.equal(torch.cat(full), torch.cat(index_batches(idx, 16, seed=3, epoch=1)))
    assert not torch.equal(torch.cat(full), torch.cat(index_batches(idx, 16, seed=3, epoch=2)))
    shards = [index_batches(idx, 8, seed=3, epoch=1, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    merged = torch.cat([torch.cat(s) for s in shards])
    assert merged.numel() == idx.numel() and torch.equal(merged.sort().values, idx)
    tail = index_batches(torch.arange(17), 16, seed=0, epoch=0)  # a lone last example is merged
    assert [b.numel() for b in tail] == [17]


def test_ce_loop_reduces_training_loss_and_leaves_global_rng_alone():
    data = _tabular()
    learner = _learner("ce")
    before = _eval_ce(learner, data)
    state = torch.get_rng_state()
    events = []
    result = learner.fit(data, progress=events.append)
    assert torch.equal(state, torch.get_rng_state())
    ends = [e for e in events if e.logs is not None]
    assert len(ends) == 3 and len(events) == 3 + 3 * 6  # 96 examples / batch 16 = 6 steps per epoch
    assert all(e.steps == 6 and e.epochs == 3 and e.stage == "train" for e in events)
    assert len(result.history) == 3 and result.history[-1]["loss"] < result.history[0]["loss"]
    assert _eval_ce(learner, data) < before
    assert result.history[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("name", list_learners())
def test_each_learner_reduces_loss_on_separable_data(name):
    data = _tabular()
    learner = _learner(name, epochs=4)
    before = _eval_ce(learner, data)
    learner.fit(data)
    after = _eval_ce(learner, data)
    assert after < before
    probs, feats = learner.predict(data.x, transform=data.clean)
    assert probs.shape == (N, K) and feats.shape == (N, 16)
    assert float((probs.argmax(1) == data.labels).float().mean()) > 0.8


def test_predict_keeps_index_order_and_mode():
    data = _tabular()
    model = _mlp()
    model.train()
    p, h = predict(model, data.x, 7, transform=data.clean)
    pr, hr = predict(model, data.x.flip(0), 50, transform=data.clean)
    assert model.training
    assert torch.allclose(p, pr.flip(0), atol=1e-6) and torch.allclose(h, hr.flip(0), atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(N))


def test_nan_loss_raises_divergence_error():
    data = _tabular(nan_row=5)
    with pytest.raises(RuntimeError, match=r"diverged.*epoch 1, step \d+") as info:
        _learner("ce").fit(data)
    assert isinstance(info.value, DivergenceError)


def test_bad_arguments_give_one_line_errors():
    with pytest.raises(ValueError, match="unknown learner 'nope'; known learners: ce, dividemix, elr, sop"):
        build_learner("nope", _mlp, K, N)
    with pytest.raises(ValueError, match="learner 'elr' has no option 'gamma'; valid: "):
        _learner("elr", gamma=1.0)
    assert {"ce", "dividemix", "elr", "sop"} <= set(list_learners())
    with pytest.raises(ValueError, match="cosine schedule"):
        _learner("ce").warmup(_tabular(), epochs=5)


# ---------------------------------------------------------------------------------------- recorders


def test_recorder_fills_only_trained_columns_in_global_order():
    data = _tabular()
    subset = np.arange(0, N, 3)
    rec = DynamicsRecorder(probs=True)
    _learner("ce").warmup(data, subset, epochs=2, callbacks=[rec])
    a = rec.arrays()
    assert a["correct"].shape == a["losses"].shape == a["margins"].shape == (2, N)
    assert a["probs"].shape == (2, N, K)
    others = np.setdiff1d(np.arange(N), subset)
    assert a["seen"][:, subset].all() and not a["seen"][:, others].any()
    assert np.isfinite(a["losses"][:, subset]).all() and np.isnan(a["losses"][:, others]).all()
    assert np.isnan(a["margins"][:, others]).all() and not a["correct"][:, others].any()
    seen = a["seen"]
    assert ((a["margins"] > 0) == a["correct"])[seen].all()
    assert (a["losses"][seen] > 0).all()
    with pytest.raises(ValueError, match="not trained on"):
        rec.signals_kwargs()
    kw = rec.signals_kwargs(subset)
    sig = Signals(labels=data.labels.numpy()[subset], **kw)
    assert sig.correct.shape == (2, subset.size)


def test_eval_accuracy_logs_every_epoch():
    data = _tabular()
    acc = EvalAccuracy(data.x, data.labels, transform=data.clean)
    result = _learner("ce").fit(data, callbacks=[acc])
    assert [e for e, _ in acc.history] == [1, 2, 3]
    assert all("test_acc" in h for h in result.history)


# --------------------------------------------------------------------------------------- checkpoint


@pytest.mark.parametrize("name", list_learners())
def test_resume_matches_uninterrupted_run_bit_for_bit(tmp_path, name):
    data = _tabular()
    subset = np.arange(N - 10)
    ref_rec = DynamicsRecorder()
    ref = _learner(name)
    ref.fit(data, subset, callbacks=[ref_rec])

    ckpt = tmp_path / "train.pt"
    with pytest.raises(_Stop):
        _learner(name).fit(data, subset, callbacks=[DynamicsRecorder(), _StopAt(2)], checkpoint=ckpt)
    assert ckpt.exists()
    rec = DynamicsRecorder()
    again = _learner(name)
    result = again.fit(data, subset, callbacks=[rec], checkpoint=ckpt)
    assert result.resumed_from == 2 and len(result.history) == 3
    for m_ref, m in zip(ref.models, again.models, strict=True):
        for (k, a), (_, b) in zip(m_ref.state_dict().items(), m.state_dict().items(), strict=True):
            assert torch.equal(a, b), k
    for k, v in ref.sample_state().items():
        assert torch.equal(v.nan_to_num(-7.0), again.sample_state()[k].nan_to_num(-7.0)), k
    assert torch.equal(ref_rec.losses.nan_to_num(-1.0), rec.losses.nan_to_num(-1.0))
    assert torch.equal(ref.optimizers[0].state_dict()["state"][0]["momentum_buffer"],
                       again.optimizers[0].state_dict()["state"][0]["momentum_buffer"])  # fmt: skip


def test_checkpoint_of_another_run_is_refused(tmp_path):
    data = _tabular()
    ckpt = tmp_path / "c.pt"
    _learner("ce").fit(data, epochs=1, checkpoint=ckpt)
    with pytest.raises(ValueError, match="different run.*indices_sha1"):
        _learner("ce").fit(data, np.arange(50), epochs=2, checkpoint=ckpt)


# ----------------------------------------------------------------------------------------- learners


def test_sop_uv_update_outside_the_model():
    data = _tabular()
    learner = _learner("sop")
    u0, v0 = learner.u.clone(), learner.v.clone()
    assert u0.shape == (N, 1) and v0.shape == (N, K) and float(u0.abs().max()) < 1e-6
    subset = np.arange(40)
    learner.warmup(data, subset, epochs=1)
    assert not torch.equal(learner.u[:40], u0[:40]) and not torch.equal(learner.v[:40], v0[:40])
    assert torch.equal(learner.u[40:], u0[40:]) and torch.equal(learner.v[40:], v0[40:])
    params = {p.data_ptr() for p in learner.model.parameters()}
    params |= {t.data_ptr() for t in learner.model.state_dict().values()}
    assert learner.u.data_ptr() not in params and learner.v.data_ptr() not in params


def test_sop_runs_on_images_with_strong_view():
    rng = np.random.default_rng(0)
    y = np.arange(48) % K
    x = np.zeros((48, 1, 8, 8), np.uint8)
    for c in range(K):
        x[y == c, :, :, 2 * c : 2 * c + 3] = 255
    x = np.clip(x.astype(int) + rng.integers(0, 30, x.shape), 0, 255).astype(np.uint8)
    ds = make_dataset("tiny", x, y, x[:6], y[:6], num_classes=K)
    data = TrainData.from_dataset(ds, device="cpu")
    cfg = TrainConfig(epochs=2, batch_size=16, device="cpu")
    learner = build_learner("sop", lambda: build_model("small_cnn", K, 1, 8, widths=(8,)), K, 48, cfg)
    result = learner.warmup(data, epochs=1)
    assert np.isfinite(result.history[0]["loss"])


def test_dividemix_split_and_degenerate_cases():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.1, 0.02, 60), rng.normal(2.0, 0.1, 20)])
    prob = gmm_clean_prob(losses, seed=0)
    assert prob[:60].min() > 0.5 and prob[60:].max() < 0.5
    mask = co_divide(prob, 0.5, 2)
    assert mask[:60].all() and not mask[60:].any()
    assert (gmm_clean_prob(np.ones(10), seed=0) == 1).all()
    assert (gmm_clean_prob(np.array([0.1, 5.0]), seed=0) == 1).all()
    low = co_divide(np.full(6, 0.1), 0.5, 2)
    assert low.sum() == 2


def test_dividemix_epoch_uses_labeled_and_unlabeled_sets():
    data = _tabular()
    noisy = data.labels.clone()
    noisy[:24] = (noisy[:24] + 1) % K  # a quarter of the labels wrong
    data = TrainData(data.x, noisy, K, data.weak, data.strong, data.clean)
    rec = DynamicsRecorder()
    learner = _learner("dividemix", epochs=3)
    result = learner.fit(data, callbacks=[rec])
    assert "labeled_fraction" not in result.history[0]  # its own warm-up on the subset
    frac = result.history[-1]["labeled_fraction"]
    assert 0 < frac < 1
    prob = learner.clean_prob
    assert torch.isfinite(prob).all()
    assert float(prob[:, 24:].mean()) > float(prob[:, :24].mean())
    tiny = _learner("dividemix", epochs=2).fit(data, [0, 1, 2], epochs=2)  # GMM degenerate: all clean
    assert tiny.history[-1]["labeled_fraction"] == 1.0


def test_elr_targets_update_only_for_trained_samples():
    data = _tabular()
    learner = _learner("elr")
    assert float(learner.targets.abs().sum()) == 0
    learner.fit(data, np.arange(30), epochs=2)
    t = learner.targets
    assert (t[:30].sum(1) > 0.5).all() and float(t[30:].abs().sum()) == 0
    assert torch.allclose(t[:30].sum(1), torch.full((30,), 1 - 0.7**2), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list_learners())
def test_learners_on_cuda_with_bf16_and_channels_last(name):
    rng = np.random.default_rng(0)
    n = 256
    y = np.arange(n) % K
    x = rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8)
    ds = make_dataset("tiny", x, y, x[:32], y[:32], num_classes=K)
    data = TrainData.from_dataset(ds, device="cuda")
    cfg = TrainConfig(epochs=3, batch_size=64, device="cuda")
    learner = build_learner(name, lambda: build_model("small_cnn", K, 3, 16, widths=(16, 32)), K, n, cfg,
                            **FAST.get(name, {}))  # fmt: skip
    rec = DynamicsRecorder()
    result = learner.fit(data, callbacks=[rec])
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert rec.seen[0].all()
    probs, feats = learner.predict(ds.x_test, transform=data.clean)
    assert probs.shape == (32, K) and feats.shape == (32, 32) and torch.isfinite(feats).all()
