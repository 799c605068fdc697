"""Dataset loaders, each on small files written here in the real formats (no network)."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import robustprune.data.download as dl
import robustprune.data.idx as idx_mod
from robustprune.data import (
    CIFAR100_COARSE,
    CIFAR100_SUPERCLASSES,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_SYSTEM_DIR,
    ArrayDataset,
    convert_cifar_n,
    download_file,
    get_dataset_info,
    list_datasets,
    load_cifar_n_labels,
    load_dataset,
    make_dataset,
    read_idx,
    stratified_indices,
    stratified_split,
)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg, f"error message should be one line: {msg!r}"
    return msg


# ---------------------------------------------------------------------------------------------------------
# IDX


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    head = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_mnist_files(folder: Path, n_train=30, n_test=12, gz=True, dotted=False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrs = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem, a in arrs.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        write_idx(folder / (name + (".gz" if gz else "")), a, gz)
    return arrs


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = read_idx(write_idx(tmp_path / "a", a, gz), expect_magic=2051)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4) and (out == a).all() and out.flags.writeable
    b = np.array([-5, 70000, 3], dtype=np.int32)
    assert (read_idx(write_idx(tmp_path / "b", b, gz)) == b).all()


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda raw: raw[:-5], "truncated"),
        (lambda raw: raw + b"\x00", "longer than its header"),
        (lambda raw: raw[:10], "truncated"),
        (lambda raw: b"\x12\x34" + raw[2:], "not an IDX file"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path, damage, match):
    raw = idx_bytes(np.zeros((4, 5, 5), np.uint8))
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(damage(raw)))
    with pytest.raises(ValueError, match=match) as e:
        read_idx(p, expect_magic=2051)
    one_line(e)


def test_read_idx_corrupt_gzip_and_wrong_magic(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 2, 2), np.uint8)))[:-12])
    with pytest.raises(ValueError, match="gzip") as e:
        read_idx(p)
    one_line(e)
    labels = write_idx(tmp_path / "labels", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="magic number 2049, expected 2051") as e:
        read_idx(labels, expect_magic=2051)
    one_line(e)


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, True)])
def test_mnist_loader(tmp_path, gz, dotted):
    arrs = make_mnist_files(tmp_path, gz=gz, dotted=dotted)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert isinstance(ds, ArrayDataset)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (12, 1, 28, 28) and ds.y_test.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.is_image
    assert (ds.x_train[:, 0].numpy() == arrs["train-images-idx3-ubyte"]).all()
    assert ds.mean[0] == pytest.approx(arrs["train-images-idx3-ubyte"].mean() / 255)
    assert ds.std[0] == pytest.approx(arrs["train-images-idx3-ubyte"].std() / 255, rel=1e-6)


def test_fashion_mnist_torchvision_layout_and_alias(tmp_path):
    make_mnist_files(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fmnist", tmp_path)
    assert ds.name == "fashion-mnist" and ds.class_names == FASHION_MNIST_CLASSES and ds.num_train == 30


def test_idx_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist") as e:
        load_dataset("mnist", data_dir=tmp_path / "nope")
    one_line(e)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz") as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line(e)
    arrs = make_mnist_files(tmp_path)
    # labels file where the images should be: wrong magic
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrs["train-labels-idx1-ubyte"])
    with pytest.raises(ValueError, match="magic number 2049") as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line(e)
    # images and labels disagree in N
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrs["train-images-idx3-ubyte"][:5])
    with pytest.raises(ValueError, match="disagree") as e:
        load_dataset("mnist", data_dir=tmp_path)
    one_line(e)


def test_unknown_dataset_and_option():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known datasets: arrays, cifar10") as e:
        load_dataset("imagenet")
    one_line(e)
    with pytest.raises(ValueError, match="unknown option 'colour' for dataset 'digits'") as e:
        load_dataset("digits", colour=True)
    one_line(e)
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "arrays"} <= set(list_datasets())
    assert "download" in get_dataset_info("cifar-10").options


@pytest.mark.skipif(
    not (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.delenv("ROBUSTPRUNE_DATA", raising=False)
    ds = load_dataset("fashion-mnist", subset=2000, test_subset=500)
    assert ds.x_train.shape == (2000, 1, 28, 28) and ds.num_test == 500
    assert np.bincount(ds.y_train.numpy()).tolist() == [200] * 10
    assert ds.info["source"] == str(FASHION_MNIST_SYSTEM_DIR)
    assert 0.2 < ds.mean[0] < 0.4


# ---------------------------------------------------------------------------------------------------------
# downloads (fetch monkeypatched; never the network)


def test_download_file_verifies_checksum(tmp_path, monkeypatch):
    payload = b"hello robustprune"
    calls = []

    def fake_fetch(url, dest):
        calls.append(url)
        Path(dest).write_bytes(payload)

    monkeypatch.setattr(dl, "fetch_url", fake_fetch)
    good = hashlib.sha256(payload).hexdigest()
    out = download_file("http://x/f.bin", tmp_path / "f.bin", sha256=good)
    assert out.read_bytes() == payload and len(calls) == 1
    download_file("http://x/f.bin", tmp_path / "f.bin", sha256=good)  # present and valid: no fetch
    assert len(calls) == 1
    with pytest.raises(ValueError, match="checksum mismatch") as e:
        download_file("http://x/g.bin", tmp_path / "g.bin", md5="0" * 32)
    one_line(e)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # partial download removed
    with pytest.raises(ValueError, match="checksum"):
        download_file("http://x/h.bin", tmp_path / "h.bin")


def test_failed_download_names_the_url_and_leaves_no_empty_folder(tmp_path, monkeypatch):
    import urllib.error

    def offline(url, dest):
        Path(dest).write_bytes(b"partial")
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(dl, "fetch_url", offline)
    monkeypatch.setitem(idx_mod.RESOURCES, "mnist", ("http://mirror.example/mnist/", {"a.gz": "0" * 32}))
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(OSError, match="could not download http://mirror.example/mnist/a.gz: Temporary failure"):
        load_dataset("mnist", data_dir=root, download=True)
    assert list(root.iterdir()) == []  # neither the partial file nor an empty mnist/ folder


def test_mnist_download_flow(tmp_path, monkeypatch):
    src = tmp_path / "server"
    make_mnist_files(src)
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in src.iterdir()}
    monkeypatch.setitem(idx_mod.RESOURCES, "mnist", ("http://mirror/", md5s))
    monkeypatch.setattr(
        dl, "fetch_url", lambda url, dest: Path(dest).write_bytes((src / url.rsplit("/")[-1]).read_bytes())
    )
    root = tmp_path / "data"
    root.mkdir()
    ds = load_dataset("mnist", data_dir=root, download=True)
    assert ds.num_train == 30 and (root / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


# ---------------------------------------------------------------------------------------------------------
# digits, splits, subsets


def test_digits_shapes_and_determinism():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert a.x_train.shape == (1198, 1, 8, 8) and a.x_test.shape == (599, 1, 8, 8)
    assert a.x_train.dtype == torch.uint8 and int(a.x_train.max()) == 255
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    counts_test = np.bincount(a.y_test.numpy())
    assert counts_test.min() >= 58 and counts_test.max() <= 61  # a third of 174..183 per class
    c = load_dataset("digits", split_seed=1)
    assert not torch.equal(a.y_train, c.y_train)
    assert "digits" in a.describe()


def test_stratified_indices():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    idx = stratified_indices(y, 37, seed=3)
    assert idx.size == 37 and np.unique(idx).size == 37 and (np.diff(idx) > 0).all()
    assert np.abs(np.bincount(y[idx], minlength=4) - 37 * np.array([0.1, 0.2, 0.3, 0.4])).max() < 1
    assert (stratified_indices(y, 37, seed=3) == idx).all()
    assert not (stratified_indices(y, 37, seed=4) == idx).all()
    with pytest.raises(ValueError, match=r"\[1, 100\]") as e:
        stratified_indices(y, 101)
    one_line(e)
    tr, te = stratified_split(y, 0.25, seed=0)
    assert tr.size == 75 and te.size == 25 and np.intersect1d(tr, te).size == 0


def test_subset_option():
    ds = load_dataset("digits", subset=100, test_subset=50, subset_seed=2)
    assert ds.num_train == 100 and ds.num_test == 50
    assert np.bincount(ds.y_train.numpy()).tolist() == [10] * 10
    assert torch.equal(ds.x_train, load_dataset("digits", subset=100, subset_seed=2).x_train)
    assert any("subset" in n for n in ds.info["notes"])


def test_array_dataset_validates():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"y_train must lie in \[0, 2\)") as e:
        make_dataset("t", x, [0, 1, 2, 0], x, [0, 1, 1, 0], num_classes=2)
    one_line(e)
    with pytest.raises(ValueError, match="add a channel axis") as e:
        make_dataset("t", np.zeros((4, 2, 2)), [0] * 4, x, [0] * 4)
    one_line(e)
    with pytest.raises(ValueError, match="share shape and dtype") as e:
        make_dataset("t", x, [0] * 4, x.float(), [0] * 4)
    one_line(e)


# ---------------------------------------------------------------------------------------------------------
# CIFAR


def write_cifar10(root: Path, per_batch=4, n_test=6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data, b"filenames": []}, f)
        xs.append(data)
        ys += labels
    data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"labels": list(range(n_test)), b"data": data}, f)
    return np.concatenate(xs), np.array(ys)


def test_cifar10_loader(tmp_path):
    data, labels = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.num_test == 6 and ds.class_names[9] == "truck" and len(ds.mean) == 3
    assert (ds.x_train[0, 0].numpy() == data[0, :1024].reshape(32, 32)).all()  # red plane first
    assert (ds.x_train[3, 2].numpy() == data[3, 2048:].reshape(32, 32)).all()
    assert (ds.y_train.numpy() == labels).all()
    # data_dir pointing at the batch folder itself works too
    assert load_dataset("cifar-10", tmp_path / "cifar-10-batches-py").num_train == 20


def test_cifar100_loader(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name, n in (("train", 8), ("test", 4)):
        fine = [int(v) for v in rng.integers(0, 100, n)]
        obj = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": fine,
               b"coarse_labels": [int(CIFAR100_COARSE[f]) for f in fine]}  # fmt: skip
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)
    ds = load_dataset("cifar100", tmp_path)
    assert ds.x_train.shape == (8, 3, 32, 32) and ds.num_classes == 100 and ds.class_names[0] == "apple"


def test_cifar_errors(tmp_path):
    with pytest.raises(ValueError, match="data_batch_1") as e:
        load_dataset("cifar10", tmp_path)
    one_line(e)
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="could not read CIFAR batch") as e:
        load_dataset("cifar10", tmp_path)
    one_line(e)


def test_cifar100_superclass_table():
    assert CIFAR100_COARSE.shape == (100,)
    assert np.bincount(CIFAR100_COARSE).tolist() == [5] * 20
    assert CIFAR100_COARSE[0] == 4 and CIFAR100_COARSE[99] == 13 and CIFAR100_COARSE[58] == 18
    assert len(CIFAR100_SUPERCLASSES) == 20


def cifar10n_dict(clean: np.ndarray, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"clean_label": clean}
    for key in ("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3"):
        out[key] = np.where(rng.random(clean.size) < 0.3, rng.integers(0, 10, clean.size), clean)
    return out


def test_cifar_n_labels_pt_and_npz(tmp_path):
    clean = np.random.default_rng(0).integers(0, 10, 50000)
    d = cifar10n_dict(clean)
    pt = tmp_path / "CIFAR-10_human.pt"
    torch.save(d, pt)
    worst = load_cifar_n_labels(pt, "worst")
    assert worst.dtype == np.int64 and (worst == d["worse_label"]).all()
    assert (load_cifar_n_labels(pt, "realA") == d["aggre_label"]).all()
    assert (load_cifar_n_labels(pt, "random_label2") == d["random_label2"]).all()
    npz = convert_cifar_n(pt, tmp_path / "c10n.npz")
    assert (load_cifar_n_labels(npz, "random3") == d["random_label3"]).all()
    with pytest.raises(ValueError, match="choose one of clean, aggregate, worst") as e:
        load_cifar_n_labels(pt, "noisy")
    one_line(e)
    with pytest.raises(ValueError, match="has 50000 labels but the training set has 100") as e:
        load_cifar_n_labels(pt, "worst", num_train=100)
    one_line(e)
    pt100 = tmp_path / "CIFAR-100_human.pt"
    torch.save({"clean_label": clean * 10, "noisy_label": (clean * 10 + 1) % 100}, pt100)
    assert (load_cifar_n_labels(pt100, "noisy") == (clean * 10 + 1) % 100).all()
    with pytest.raises(ValueError, match="does not exist"):
        load_cifar_n_labels(tmp_path / "missing.pt", "worst")


def test_cifar10_with_cifar_n_label_sets(tmp_path):
    _, labels = write_cifar10(tmp_path)
    pt = tmp_path / "CIFAR-10_human.pt"
    d = cifar10n_dict(labels)
    torch.save(d, pt)
    ds = load_dataset("cifar10", tmp_path, cifar_n=pt)
    assert set(ds.label_sets) == {"clean", "aggregate", "worst", "random1", "random2", "random3"}
    assert (ds.label_sets["worst"].numpy() == d["worse_label"]).all()
    sub = ds.select_train([0, 5, 7])
    assert sub.label_sets["worst"].tolist() == d["worse_label"][[0, 5, 7]].tolist()
    d["clean_label"] = (labels + 1) % 10
    torch.save(d, pt)
    with pytest.raises(ValueError, match="disagrees with the cifar10 training labels") as e:
        load_dataset("cifar10", tmp_path, cifar_n=pt)
    one_line(e)


# ---------------------------------------------------------------------------------------------------------
# image folders and user arrays


def test_imagefolder(tmp_path, monkeypatch):
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
                image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    ds = load_dataset("imagefolder", tmp_path, image_size=8)
    assert ds.x_train.shape == (6, 3, 8, 8) and ds.x_test.shape == (4, 3, 8, 8)
    assert ds.class_names == ("cat", "dog") and ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    caches = list((tmp_path / ".robustprune-cache").glob("*.npz"))
    assert len(caches) == 1
    import robustprune.data.folder as folder

    monkeypatch.setattr(folder, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("not cached")))
    again = load_dataset("imagefolder", tmp_path, image_size=8)
    assert torch.equal(again.x_train, ds.x_train)
    monkeypatch.undo()
    gray = load_dataset("imagefolder", tmp_path, image_size=4, grayscale=True)
    assert gray.input_shape == (1, 4, 4)
    with pytest.raises(ValueError, match="no train/ folder") as e:
        load_dataset("imagefolder", tmp_path / "train")
    one_line(e)


def test_arrays_loader(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 5))
    y = np.arange(50) % 5
    p = tmp_path / "tab.npz"
    np.savez(p, x=x, y=y, x_test=x[:10], y_test=y[:10])
    ds = load_dataset("arrays", path=p)
    assert ds.x_train.dtype == torch.float32 and ds.input_shape == (5,) and ds.num_test == 10
    assert len(ds.mean) == 5 and not ds.is_image
    np.savez(p, x=x, y=y)
    with pytest.warns(UserWarning, match="no x_test"):
        carved = load_dataset("arrays", p)
    assert carved.num_train == 40 and carved.num_test == 10 and "carved" in carved.info["test_split"]
    img = rng.integers(0, 256, (12, 6, 6, 3), dtype=np.uint8)
    np.savez(p, x=img, y=np.arange(12) % 3, x_test=img[:3], y_test=np.zeros(3, int), class_names=["a", "b", "c"])
    ds = load_dataset("arrays", path=p)
    assert ds.input_shape == (3, 6, 6) and ds.x_train.dtype == torch.uint8 and ds.class_names == ("a", "b", "c")
    assert (ds.x_train[1, 2].numpy() == img[1, :, :, 2]).all()
    np.savez(p, x=x)
    with pytest.raises(ValueError, match="lacks key 'y'") as e:
        load_dataset("arrays", path=p)
    one_line(e)
    with pytest.raises(ValueError, match="does not exist") as e:
        load_dataset("arrays", path=tmp_path / "none.npz")
    one_line(e)


def test_imagefolder_without_pillow_names_the_extra(tmp_path, monkeypatch):
    import sys

    import robustprune.data.folder as folder

    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"not decoded")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"robustprune\[images\]"):
        folder._decode([tmp_path / "train" / "a" / "0.png"], 8, "RGB")
