"""Models: the features/head contract, torchvision-compatible ResNet names, local weight loading."""

from __future__ import annotations

import pytest
import torch

from robustprune.models import build_model, list_models, load_weights

SHAPES = [
    ("mlp", 1, 8, {}),
    ("mlp", 64, 1, {"hidden": (32,)}),  # tabular: 64 columns
    ("lenet", 1, 8, {}),
    ("lenet", 1, 28, {}),
    ("lenet", 1, 1, {}),
    ("lenet", 3, 32, {"channels": (8, 12), "hidden": (32, 24)}),
    ("small_cnn", 1, 8, {}),
    ("small_cnn", 1, 28, {}),
    ("small_cnn", 3, 32, {}),
    ("preact_resnet18", 3, 32, {}),
    ("resnet18", 3, 32, {}),
    ("resnet18", 3, 32, {"cifar_stem": True}),
    ("resnet34", 3, 32, {}),
    ("resnet50", 3, 32, {}),
]
DIMS = {"small_cnn": 128, "preact_resnet18": 512, "resnet18": 512, "resnet34": 512, "resnet50": 2048}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(("name", "channels", "size", "kwargs"), SHAPES)
def test_features_head_forward_shapes(name, channels, size, kwargs):
    model = build_model(name, 5, channels, size, **kwargs).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        h = model.features(x)
        logits = model(x)
    if name in ("mlp", "lenet"):
        expected_dim = kwargs.get("hidden", (256, 256) if name == "mlp" else (120, 84))[-1]
    else:
        expected_dim = DIMS[name]
    assert model.feature_dim == expected_dim
    assert model.num_classes == 5
    assert h.shape == (2, expected_dim)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, model.head(h))


def test_registry_lists_every_model():
    assert set(list_models()) >= {"mlp", "lenet", "small_cnn", "preact_resnet18", "resnet18", "resnet34", "resnet50"}


def test_unknown_model_is_a_one_line_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg11'.*resnet18") as err:
        build_model("vgg11", 10)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small_cnn", bad)


def test_mlp_rejects_wrong_input_width():
    model = build_model("mlp", 3, 1, 8)
    with pytest.raises(ValueError, match="64 input values"):
        model(torch.randn(2, 10))


@pytest.mark.parametrize(
    ("name", "n_params", "n_entries"),
    [("resnet18", 11_689_512, 122), ("resnet34", 21_797_672, 218), ("resnet50", 25_557_032, 320)],
)
def test_resnet_sizes_match_torchvision(name, n_params, n_entries):
    with torch.device("meta"):  # structure only: no memory, no initialisation cost
        model = build_model(name, 1000, 3, 224)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert len(model.state_dict()) == n_entries


def test_resnet18_parameter_names_follow_torchvision():
    with torch.device("meta"):
        keys = set(build_model("resnet18", 1000, 3, 224).state_dict())
    expected = {
        "conv1.weight", "bn1.weight", "bn1.running_var", "bn1.num_batches_tracked",
        "layer1.0.conv1.weight", "layer1.0.bn1.bias", "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_mean",
        "layer4.1.bn2.running_mean", "layer4.1.conv2.weight", "fc.weight", "fc.bias",
    }  # fmt: skip
    assert expected <= keys
    assert not any("conv3" in k for k in keys)
    assert not any(k.startswith("layer1.0.downsample") for k in keys)


def test_resnet50_parameter_names_follow_torchvision():
    with torch.device("meta"):
        sd = build_model("resnet50", 1000, 3, 224).state_dict()
    for key in ("layer1.0.conv3.weight", "layer1.0.bn3.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.running_var", "layer4.2.conv3.weight", "fc.weight"):  # fmt: skip
        assert key in sd
    assert sd["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # stride on the 3x3 (v1.5)
    assert sd["fc.weight"].shape == (1000, 2048)


def test_cifar_stem():
    with torch.device("meta"):
        model = build_model("resnet18", 10, 3, 32, cifar_stem=True)
        standard = build_model("resnet18", 10, 3, 32)
    assert model.conv1.weight.shape == (64, 3, 3, 3)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert standard.conv1.weight.shape == (64, 3, 7, 7)


def test_preact_embedding_is_the_pooled_layer4_output_without_relu():
    model = build_model("preact_resnet18", 10, 3, 32).eval()
    with torch.no_grad():
        h = model.features(torch.randn(2, 3, 32, 32))
    assert (h < 0).any()


def test_channels_last_gives_the_same_output():
    model = build_model("small_cnn", 4, 3, 16).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    """A ResNet-18 (10 classes, ImageNet stem) saved as a plain state_dict, as torchvision files are."""
    torch.manual_seed(1)
    model = build_model("resnet18", 10, 3, 32).eval()
    path = tmp_path_factory.mktemp("weights") / "r18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_load_weights_round_trip(r18_file):
    src, path = r18_file
    dst = build_model("resnet18", 10, 3, 32).eval()
    result = load_weights(dst, path)
    assert result.head_loaded and not result.missing_keys and not result.unexpected_keys
    for key, value in src.state_dict().items():
        assert torch.equal(value, dst.state_dict()[key]), key
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


def test_load_weights_replaces_head_when_class_count_differs(r18_file):
    src, path = r18_file
    dst = build_model("resnet18", 3, 3, 32)
    fresh_fc = dst.fc.weight.detach().clone()
    with pytest.raises(ValueError, match="head='auto'"):
        load_weights(dst, path)
    result = load_weights(dst, path, head="auto")
    assert not result.head_loaded
    assert torch.equal(dst.fc.weight, fresh_fc)
    assert torch.equal(dst.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    dst.reset_head(10)
    assert load_weights(dst, path, head="auto").head_loaded
    assert torch.equal(dst.fc.weight, src.fc.weight)
    assert not load_weights(dst, path, head="drop").head_loaded


def test_load_weights_accepts_checkpoint_dicts_and_ddp_prefixes(tmp_path):
    src = build_model("small_cnn", 3, 1, 8)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = build_model("small_cnn", 3, 1, 8)
    load_weights(dst, path)
    assert torch.equal(dst.fc.weight, src.fc.weight)


def test_load_weights_errors(r18_file, tmp_path):
    _, path = r18_file
    model = build_model("resnet18", 10, 3, 32, cifar_stem=True)
    with pytest.raises(FileNotFoundError, match="only reads local files"):
        load_weights(model, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="shape mismatch for conv1.weight"):
        load_weights(model, path)
    with pytest.raises(ValueError, match="head must be one of"):
        load_weights(model, path, head="replace")
    partial = tmp_path / "partial.pth"
    torch.save({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}, partial)
    with pytest.raises(ValueError, match="missing from the file"):
        load_weights(model, partial)
    assert load_weights(model, partial, strict=False).missing_keys
    junk = tmp_path / "junk.pth"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        load_weights(model, junk)


def test_reset_head():
    model = build_model("mlp", 10, 1, 4)
    model.reset_head(4)
    assert model.num_classes == 4
    assert model.fc.out_features == 4
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 4)


def test_lenet_rejects_an_input_size_it_was_not_built_for():
    model = build_model("lenet", 10, 1, 28)
    with pytest.raises(ValueError, match="built for 28x28 inputs, got 32x32"):
        model(torch.randn(1, 1, 32, 32))


def test_lenet_learns_a_separable_toy_problem():
    # two classes: bright left half vs bright right half; a few SGD steps must fit them
    x = torch.zeros(64, 1, 28, 28)
    y = torch.arange(64) % 2
    x[y == 0, :, :, :14] = 1.0
    x[y == 1, :, :, 14:] = 1.0
    x += 0.1 * torch.randn_like(x)
    model = build_model("lenet", 2, 1, 28)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        first = float(torch.nn.functional.cross_entropy(model(x), y))
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    assert (model(x).argmax(1) == y).float().mean() > 0.95
