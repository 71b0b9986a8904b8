"""Women's E-Commerce Clothing Reviews: one review text, three tasks.

* ``rating``: the 1–5 star rating as 5 classes (default; label = stars − 1, cross-entropy,
  reported as accuracy) or, with ``rating: regression``, as a number (MSE, reported as RMSE).
  Classification is the default because it keeps the three losses on one scale: the MSE of raw
  stars starts ~25× above the other losses and, with equal weights, the shared encoder then
  serves the rating alone (measured: department accuracy stuck at the majority class).
* ``recommended``: binary (``Recommended IND``).
* ``department``: multiclass over the 6 departments in ``DEPARTMENTS``; the 14 rows without a
  department are masked out of this task only.

Input: the title and the review text joined, tokenised by ``WordTokenizer`` (lowercase word
split; vocabulary fitted on the training split only, words seen fewer than ``min_count`` times
map to the OOV id), truncated/padded to ``max_len`` ids. Rows with no words at all (no title
and no text: 844 of 23,486) are dropped. The remaining rows are split 80/10/10 with ``seed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mtlkit.data.datasets import EncodedInputs, RawSplits, locate_file, register_dataset
from mtlkit.data.datasets._files import verify_sha256
from mtlkit.data.schema import Schema, TaskSpec
from mtlkit.data.text import PAD_ID, WordTokenizer, tokenize
from mtlkit.errors import DataError

SUBDIR = "womens-clothing-reviews"
FILE = "reviews.parquet"
URL = "https://www.kaggle.com/datasets/nicapotato/womens-ecommerce-clothing-reviews"
SHA256 = "2d51764ec91b143fa437860e3ba459f7a18ee562aa0ff7b961d88ae3bebcbfbd"
DEPARTMENTS = ["Bottoms", "Dresses", "Intimate", "Jackets", "Tops", "Trend"]


def find_file(data_dir: str | None) -> Path:
    return locate_file(
        SUBDIR, data_dir, [FILE], f"reviews file {FILE!r}",
        f"It is the Women's E-Commerce Clothing Reviews table ({URL}) saved as Parquet; point "
        f"MTLKIT_DATA_DIR / data.data_dir at the folder holding {SUBDIR}/")


def read_reviews(path: Path, check: bool = True) -> pd.DataFrame:
    """The table with ``text`` (title + review), ``department_id`` and ``rating_class`` added;
    rows without any word dropped."""
    if check:
        verify_sha256(path, SHA256, URL)
    raw = pd.read_parquet(path)
    text = (raw["Title"].fillna("") + ". " + raw["Review Text"].fillna("")).str.strip(". ")
    frame = raw.assign(text=text)
    frame = frame[frame["text"].map(lambda t: len(tokenize(t)) > 0)].reset_index(drop=True)
    dept = frame["Department Name"]
    unknown = sorted(set(dept.dropna()) - set(DEPARTMENTS))
    if unknown:
        raise DataError(f"{path}: column 'Department Name' has unknown value(s) {unknown[:5]}; "
                        f"expected {DEPARTMENTS}")
    frame["department_id"] = dept.map({d: i for i, d in enumerate(DEPARTMENTS)})
    frame["rating_class"] = frame["Rating"] - 1
    frame.attrs["source"] = str(path)
    return frame


def reviews_tasks(rating: str = "multiclass") -> list[TaskSpec]:
    if rating not in ("regression", "multiclass"):
        raise ValueError(f"reviews: rating must be 'regression' or 'multiclass', got {rating!r}")
    rating_task = (TaskSpec(name="rating", type="regression", column="Rating")
                   if rating == "regression" else
                   TaskSpec(name="rating", type="multiclass", column="rating_class", num_classes=5))
    return [
        rating_task,
        TaskSpec(name="recommended", type="binary", column="Recommended IND"),
        TaskSpec(name="department", type="multiclass", column="department_id",
                 num_classes=len(DEPARTMENTS), allow_missing=True),
    ]


@register_dataset("reviews")
def reviews(
    data_dir: str | None = None, rating: Literal["multiclass", "regression"] = "multiclass",
    max_len: int = 100, min_count: int = 2, max_vocab: int | None = 20000,
    valid_fraction: float = 0.1, test_fraction: float = 0.1, n_train: int | None = None,
    seed: int = 0, verify: bool = True,
) -> RawSplits:
    """Review text → rating, recommended, department (see the module docstring)."""
    tasks = reviews_tasks(rating)
    frame = read_reviews(find_file(data_dir), verify)
    order = np.random.default_rng(seed).permutation(len(frame))
    n_valid, n_test = int(valid_fraction * len(order)), int(test_fraction * len(order))
    parts = {"valid": order[:n_valid], "test": order[n_valid:n_valid + n_test],
             "train": order[n_valid + n_test:][:n_train]}
    if min(len(p) for p in parts.values()) == 0:
        raise ValueError(f"reviews: empty split with {valid_fraction=}, {test_fraction=}, "
                         f"{n_train=}")
    frames = {}
    for split, rows in parts.items():
        frames[split] = frame.iloc[np.sort(rows)].reset_index(drop=True)
        frames[split].attrs["source"] = f"{frame.attrs['source']} ({split} split, seed {seed})"
    tokenizer = WordTokenizer(min_count, max_vocab).fit(frames["train"]["text"])
    features = {split: {"tokens": tokenizer.transform(f["text"], max_len)}
                for split, f in frames.items()}
    extra = {"vocab_size": tokenizer.vocab_size, "max_len": max_len, "pad_id": PAD_ID}
    return RawSplits(
        Schema(features=[], tasks=tasks), frames["train"], frames["valid"], frames["test"],
        description=f"Clothing reviews ({len(parts['train'])} train rows, "
                    f"vocabulary {tokenizer.vocab_size})",
        inputs=EncodedInputs("text", features, extra),
    )
