"""Label noise: spec parsing, realised rates, transition structure, determinism, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robustprune.data import CIFAR100_COARSE
from robustprune.noise import (
    CIFAR10_ASYM_PAIRS,
    NoiseSpec,
    apply_noise,
    asym_map,
    estimate_transition_matrix,
    instance_noise,
    load_transition_matrix,
    pairs_map,
    parse_noise,
    symmetric_noise,
)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message should be one line: {msg!r}"
    return msg


def balanced(k: int, per: int) -> np.ndarray:
    return np.repeat(np.arange(k), per)


# ---------------------------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", NoiseSpec("none")),
        ("clean", NoiseSpec("none")),
        (None, NoiseSpec("none")),
        ("sym:0.2", NoiseSpec("sym", rate=0.2)),
        (" Symmetric:1 ", NoiseSpec("sym", rate=1.0)),
        ("asym:0.4", NoiseSpec("asym", rate=0.4)),
        ("asym_pairs:0.3", NoiseSpec("asym-pairs", rate=0.3)),
        ("instance:0", NoiseSpec("instance", rate=0.0)),
        ("matrix:some/T.npy", NoiseSpec("matrix", path="some/T.npy")),
        ("human", NoiseSpec("human")),
        ("human:worst", NoiseSpec("human", which="worst")),
    ],
)
def test_parse_noise(text, expected):
    assert parse_noise(text) == expected
    assert parse_noise(str(expected)) == expected  # the canonical string round-trips


@pytest.mark.parametrize(
    "text, match",
    [
        ("foo", "unknown noise spec 'foo'; expected none, sym:R, asym:R"),
        ("sym", "needs a rate"),
        ("sym:1.5", r"must be in \[0, 1\]"),
        ("asym:-0.1", r"must be in \[0, 1\]"),
        ("instance:nan", r"must be in \[0, 1\]"),
        ("sym:abc", "must be a number"),
        ("matrix:", "needs a file"),
        ("none:0.2", "takes no argument"),
    ],
)
def test_parse_noise_errors(text, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_noise(text)
    one_line(e)


# ---------------------------------------------------------------------------------------------------------
# symmetric


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.37, 0.5, 1.0])
def test_sym_exact_rate(rate):
    y = balanced(10, 101)
    noisy, rec = apply_noise(y, f"sym:{rate}", num_classes=10, seed=3)
    assert rec.num_flipped == round(rate * y.size) == int((noisy != y).sum())
    assert rec.realised_rate == pytest.approx(round(rate * y.size) / y.size)
    assert rec.transition.sum() == y.size and rec.transition.trace() == y.size - rec.num_flipped
    assert noisy.dtype == np.int64 and noisy.min() >= 0 and noisy.max() < 10


def test_sym_targets_uniform_and_seeded():
    y = balanced(5, 4000)
    a, _ = apply_noise(y, "sym:0.5", seed=0)
    b, _ = apply_noise(y, "sym:0.5", seed=0)
    c, _ = apply_noise(y, "sym:0.5", seed=1)
    assert (a == b).all() and not (a == c).all()
    t = estimate_transition_matrix(y, a, 5)
    off = t[~np.eye(5, dtype=bool)]
    assert np.allclose(off, 0.125, atol=0.03)  # 0.5 spread over 4 other classes


def test_sym_large_n_is_vectorised():
    y = np.random.default_rng(0).integers(0, 100, 300_000)
    noisy = symmetric_noise(y, 0.4, 100, seed=0)
    assert int((noisy != y).sum()) == 120_000


# ---------------------------------------------------------------------------------------------------------
# asymmetric


def test_asym_cifar10_moves_only_along_the_map():
    y = balanced(10, 2000)
    noisy, rec = apply_noise(y, "asym:0.4", num_classes=10, dataset="cifar10", seed=0)
    t = rec.transition
    allowed = np.eye(10, dtype=bool)
    for src, dst in CIFAR10_ASYM_PAIRS.items():
        allowed[src, dst] = True
    assert t[~allowed].sum() == 0
    for src, dst in CIFAR10_ASYM_PAIRS.items():
        assert t[src, dst] / 2000 == pytest.approx(0.4, abs=0.04)
    for c in (0, 1, 6, 7, 8):  # classes outside the map keep their labels
        assert t[c, c] == 2000
    assert rec.details["map_name"] == "patrini"
    again, _ = apply_noise(y, "asym:0.4", num_classes=10, dataset="cifar10", seed=0)
    assert (again == noisy).all()


def test_asym_cifar100_within_superclass():
    m = asym_map("cifar100", 100)
    assert (CIFAR100_COARSE[m] == CIFAR100_COARSE).all() and (m != np.arange(100)).all()
    assert np.unique(m).size == 100  # a permutation: one 5-cycle per superclass
    for coarse in range(20):
        members = np.flatnonzero(CIFAR100_COARSE == coarse)
        x, seen = members[0], set()
        for _ in range(5):
            seen.add(int(x))
            x = m[x]
        assert x == members[0] and seen == set(members.tolist())
    y = balanced(100, 50)
    _, rec = apply_noise(y, "asym:0.3", num_classes=100, dataset="cifar-100", seed=0)
    i, j = np.nonzero(rec.transition * (1 - np.eye(100, dtype=np.int64)))
    assert (m[i] == j).all()
    assert rec.realised_rate == pytest.approx(0.3, abs=0.03)


def test_asym_cyclic_default_and_release_pairs():
    assert asym_map(None, 4).tolist() == [1, 2, 3, 0]
    y = balanced(4, 500)
    _, rec = apply_noise(y, "asym:0.2", dataset="digits", seed=0)
    assert rec.details["map_name"] == "cyclic"
    i, j = np.nonzero(rec.transition * (1 - np.eye(4, dtype=np.int64)))
    assert ((i + 1) % 4 == j).all()
    p = pairs_map(10)
    assert (p[p] == np.arange(10)).all() and p[0] == 2 and p[1] == 9 and p[6] == 8
    _, rec = apply_noise(balanced(10, 300), "asym-pairs:0.3", seed=0)
    i, j = np.nonzero(rec.transition * (1 - np.eye(10, dtype=np.int64)))
    assert (p[i] == j).all() and len(i) == 10
    with pytest.raises(ValueError, match="10-class") as e:
        apply_noise(balanced(4, 10), "asym-pairs:0.3", seed=0)
    one_line(e)


# ---------------------------------------------------------------------------------------------------------
# instance-dependent


def test_instance_noise_rate_and_determinism():
    rng = np.random.default_rng(0)
    n, k = 4000, 10
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, 32)).astype(np.float32) + y[:, None] * 0.1
    a, rec = apply_noise(y, "instance:0.4", num_classes=k, features=x, seed=5)
    b = instance_noise(y, x, 0.4, k, seed=5)
    assert (a == b).all()
    assert rec.realised_rate == pytest.approx(0.4, abs=0.04)
    c = instance_noise(y, x, 0.4, k, seed=6)
    assert not (a == c).all()
    # instance dependence: the wrong class depends on the example, not only on its class
    assert (rec.transition[~np.eye(k, dtype=bool)] > 0).sum() > k
    assert (instance_noise(y, x, 0.0, k, seed=0) == y).all()
    low = instance_noise(y, x, 0.2, k, seed=0)
    assert np.mean(low != y) == pytest.approx(0.2, abs=0.04)


def test_instance_noise_on_images_and_errors():
    x = torch.randint(0, 256, (600, 1, 6, 6), dtype=torch.uint8)
    y = torch.arange(600) % 3
    noisy, rec = apply_noise(y, "instance:0.5", features=x, seed=0)
    assert isinstance(noisy, torch.Tensor) and noisy.dtype == torch.int64
    assert rec.realised_rate == pytest.approx(0.5, abs=0.07)
    with pytest.raises(ValueError, match="needs features") as e:
        apply_noise(y, "instance:0.5")
    one_line(e)
    with pytest.raises(ValueError, match="N = 600") as e:
        apply_noise(y, "instance:0.5", features=x[:10])
    one_line(e)


# ---------------------------------------------------------------------------------------------------------
# transition matrices


def test_matrix_noise_from_npy_and_csv(tmp_path):
    t = np.array([[0.6, 0.4, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    np.save(tmp_path / "T.npy", t)
    np.savetxt(tmp_path / "T.csv", t, delimiter=",")
    y = balanced(3, 4000)
    a, rec = apply_noise(y, f"matrix:{tmp_path / 'T.npy'}", seed=0)
    b, _ = apply_noise(y, f"matrix:{tmp_path / 'T.csv'}", seed=0)
    assert (a == b).all()
    assert np.abs(rec.transition_matrix() - t).max() < 0.03
    assert rec.transition[0, 2] == 0 and rec.transition[1, 1] == 4000  # zero-probability cells never hit
    assert rec.details["matrix_file"].endswith("T.npy")
    np.save(tmp_path / "I.npy", np.eye(3))
    ident, rec = apply_noise(y, f"matrix:{tmp_path / 'I.npy'}", seed=0)
    assert (ident == y).all() and rec.num_flipped == 0


@pytest.mark.parametrize(
    "matrix, num_classes, match",
    [
        (np.ones((2, 3)) / 3, None, "must be square"),
        (np.array([[0.5, 0.4], [0.0, 1.0]]), None, "row 0 sums to 0.9"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), None, "negative entry in row 0"),
        (np.eye(4), 3, "4x4 but the dataset has 3 classes"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), None, "NaN"),
    ],
)
def test_matrix_validation(tmp_path, matrix, num_classes, match):
    np.save(tmp_path / "bad.npy", matrix)
    with pytest.raises(ValueError, match=match) as e:
        apply_noise(np.array([0, 1, 1, 0]), f"matrix:{tmp_path / 'bad.npy'}", num_classes=num_classes)
    one_line(e)


def test_matrix_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as e:
        apply_noise(balanced(2, 3), f"matrix:{tmp_path / 'nope.npy'}")
    one_line(e)
    t = load_transition_matrix(np.array([[0.99995, 0.00005], [0, 1]]))
    assert np.allclose(t.sum(1), 1)


# ---------------------------------------------------------------------------------------------------------
# human labels, records


def test_human_noise_from_label_sets():
    y = balanced(10, 20)
    worst = (y + (np.arange(y.size) % 3 == 0)) % 10
    sets = {"clean": torch.as_tensor(y), "worst": torch.as_tensor(worst), "aggregate": torch.as_tensor(y)}
    noisy, rec = apply_noise(y, "human:worst", human_labels=sets)
    assert (noisy == worst).all() and rec.spec == "human:worst" and rec.seed is None
    assert rec.realised_rate == pytest.approx(np.mean(worst != y))
    with pytest.raises(ValueError, match="name the human label set") as e:
        apply_noise(y, "human", human_labels=sets)
    one_line(e)
    with pytest.raises(ValueError, match="unknown human label set 'random1'") as e:
        apply_noise(y, "human:random1", human_labels=sets)
    one_line(e)
    noisy, rec = apply_noise(y, "human", human_labels={"clean": y, "noisy": worst})
    assert rec.details["label_set"] == "noisy"
    with pytest.raises(ValueError, match="needs human_labels") as e:
        apply_noise(y, "human")
    one_line(e)
    with pytest.raises(ValueError, match="has 5 entries|5 entries") as e:
        apply_noise(y, "human", human_labels=worst[:5])
    one_line(e)


def test_record_is_json_and_input_kinds():
    y = torch.as_tensor(balanced(4, 25))
    noisy, rec = apply_noise(y, "sym:0.2", seed=0)
    assert isinstance(noisy, torch.Tensor)
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["spec"] == "sym:0.2" and d["num_flipped"] == 20 and d["seed"] == 0
    assert np.array(d["transition"]).shape == (4, 4)
    clean, rec = apply_noise(y.numpy(), "none")
    assert (clean == y.numpy()).all() and rec.num_flipped == 0 and rec.spec == "none"
    with pytest.raises(ValueError, match="num_classes is 3") as e:
        apply_noise(y, "sym:0.1", num_classes=3)
    one_line(e)
