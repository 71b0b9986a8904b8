"""Multi-Fashion: two Fashion-MNIST items overlaid in one 36×36 image, one task per item.

Built like MultiMNIST (Sabour et al., 2017; the MTL version of Sener & Koltun, 2018): item A
is placed at the top-left (rows/cols 0–27) and item B at the bottom-right (rows/cols 8–35) of
a 36×36 canvas, and the two are merged by pixel-wise maximum, so they overlap in a 20×20
square. Task ``left`` classifies item A, task ``right`` item B (10 classes each).

Pairs are drawn within a split with a fixed seed: every image of the split is a left item
once, its partner is a seeded permutation of the same split. Validation images come from a
seeded hold-out of the 60,000 training images; test images from the 10,000 test images, so
no Fashion-MNIST item appears in two splits. Pixels are stored as uint8 ``[N, 1, 36, 36]``;
the train-split pixel mean/std go to the input module through ``InputSpec.extra``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtlkit.data.datasets import EncodedInputs, RawSplits, locate_file, register_dataset
from mtlkit.data.datasets._files import fetch, verify_sha256
from mtlkit.data.schema import Schema, TaskSpec
from mtlkit.errors import DataError

SUBDIR = "fashion-mnist"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
#: SHA-256 of the published gzip files
SHA256 = {
    "train-images-idx3-ubyte.gz":
        "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz":
        "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz":
        "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz":
        "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
CANVAS = 36
ITEM = 28


def verify(path: Path, expected: str | None = None, url: str | None = None) -> None:
    """Check a file against its published SHA-256 (default: the Fashion-MNIST file's)."""
    verify_sha256(path, expected or SHA256[path.name], url or BASE_URL + path.name)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip IDX file of unsigned bytes (magic 0x0000 08 <ndim>) into a uint8 array."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, offset=4))
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} but holds {len(body)} bytes")
    return np.frombuffer(body, np.uint8).reshape(shape)


def find_file(name: str, data_dir: str | None) -> Path:
    return locate_file(
        SUBDIR, data_dir, [name], f"Fashion-MNIST file {name!r}",
        f"Download it from {BASE_URL}{name} (mtlkit.data.datasets.multi_fashion.download(DIR)) "
        "or point MTLKIT_DATA_DIR / data.data_dir at the folder holding fashion-mnist/")


def download(data_dir: str | Path) -> list[Path]:
    """Fetch the four files into ``data_dir/fashion-mnist`` and verify their checksums."""
    target = Path(data_dir) / SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SHA256:
        path = target / name
        fetch(BASE_URL + name, path)
        verify(path)
        paths.append(path)
    return paths


def load_fashion(split: str, data_dir: str | None = None, check: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[N, 28, 28]`` and labels int64 ``[N]`` of the train or test file."""
    paths = [find_file(name, data_dir) for name in FILES[split]]
    if check:
        for path in paths:
            verify(path)
    images, labels = (read_idx(p) for p in paths)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (ITEM, ITEM):
        raise DataError(f"{paths[0]}: images {images.shape} do not match labels {labels.shape}")
    return images, labels.astype(np.int64)


def overlay(left: np.ndarray, right: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """``left`` at the top-left and ``right`` at the bottom-right of a square canvas, merged by
    pixel-wise max. ``[N, h, w]`` uint8 each → ``[N, canvas, canvas]``."""
    n, h, w = left.shape
    if right.shape != left.shape or h > canvas or w > canvas:
        raise ValueError(f"overlay: items {left.shape} / {right.shape} do not fit {canvas}²")
    out = np.zeros((n, canvas, canvas), dtype=left.dtype)
    out[:, :h, :w] = left
    np.maximum(out[:, canvas - h:, canvas - w:], right, out=out[:, canvas - h:, canvas - w:])
    return out


def make_pairs(images: np.ndarray, labels: np.ndarray, index: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, pd.DataFrame]:
    """Overlay each item of ``index`` (left) with a seeded partner from ``index`` (right)."""
    partner = index[rng.permutation(len(index))]
    pixels = overlay(images[index], images[partner])
    frame = pd.DataFrame({"left": labels[index], "right": labels[partner],
                          "left_item": index, "right_item": partner})
    return pixels, frame


TASKS = [TaskSpec(name=side, type="multiclass", column=side, num_classes=10)
         for side in ("left", "right")]


@register_dataset("multi-fashion")
def multi_fashion(
    data_dir: str | None = None, n_train: int | None = None, n_valid: int = 6000,
    n_test: int | None = None, seed: int = 0, verify: bool = True,
) -> RawSplits:
    """Multi-Fashion with ``n_train`` (default: all 60,000 − ``n_valid``) training pairs,
    ``n_valid`` validation pairs held out of the training file, ``n_test`` (default 10,000)
    test pairs; subsets and pairings are fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    train_images, train_labels = load_fashion("train", data_dir, verify)
    test_images, test_labels = load_fashion("test", data_dir, verify)
    order = rng.permutation(len(train_labels))
    max_train = len(order) - n_valid
    n_train = max_train if n_train is None else n_train
    n_test = len(test_labels) if n_test is None else n_test
    if not (0 < n_valid < len(order) and 0 < n_train <= max_train
            and 0 < n_test <= len(test_labels)):
        raise ValueError(f"multi-fashion: need 0 < n_valid, 0 < n_train ≤ 60000 − n_valid and "
                         f"0 < n_test ≤ 10000; got {n_train=}, {n_valid=}, {n_test=}")
    index = {"valid": np.sort(order[:n_valid]), "train": np.sort(order[n_valid:][:n_train]),
             "test": np.sort(rng.permutation(len(test_labels))[:n_test])}
    frames, features = {}, {}
    for split in ("train", "valid", "test"):
        images, labels = (test_images, test_labels) if split == "test" else (train_images,
                                                                              train_labels)
        pixels, frame = make_pairs(images, labels, index[split], rng)
        frame.attrs["source"] = f"multi-fashion {split} (seed {seed})"
        frames[split] = frame
        features[split] = {"image": torch.from_numpy(pixels).unsqueeze(1)}
    scaled = features["train"]["image"].float().div_(255.0)
    extra = {"channels": 1, "height": CANVAS, "width": CANVAS,
             "mean": round(float(scaled.mean()), 6), "std": round(float(scaled.std()), 6)}
    return RawSplits(
        Schema(features=[], tasks=TASKS), frames["train"], frames["valid"], frames["test"],
        description=f"Multi-Fashion ({n_train}/{n_valid}/{n_test} pairs, seed {seed})",
        inputs=EncodedInputs("image", features, extra),
    )
