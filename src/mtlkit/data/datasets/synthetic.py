"""The MMoE paper's synthetic two-task regression data (Ma et al., KDD 2018, §3).

1. Draw orthonormal u1, u2 ∈ R^d.
2. w1 = c·u1 and w2 = c·(p·u1 + sqrt(1 − p²)·u2), so cos(w1, w2) = p.
3. x ~ N(0, I_d).
4. y_i = w_iᵀx + Σ_{j=1..m} sin(α_j·w_iᵀx + β_j) + ε_i,  ε_i ~ N(0, σ²).

The sine terms make the label correlation a monotone but non-linear function of p, which is
how the paper controls task relatedness. α_j, β_j ~ N(0, 1) are drawn once per dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlkit.data.datasets import RawSplits, register_dataset
from mtlkit.data.schema import FeatureSpec, Schema, TaskSpec


def generate_synthetic(
    n: int, correlation: float, dim: int = 100, c: float = 1.0, m: int = 10,
    noise: float = 0.1, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return x [n, dim], y [n, 2] and the weight vectors w [2, dim]."""
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [-1, 1], got {correlation}")
    if dim < 2:
        raise ValueError(f"dim must be ≥ 2 to hold two orthogonal vectors, got {dim}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = c * u1
    w2 = c * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    alpha, beta = rng.standard_normal(m), rng.standard_normal(m)
    x = rng.standard_normal((n, dim))
    ys = []
    for w in (w1, w2):
        z = x @ w
        y = z + np.sin(np.outer(z, alpha) + beta).sum(axis=1) + noise * rng.standard_normal(n)
        ys.append(y)
    return x.astype(np.float32), np.stack(ys, axis=1).astype(np.float32), np.stack([w1, w2])


@register_dataset("synthetic")
def synthetic(
    data_dir: str | None = None, correlation: float = 0.5, dim: int = 100, n_train: int = 10000,
    n_valid: int = 1000, n_test: int = 1000, c: float = 1.0, m: int = 10, noise: float = 0.1,
    seed: int = 0,
) -> RawSplits:
    """MMoE paper §3 synthetic regression pair with label correlation set by ``correlation``."""
    n = n_train + n_valid + n_test
    x, y, _ = generate_synthetic(n, correlation, dim, c, m, noise, seed)
    cols = [f"x{j}" for j in range(dim)]
    frame = pd.DataFrame(x, columns=cols)
    frame["y1"], frame["y2"] = y[:, 0], y[:, 1]
    schema = Schema(
        features=[FeatureSpec(name=col, kind="numeric") for col in cols],
        tasks=[
            TaskSpec(name="task1", type="regression", column="y1"),
            TaskSpec(name="task2", type="regression", column="y2"),
        ],
    )
    parts = np.split(np.arange(n), [n_train, n_train + n_valid])
    train, valid, test = (frame.iloc[p].reset_index(drop=True) for p in parts)
    return RawSplits(schema, train, valid, test, description=f"MMoE synthetic, p={correlation}")
