"""Per-example loss weights: a weight of 2 counts as two copies of the example, in every learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustprune.models import build_model
from robustprune.train.batches import FeatureTransform, TrainData
from robustprune.train.engine import TrainConfig
from robustprune.train.learners import build_learner, list_learners

K, D, N = 3, 6, 24
FAST = {"dividemix": {"warmup_epochs": 1}, "sop": {"lr_u": 1.0, "lr_v": 10.0}}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(x: torch.Tensor, y: torch.Tensor) -> TrainData:
    mean, std = [0.0] * D, [1.0] * D
    t = FeatureTransform(mean, std)
    return TrainData(x, y, K, t, t, t)


def _base():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g) + torch.arange(N).remainder(K)[:, None].float()
    y = torch.randint(0, K, (N,), generator=g)
    return x, y


def _train(name: str, data: TrainData, indices=None, weights=None, epochs: int = 4):
    cfg = TrainConfig(epochs=epochs, batch_size=4 * N, lr=0.1, min_lr=1e-3, device="cpu", seed=3)
    # no batch norm: the statistics of a batch with copies differ from those of a weighted batch
    model_fn = lambda: build_model("mlp", K, in_channels=D, image_size=1, hidden=(8,), batch_norm=False)  # noqa: E731
    learner = build_learner(name, model_fn, K, data.num_samples, cfg, **FAST.get(name, {}))
    learner.fit(data, indices, weights=weights)
    return learner.predict(torch.linspace(-2, 3, 5 * D).reshape(5, D))[0]


@pytest.mark.parametrize("name", ["ce", "elr"])
def test_weight_two_matches_seeing_the_example_twice(name):
    x, y = _base()
    half = torch.arange(N // 2)
    weights = np.where(np.arange(N) < N // 2, 2.0, 1.0)
    weighted = _train(name, _data(x, y), weights=weights)
    twice = _train(name, _data(torch.cat([x, x[half]]), torch.cat([y, y[half]])))
    plain = _train(name, _data(x, y))
    torch.testing.assert_close(weighted, twice, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(weighted, plain, atol=1e-4)  # the weights did change the training


@pytest.mark.parametrize("name", list_learners())
def test_unit_weights_change_nothing_and_other_weights_do(name):
    x, y = _base()
    data = _data(x, y)
    idx = np.arange(0, N, 2)
    plain = _train(name, data, idx, epochs=3)
    ones = _train(name, data, idx, weights=np.ones(idx.shape[0]), epochs=3)
    torch.testing.assert_close(plain, ones, atol=1e-6, rtol=1e-5)
    uneven = _train(name, data, idx, weights=np.linspace(0.2, 5.0, idx.shape[0]), epochs=3)
    assert not torch.allclose(plain, uneven, atol=1e-5)


def test_bad_weights_are_refused():
    x, y = _base()
    with pytest.raises(ValueError, match="weights has 3 entries"):
        _train("ce", _data(x, y), np.arange(5), weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        _train("ce", _data(x, y), np.arange(3), weights=[1.0, 0.0, 1.0])
