"""Whole-split metrics against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from mtlkit.data.schema import TaskSpec
from mtlkit.evaluate.metrics import roc_auc, task_metrics


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    s = np.round(rng.random(5000) + 0.3 * y, 2)  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_hand_computed():
    # pairs (pos, neg): (0.8>0.1) (0.8>0.4) (0.4=0.4 → ½) (0.4>0.1) → 3.5 / 4
    assert roc_auc(np.array([1, 0, 1, 0]), np.array([0.8, 0.4, 0.4, 0.1])) == 0.875


def test_single_class_gives_nan_and_warns():
    task = TaskSpec(name="share", column="share")
    with pytest.warns(UserWarning, match="'share'.*one class"):
        out = task_metrics(task, torch.tensor([0.2, 0.3]), torch.tensor([0.0, 0.0]), None)
    assert math.isnan(out["auc"])


def test_binary_metrics_match_sklearn_and_respect_mask():
    rng = np.random.default_rng(1)
    p = rng.random(100)
    y = rng.integers(0, 2, 100).astype(np.float32)
    mask = rng.random(100) > 0.3
    task = TaskSpec(name="t", column="t")
    out = task_metrics(task, torch.tensor(p), torch.tensor(y), torch.tensor(mask))
    assert out["auc"] == pytest.approx(roc_auc_score(y[mask], p[mask]))
    assert out["logloss"] == pytest.approx(log_loss(y[mask], p[mask]), rel=1e-6)


def test_regression_and_multiclass_metrics():
    reg = TaskSpec(name="r", type="regression", column="r")
    out = task_metrics(reg, torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0]), None)
    assert out["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert out["mae"] == pytest.approx(1.0)
    mc = TaskSpec(name="m", type="multiclass", column="m", num_classes=3)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    out = task_metrics(mc, probs, torch.tensor([0, 2, 1]), None)
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["logloss"] == pytest.approx(-(math.log(0.7) + math.log(0.6) + math.log(0.4)) / 3)
