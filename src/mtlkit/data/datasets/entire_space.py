"""Synthetic entire-space impressions with known click and conversion probabilities.

Each impression has a user id, an item id and ``n_context`` numeric context features. Users
and items carry hidden latent vectors ``f_u, e_i ~ N(0, I)``; the ground truth is

    CTR logit a = ctr_bias + 1.2·e_i0 + 0.8·f_u0 + 0.6·f_u1·e_i1 + 0.5·x0
    CVR logit b = cvr_bias + 1.0·e_i0 + 0.8·e_i2 + 0.6·f_u2 + 0.5·f_u2·e_i2 − 1.0·x0 + 0.5·x1

(``x`` only uses the first two context columns; the rest are noise). A latent would-convert
label ``z ~ Bernoulli(σ(b))`` exists for every impression, but is observed only after a click:
``click ~ Bernoulli(σ(a))`` and ``conversion = click · z``. The click and conversion processes
share the item-quality factor e_i0 but pull in opposite directions on the context x0, so the
clicked rows are a biased sample of the impression space (sample selection bias), and they are
few (data sparsity): the two problems ESMM addresses.

The frames also hold the truth, which is never a feature: ``true_ctr`` = σ(a),
``true_cvr`` = σ(b) and ``would_convert`` = z. CVR models can therefore be scored on ALL
impressions (AUC against z, or against the oracle σ(b)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlkit.data.datasets import RawSplits, register_dataset
from mtlkit.data.datasets.alibaba import esmm_tasks
from mtlkit.data.schema import FeatureSpec, Schema

TRUTH_COLUMNS = ["true_ctr", "true_cvr", "would_convert"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_entire_space(
    n: int, n_users: int = 500, n_items: int = 1000, n_context: int = 4,
    ctr_bias: float = -3.0, cvr_bias: float = -1.0, seed: int = 0,
) -> pd.DataFrame:
    """``n`` impressions drawn from one fixed population (users/items fixed by ``seed``)."""
    if n_context < 2:
        raise ValueError(f"n_context must be ≥ 2 (x0 and x1 drive the truth), got {n_context}")
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n_users, 3))
    e = rng.standard_normal((n_items, 3))
    user = rng.integers(0, n_users, n)
    item = rng.integers(0, n_items, n)
    x = rng.standard_normal((n, n_context))
    fu, ei = f[user], e[item]
    a = ctr_bias + 1.2 * ei[:, 0] + 0.8 * fu[:, 0] + 0.6 * fu[:, 1] * ei[:, 1] + 0.5 * x[:, 0]
    b = (cvr_bias + 1.0 * ei[:, 0] + 0.8 * ei[:, 2] + 0.6 * fu[:, 2] + 0.5 * fu[:, 2] * ei[:, 2]
         - 1.0 * x[:, 0] + 0.5 * x[:, 1])
    p_click, p_conv = _sigmoid(a), _sigmoid(b)
    click = (rng.random(n) < p_click).astype(np.int64)
    would = (rng.random(n) < p_conv).astype(np.int64)
    frame = pd.DataFrame({"user_id": [f"u{u}" for u in user], "item_id": [f"i{i}" for i in item]})
    for j in range(n_context):
        frame[f"x{j}"] = x[:, j].astype(np.float32)
    frame["click"], frame["conversion"] = click, click * would
    frame["true_ctr"], frame["true_cvr"], frame["would_convert"] = p_click, p_conv, would
    return frame


@register_dataset("entire-space")
def entire_space(
    data_dir: str | None = None, n_train: int = 100_000, n_valid: int = 20_000,
    n_test: int = 50_000, n_users: int = 500, n_items: int = 1000, n_context: int = 4,
    ctr_bias: float = -3.0, cvr_bias: float = -1.0, seed: int = 0,
) -> RawSplits:
    """Synthetic click → conversion impressions with ground truth (tasks ctr, cvr, ctcvr)."""
    n = n_train + n_valid + n_test
    frame = generate_entire_space(n, n_users, n_items, n_context, ctr_bias, cvr_bias, seed)
    features = [FeatureSpec(name="user_id", kind="categorical"),
                FeatureSpec(name="item_id", kind="categorical")]
    features += [FeatureSpec(name=f"x{j}", kind="numeric") for j in range(n_context)]
    schema = Schema(features=features, tasks=esmm_tasks("click", "conversion"))
    parts = np.split(np.arange(n), [n_train, n_train + n_valid])
    train, valid, test = (frame.iloc[p].reset_index(drop=True) for p in parts)
    for split, part in (("train", train), ("valid", valid), ("test", test)):
        part.attrs["source"] = f"entire-space synthetic ({split})"
    return RawSplits(schema, train, valid, test,
                     description="synthetic entire-space impressions with ground truth")
