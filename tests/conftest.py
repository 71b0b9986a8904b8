"""Shared fixtures: the data directory, seeding, and tiny tables."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MTLKIT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "census-income").exists():
        pytest.skip(f"real data not found at {DATA_DIR}; set MTLKIT_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def census_raw(data_dir):
    """Census-Income group 1 (raw splits), loaded once per session."""
    from mtlkit.data import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset("census-income", data_dir=str(data_dir))


def tiny_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A small mixed-type table with two binary tasks that depend on the features."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    score = size + (color == "red") * 1.5 + rng.normal(scale=0.5, size=n)
    return pd.DataFrame({
        "color": color,
        "shape": rng.choice(["circle", "square"], n),
        "size": size,
        "age": rng.integers(18, 80, n).astype(float),
        "click": (score > 0.5).astype(int),
        "like": (score + rng.normal(size=n) > 1.0).astype(int),
    })


TINY_FEATURES = [
    {"name": "color", "kind": "categorical"},
    {"name": "shape", "kind": "categorical"},
    {"name": "size", "kind": "numeric"},
    {"name": "age", "kind": "numeric"},
]
TINY_TASKS = [
    {"name": "click", "type": "binary", "column": "click"},
    {"name": "like", "type": "binary", "column": "like"},
]


def tiny_config(frame: pd.DataFrame | str, model: str = "mmoe", **train) -> dict:
    """A run config over ``tiny_table`` data (a DataFrame or a file path); a fresh copy."""
    return {
        "data": {"dataset": "table", "params": {
            "train": frame, "features": copy.deepcopy(TINY_FEATURES),
            "tasks": copy.deepcopy(TINY_TASKS)}},
        "model": {"name": model, "params": {"num_experts": 3, "expert_units": [8],
                                            "tower_units": [4]} if "moe" in model else {}},
        "train": {"epochs": 2, "batch_size": 32, "progress": False, "tensorboard": False,
                  **train},
    }


def interrupt_and_resume(monkeypatch, cfg: dict, run_dir: Path, stop) -> object:
    """Train ``cfg`` into ``run_dir``, interrupted (``KeyboardInterrupt``) right after the first
    checkpoint whose saved object satisfies ``stop(obj)``; then resume it to the end and return
    the resumed ``RunResult``."""
    from mtlkit import api
    from mtlkit.train import checkpoint as ckpt

    original = ckpt.atomic_save

    def save_then_die(obj, path):
        original(obj, path)
        if path.name == "checkpoint.pt" and stop(obj):
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "atomic_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, out=run_dir)
    monkeypatch.setattr(ckpt, "atomic_save", original)
    return api.train(cfg, out=run_dir, resume=True)


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def pytest_report_header(config) -> str:
    if (DATA_DIR / "census-income").exists():
        return f"mtlkit real data: {DATA_DIR}"
    return (f"mtlkit real data: NOT FOUND at {DATA_DIR}: the real-data tests will be skipped; "
            "set MTLKIT_DATA_DIR")


def pytest_terminal_summary(terminalreporter) -> None:
    if not (DATA_DIR / "census-income").exists():
        terminalreporter.write_line(
            f"NOTE: real data not found at {DATA_DIR}; the tests on real data were skipped. "
            "Set MTLKIT_DATA_DIR to the folder holding census-income/ to run them.", yellow=True)
