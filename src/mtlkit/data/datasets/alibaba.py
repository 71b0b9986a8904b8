"""Ali-CCP and AliExpress (entire-space click → conversion logs), in the CSV layout of the
public samples (``ali-ccp-sample/{train,val,test}.csv``, ``aliexpress-sample/{train,test}.csv``).

Both give the ESMM task triple: ``ctr`` (click, all impressions), ``cvr`` (conversion on
clicked rows: ``sample_space: click``, ``loss: none`` by default, so it is reported on clicks
but not trained directly; override with ``data.tasks: {cvr: {loss: bce}}`` for a model that
trains CVR on clicks) and ``ctcvr`` (conversion over all impressions; a conversion implies a
click, and a conversion without a click is rejected by the cvr task's sample-space check).

* Ali-CCP: label columns ``click``, ``purchase``; dense columns ``D…`` are numeric, every
  other column is a categorical field id.
* AliExpress: label columns ``click``, ``conversion``; ``categorical_*`` and ``numerical_*``
  columns; ``search_id`` (a query identifier) is not a feature. There is no validation file:
  a seeded ``valid_fraction`` of the training rows is held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtlkit.data.datasets import RawSplits, register_dataset, resolve_data_dir
from mtlkit.data.readers import ReadOptions, read_table
from mtlkit.data.schema import FeatureSpec, Schema, TaskSpec
from mtlkit.errors import DatasetNotFoundError

READ = ReadOptions(format="csv")


def esmm_tasks(click: str, conversion: str) -> list[TaskSpec]:
    """The ESMM task triple over a click and a conversion column."""
    return [
        TaskSpec(name="ctr", column=click),
        TaskSpec(name="cvr", column=conversion, sample_space=click, loss="none"),
        TaskSpec(name="ctcvr", column=conversion),
    ]


def _find(subdir: str, files: list[str], data_dir: str | None) -> Path:
    tried = []
    for folder in resolve_data_dir(subdir, data_dir):
        tried.append(folder)
        if all((folder / f).exists() for f in files):
            return folder
    raise DatasetNotFoundError(
        f"{subdir}: files {files} not found; looked in: {', '.join(map(str, tried))}. Point "
        f"MTLKIT_DATA_DIR / data.data_dir at the folder holding {subdir}/"
    )


def _holdout(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    n_valid = max(1, round(fraction * len(order)))
    source = frame.attrs.get("source")
    valid = frame.iloc[np.sort(order[:n_valid])]
    train = frame.iloc[np.sort(order[n_valid:])]
    valid.attrs["source"], train.attrs["source"] = f"{source} (validation hold-out)", source
    return train, valid


@register_dataset("ali-ccp")
def ali_ccp(data_dir: str | None = None, subdir: str = "ali-ccp-sample") -> RawSplits:
    """Ali-CCP (Taobao) click/purchase logs with train/val/test files."""
    folder = _find(subdir, ["train.csv", "val.csv", "test.csv"], data_dir)
    train, valid, test = (read_table(folder / f, READ) for f in ("train.csv", "val.csv",
                                                                  "test.csv"))
    labels = {"click", "purchase"}
    features = [FeatureSpec(name=c, kind="numeric" if c.startswith("D") else "categorical")
                for c in train.columns if c not in labels]
    schema = Schema(features=features, tasks=esmm_tasks("click", "purchase"))
    return RawSplits(schema, train, valid, test, READ, "Ali-CCP (click → purchase)")


@register_dataset("aliexpress")
def aliexpress(
    data_dir: str | None = None, subdir: str = "aliexpress-sample", valid_fraction: float = 0.1,
    split_seed: int = 0,
) -> RawSplits:
    """AliExpress click/conversion logs (train/test files; validation held out of train)."""
    folder = _find(subdir, ["train.csv", "test.csv"], data_dir)
    train, test = read_table(folder / "train.csv", READ), read_table(folder / "test.csv", READ)
    train, valid = _holdout(train, valid_fraction, split_seed)
    features = [FeatureSpec(name=c, kind="categorical") for c in train.columns
                if c.startswith("categorical_")]
    features += [FeatureSpec(name=c, kind="numeric") for c in train.columns
                 if c.startswith("numerical_")]
    schema = Schema(features=features, tasks=esmm_tasks("click", "conversion"))
    return RawSplits(schema, train, valid, test, READ, "AliExpress (click → conversion)")
