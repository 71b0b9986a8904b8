"""Built-in datasets, registered by name. Each returns raw splits plus their schema."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mtlkit.data.readers import ReadOptions
from mtlkit.data.schema import Schema
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


def load_dataset(name: str, data_dir: str | None = None, **params) -> RawSplits:
    return DATASETS.create(name, data_dir=data_dir, **params)


# registration side effects
from mtlkit.data.datasets import (  # noqa: E402,F401
    alibaba,
    census,
    entire_space,
    synthetic,
    table,
)
