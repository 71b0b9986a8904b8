"""Built-in datasets, registered by name. Each returns raw splits plus their schema."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mtlkit.data.readers import ReadOptions
from mtlkit.data.schema import Schema
from mtlkit.errors import DatasetNotFoundError
from mtlkit.registry import Registry

DATA_DIR_ENV = "MTLKIT_DATA_DIR"


@dataclass
class RawSplits:
    """Raw (un-encoded) train/valid/test tables of one dataset and how to read new files."""

    schema: Schema
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame | None = None
    read_options: ReadOptions = field(default_factory=ReadOptions)
    description: str = ""
    #: model inputs the dataset encoded itself (images, token ids); None = tabular features
    inputs: EncodedInputs | None = None


@dataclass
class EncodedInputs:
    """Inputs that are not table columns, already encoded by the dataset (fitted on train).

    ``features[split]`` maps feature-group names to tensors whose rows align with the rows of
    that split's frame (the frames then hold only labels and row metadata). ``kind`` names the
    input module (``models.INPUTS``) and ``extra`` is what it needs (shape, vocabulary size...).
    Labels are still encoded from the frames by the task specs, like tabular data.
    """

    kind: str
    features: dict[str, dict[str, torch.Tensor]]
    extra: dict[str, Any] = field(default_factory=dict)


DATASETS: Registry[RawSplits] = Registry("dataset")
register_dataset = DATASETS.register


def data_dir_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where mtlkit looks for dataset files, in order."""
    out: list[Path] = []
    if data_dir is not None:
        out.append(Path(data_dir))
    if os.environ.get(DATA_DIR_ENV):
        out.append(Path(os.environ[DATA_DIR_ENV]))
    out += [Path("data"), Path("..") / "shared" / "data", Path.home() / ".cache" / "mtlkit"]
    return [p.expanduser() for p in out]


def resolve_data_dir(subdir: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Candidate folders for one dataset (``<data_dir>/<subdir>``)."""
    return [p / subdir for p in data_dir_candidates(data_dir)]


def locate_file(subdir: str, data_dir: str | os.PathLike | None, names: list[str], what: str,
                hint: str) -> Path:
    """The first ``<folder>/<name>`` that exists, over the candidate folders (in order) and
    ``names``; else a ``DatasetNotFoundError`` saying what was looked for and where, then
    ``hint`` (where to download it)."""
    tried = []
    for folder in resolve_data_dir(subdir, data_dir):
        for name in names:
            candidate = folder / name
            if candidate.exists():
                return candidate
            tried.append(candidate)
    raise DatasetNotFoundError(
        f"{what} not found; looked in: {', '.join(map(str, tried))}. {hint}")


def load_dataset(name: str, data_dir: str | None = None, **params) -> RawSplits:
    return DATASETS.create(name, data_dir=data_dir, **params)


# registration side effects
from mtlkit.data.datasets import (  # noqa: E402,F401
    alibaba,
    census,
    entire_space,
    multi_fashion,
    reviews,
    synthetic,
    table,
)
