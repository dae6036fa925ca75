"""Image dataset loaders of the robustness module."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from recon.errors import InputError
from recon.robust.data import FASHION_MNIST_DIR, load_dataset


def test_digits_shapes_range_and_disjoint_seeded_split():
    x, y = load_dataset("digits", "train", seed=3)
    xt, yt = load_dataset("digits", "test", seed=3)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1:] == (1, 8, 8) and len(x) + len(xt) == 1797
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.max()) == 1.0
    train_rows = {row.numpy().tobytes() for row in x.reshape(len(x), -1)}
    overlap = sum(row.numpy().tobytes() in train_rows for row in xt.reshape(len(xt), -1))
    # 8x8 digits contain a handful of exact duplicate images; a leaking split would share hundreds.
    assert overlap < 10
    again, _ = load_dataset("digits", "test", seed=3)
    other, _ = load_dataset("digits", "test", seed=4)
    assert torch.equal(again, xt) and not torch.equal(other, xt)
    assert torch.bincount(yt).min() >= 40  # stratified: every class in the test set


def test_limit_keeps_a_seeded_subset():
    x, y = load_dataset("digits", "train", limit=50, seed=1)
    x2, y2 = load_dataset("digits", "train", limit=50, seed=1)
    assert len(x) == 50 and torch.equal(x, x2) and torch.equal(y, y2)


def _write_idx(path, array: np.ndarray, gz: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 5), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, gz)
    x, y = load_dataset(f"idx:{tmp_path}", "test")
    assert x.shape == (7, 1, 5, 5)
    np.testing.assert_allclose(x[:, 0].numpy(), images / 255.0, atol=1e-7)
    assert y.tolist() == labels.tolist()
    with pytest.raises(InputError, match="train-images"):
        load_dataset(f"idx:{tmp_path}", "train")


def test_truncated_idx_is_an_input_error(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 4, 4)), gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3), gz=False)
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(InputError, match="truncated"):
        load_dataset(f"idx:{tmp_path}", "test")


def test_npz_channels_last_and_explicit_splits(tmp_path):
    rng = np.random.default_rng(0)
    last = rng.integers(0, 256, size=(20, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=last, y=np.arange(20) % 3)
    x, y = load_dataset(f"npz:{tmp_path / 'a.npz'}", "train")
    xt, _ = load_dataset(f"npz:{tmp_path / 'a.npz'}", "test")
    assert x.shape[1:] == (3, 6, 6) and len(x) + len(xt) == 20
    np.savez(
        tmp_path / "b.npz",
        x_train=last[:5] / 255.0,
        y_train=np.zeros(5, int),
        x_test=last[5:],
        y_test=np.ones(15, int),
    )
    xb, yb = load_dataset(f"npz:{tmp_path / 'b.npz'}", "test")
    assert xb.shape == (15, 3, 6, 6) and yb.tolist() == [1] * 15
    np.testing.assert_allclose(xb[0].numpy(), np.transpose(last[5], (2, 0, 1)) / 255.0, atol=1e-7)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("cifar-100", "unknown dataset"),
        ("npz:/nonexistent/x.npz", "does not exist"),
        ("idx:/nonexistent", "not a folder"),
    ],
)
def test_bad_names_are_input_errors(name, match):
    with pytest.raises(InputError, match=match):
        load_dataset(name)


def test_bad_split_and_limit():
    with pytest.raises(InputError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(InputError, match="limit"):
        load_dataset("digits", limit=0)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist():
    x, y = load_dataset("fashion-mnist", "test", limit=100)
    assert x.shape == (100, 1, 28, 28) and y.max() <= 9 and float(x.max()) <= 1.0
