"""Practice tools: focal/huber losses, row weights, negative sampling + calibration, partial
labels, gradient reversal and data-statistics auxiliary tasks (issue 5). Known answers only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import TINY_FEATURES, TINY_TASKS, tiny_config, tiny_table
from torch.nn import functional as F

from mtlkit import api
from mtlkit.data.auxiliary import apply_data_rules
from mtlkit.data.datasets import RawSplits
from mtlkit.data.encoders import TabularEncoder
from mtlkit.data.prepare import InputSpec, encode_frame
from mtlkit.data.sampling import negative_downsample
from mtlkit.data.schema import AdversarialSpec, Schema, TaskSpec
from mtlkit.data.store import TensorStore
from mtlkit.errors import ConfigError, DataError
from mtlkit.evaluate import compute_metrics, roc_auc
from mtlkit.losses import LOSSES, TaskLosses, masked_mean
from mtlkit.losses.calibration import NegativeSamplingCalibration, recalibrate
from mtlkit.models import create_model
from mtlkit.models.adversarial import grad_reverse, grl_lambda, pool_representation
from mtlkit.train.trainer import resolve_monitor

LOGITS = torch.tensor([-2.0, 0.0, 1.0, 3.0])
TARGETS = torch.tensor([0.0, 1.0, 1.0, 0.0])


# ------------------------------------------------------------------------------ losses
def test_focal_gamma0_is_bce_exactly():
    focal = LOSSES.create("focal", gamma=0.0, alpha=None)
    bce = F.binary_cross_entropy_with_logits(LOGITS, TARGETS, reduction="none")
    assert torch.equal(focal(LOGITS, TARGETS), bce)


def test_focal_gamma2_hand_computed():
    # −(1 − p_t)² log p_t, computed with math on the 4 fixed logits
    expected = [0.0018035628352403763, 0.17328679513998632, 0.022658057508467326,
                2.7662804410252657]
    got = LOSSES.create("focal", gamma=2.0)(LOGITS.double(), TARGETS.double())
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_focal_alpha_weights_classes():
    plain = LOSSES.create("focal", gamma=2.0)(LOGITS, TARGETS)
    alpha = LOSSES.create("focal", gamma=2.0, alpha=0.25)(LOGITS, TARGETS)
    factor = torch.tensor([0.75, 0.25, 0.25, 0.75])  # α for positives, 1 − α for negatives
    torch.testing.assert_close(alpha, plain * factor)


def test_loss_params_are_validated():
    with pytest.raises(ConfigError, match="gamma"):
        LOSSES.create("focal", gamma=-1.0)
    with pytest.raises(ConfigError, match="alpha"):
        LOSSES.create("focal", alpha=1.5)
    with pytest.raises(ConfigError, match="delta"):
        LOSSES.create("huber", delta=0.0)


def test_huber_hand_computed():
    pred, target = torch.tensor([0.5, 2.0, -3.0, 0.0]), torch.zeros(4)
    # |e| ≤ δ: ½e²; beyond: δ(|e| − ½δ)
    assert LOSSES.create("huber", delta=1.0)(pred, target).tolist() == [0.125, 1.5, 2.5, 0.0]
    assert LOSSES.create("huber", delta=2.0)(pred, target).tolist() == [0.125, 2.0, 4.0, 0.0]


def _bce(x: float, y: float) -> float:
    p = 1 / (1 + math.exp(-x))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_masked_loss_on_4_rows_hand_computed():
    tasks = [TaskSpec(name="a", column="a"), TaskSpec(name="b", column="b")]
    mask = torch.tensor([True, False, True, True])
    none = torch.zeros(4, dtype=torch.bool)
    result = TaskLosses(tasks)({"a": LOGITS, "b": LOGITS}, {"a": TARGETS, "b": TARGETS},
                               {"a": mask, "b": none})
    expected = (_bce(-2, 0) + _bce(1, 1) + _bce(3, 0)) / 3
    assert result.values[0].item() == pytest.approx(expected, rel=1e-6)
    # an all-masked task: zero loss, marked absent, finite total and gradients
    assert result.values[1].item() == 0.0
    assert result.present.tolist() == [True, False]
    logits = LOGITS.clone().requires_grad_()
    r = TaskLosses(tasks)({"a": logits, "b": logits}, {"a": TARGETS, "b": TARGETS},
                          {"a": none, "b": none})
    r.values.sum().backward()
    assert torch.isfinite(r.values).all() and torch.equal(logits.grad, torch.zeros(4))


def test_sample_and_class_weights_hand_computed():
    task = TaskSpec(name="a", column="a", sample_weight="w", negative_weight=0.5,
                    positive_weight=2.0)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    mask = torch.tensor([True, True, False, True])
    result = TaskLosses([task])({"a": LOGITS}, {"a": TARGETS}, {"a": mask}, {"a": w})
    # Σ m·w·cls·ℓ / Σ m  (divided by the row count, not by Σ w)
    expected = (1.0 * 0.5 * _bce(-2, 0) + 2.0 * 2.0 * _bce(0, 1) + 3.0 * 0.5 * _bce(3, 0)) / 3
    assert result.values[0].item() == pytest.approx(expected, rel=1e-6)
    assert masked_mean(torch.ones(4), None, w).item() == pytest.approx(6.5 / 4)


def test_class_weights_only_for_binary():
    with pytest.raises(ValueError, match="only apply to binary"):
        TaskSpec(name="r", column="r", type="regression", negative_weight=0.1)


def test_sample_weight_column_flows_through_the_store():
    frame = tiny_table(40)
    frame["w"] = np.arange(40, dtype=float)
    tasks = [{**TINY_TASKS[0], "sample_weight": "w"}, TINY_TASKS[1]]
    schema = Schema(features=TINY_FEATURES, tasks=tasks)
    store = encode_frame(TabularEncoder(schema).fit(frame), frame)
    assert store.weights["like"] is None
    batch = next(store.batches(8, order=torch.arange(39, -1, -1)))
    assert batch.weights["click"].tolist() == list(range(39, 31, -1))
    assert store.subset(torch.tensor([3, 5])).weights["click"].tolist() == [3.0, 5.0]
    frame.loc[7, "w"] = -1.0
    with pytest.raises(DataError, match=r"'w' row 7"):
        encode_frame(TabularEncoder(schema).fit(frame), frame)


# ------------------------------------------------------------- sampling and calibration
def test_calibration_formula_fixed_values():
    p = torch.tensor([0.5, 0.1, 0.9, 0.0, 1.0], dtype=torch.float64)
    q = recalibrate(p, 0.1)
    expected = [0.5 / (0.5 + 0.5 / 0.1), 0.1 / (0.1 + 0.9 / 0.1), 0.9 / (0.9 + 0.1 / 0.1), 0, 1]
    assert q.tolist() == pytest.approx(expected, rel=1e-12)
    assert expected[0] == pytest.approx(1 / 11)
    # the same thing as a logit shift by log w
    logit = torch.logit(p[:3])
    torch.testing.assert_close(torch.logit(q[:3]), logit + math.log(0.1))
    assert torch.equal(recalibrate(p, 1.0), p)
    cal = NegativeSamplingCalibration({"a": 0.1})
    out = cal({"a": p, "b": p})
    assert torch.equal(out["b"], p) and torch.equal(out["a"], q)
    with pytest.raises(ConfigError):
        recalibrate(p, 0.0)


def test_negative_downsample_keeps_positives_and_unlabelled_rows():
    labels = torch.tensor([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=torch.float32)
    mask = torch.ones(12, dtype=torch.bool)
    mask[2] = False  # unlabelled: not a negative, always kept
    store = TensorStore({"x": torch.arange(12)}, {"a": labels}, {"a": mask})
    sub, info = negative_downsample(store, "a", 0.5, seed=3)
    assert info["negatives"] == 9 and info["negatives_kept"] == 4 and info["rate"] == 4 / 9
    kept = set(sub.features["x"].tolist())
    assert {0, 5, 2} <= kept and len(kept) == 3 + 4
    again, _ = negative_downsample(store, "a", 0.5, seed=3)
    assert torch.equal(again.features["x"], sub.features["x"])
    with pytest.raises(ConfigError, match="not a task"):
        negative_downsample(store, "b", 0.5)


def _rate_table(n: int, seed: int) -> pd.DataFrame:
    """Known positive rate: P(y = 1 | g) = RATES[g]."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)
    y = rng.random(n) < np.array([0.01, 0.03, 0.08, 0.15])[g]
    return pd.DataFrame({"g": g.astype(str), "noise": rng.normal(size=n), "y": y.astype(int)})


def test_sampled_then_calibrated_mean_matches_positive_rate(tmp_path):
    train, test = _rate_table(30000, 0), _rate_table(30000, 1)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    cfg = {
        "data": {"dataset": "table", "params": {
            "train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv"),
            "features": [{"name": "g", "kind": "categorical"},
                         {"name": "noise", "kind": "numeric"}],
            "tasks": [{"name": "y", "column": "y"}]},
            "negative_sampling": {"task": "y", "rate": 0.1, "seed": 0}},
        "model": {"name": "shared_bottom", "params": {"bottom_units": [8], "tower_units": [4]}},
        "train": {"epochs": 8, "batch_size": 128, "progress": False, "tensorboard": False,
                  "optimizer": {"lr": 0.01}, "patience": None,
                  # calibrated validation log-loss picks the epoch (AUC saturates at once)
                  "monitor": {"metric": "logloss"}},
    }
    result = api.train(cfg, out=tmp_path / "run")
    assert result.results["negative_sampling"]["rate"] == pytest.approx(0.1, abs=1e-4)
    true_rate = np.array([0.01, 0.03, 0.08, 0.15]).mean()  # 0.0675
    predictor = api.load(tmp_path / "run")  # the rate travels with the model
    assert predictor.bundle["calibration"]["negative_sampling"]["y"] == pytest.approx(0.1, 1e-3)
    calibrated = predictor.predict(test)["y"].mean()
    raw = api.Predictor(predictor.bundle)
    raw.calibrate = None
    uncalibrated = raw.predict(test)["y"].mean()
    assert abs(calibrated / true_rate - 1) < 0.05
    assert uncalibrated > 3 * true_rate  # ≈ 0.42 without calibration
    # a caller's calibrate runs after the saved one
    doubled = api.Predictor(predictor.bundle, calibrate=lambda p: {k: 2 * v for k, v in p.items()})
    assert doubled.predict(test)["y"].mean() == pytest.approx(2 * calibrated, rel=1e-6)


# ------------------------------------------------------------------ partial labels
def test_partial_labels_end_to_end(tmp_path):
    frame = tiny_table(300)
    frame["like"] = frame["like"].astype(float)
    frame.loc[::3, "like"] = np.nan  # a third of the rows have no 'like' label
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(str(tmp_path / "t.csv"), epochs=1, batch_size=3)
    cfg["data"]["params"]["tasks"] = [TINY_TASKS[0], {**TINY_TASKS[1], "allow_missing": True}]
    data = api.load_data(api._as_config(cfg, None))
    mask = data.stores["train"].masks["like"]
    assert mask is not None and data.stores["train"].masks["click"] is None
    # batches of 3 rows where 'like' may be all-masked: losses stay finite
    result = api.train(cfg, data=data)
    assert math.isfinite(result.results["valid"]["like"]["auc"])
    valid = data.stores["valid"]
    preds = {"click": torch.rand(len(valid)), "like": torch.rand(len(valid))}
    m = valid.masks["like"]
    metrics = compute_metrics(data.raw.schema.tasks, preds, valid.labels, valid.masks)
    assert metrics["like"]["auc"] == roc_auc(valid.labels["like"][m].numpy(),
                                             preds["like"][m].numpy())
    preds["like"][~m] = 123.0  # predictions on unlabelled rows are ignored
    again = compute_metrics(data.raw.schema.tasks, preds, valid.labels, valid.masks)
    assert again["like"] == metrics["like"]


# ------------------------------------------------------------------- auxiliary tasks
def test_auxiliary_tasks_are_never_monitored():
    tasks = [TaskSpec(name="aux", column="a", role="auxiliary"), TaskSpec(name="main", column="m")]
    assert resolve_monitor(tasks, None, None) == ("main", "auc")
    with pytest.raises(ConfigError, match="auxiliary"):
        resolve_monitor(tasks, "aux", None)


def test_gradient_reversal_is_minus_lambda_times_head_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    head = torch.nn.Linear(3, 1)
    (g_plain,) = torch.autograd.grad(head(x).pow(2).sum(), x)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    (g_rev,) = torch.autograd.grad(head(y).pow(2).sum(), x)
    assert torch.equal(g_rev, g_plain * -0.3)


def test_grl_lambda_schedules():
    dann = AdversarialSpec.model_validate({"lambda": 0.5, "schedule": "dann"})
    assert grl_lambda(dann, 0.0) == 0.0
    assert grl_lambda(dann, 1.0) == pytest.approx(0.5 * (2 / (1 + math.exp(-10)) - 1))
    assert grl_lambda(dann, 0.5) == pytest.approx(0.5 * (2 / (1 + math.exp(-5)) - 1))
    const = AdversarialSpec.model_validate({"lambda": 0.5, "schedule": "constant"})
    assert grl_lambda(const, 0.0) == grl_lambda(const, 0.7) == 0.5


@pytest.mark.parametrize("name", ["shared_bottom", "mmoe"])
def test_adversarial_head_reverses_gradient_into_the_trunk(name):
    tasks = [TaskSpec(name="click", column="click"),
             TaskSpec(name="dom", column="dom", role="auxiliary",
                      adversarial={"lambda": 0.7, "schedule": "constant"})]
    spec = InputSpec("tabular", [4, 3], 2)
    params = {"num_experts": 3, "expert_units": [5]} if name == "mmoe" else {"bottom_units": [6]}
    model = create_model(name, spec, tasks, **params)
    assert model.task_names == ["click", "dom"]
    feats = {"categorical": torch.tensor([[1, 2], [3, 0], [2, 1]]), "numeric": torch.randn(3, 2)}
    rep = model.encode(feats)
    first = rep[0] if isinstance(rep, tuple) else rep
    out = model.decode(rep)
    assert set(out) == {"click", "dom"} and out["dom"].shape == (3,)
    (g_adv,) = torch.autograd.grad(out["dom"].sum(), first, retain_graph=True)
    # the same head without the GRL
    plain = model.heads(pool_representation(rep).unsqueeze(0))["dom"]
    (g_head,) = torch.autograd.grad(plain.sum(), first)
    assert torch.equal(g_adv, g_head * -0.7)
    assert set(map(id, model.shared_parameters())) == set(map(id, model.base.shared_parameters()))
    model.record_gates = True
    assert model.base.record_gates


def test_adversarial_task_must_be_auxiliary():
    with pytest.raises(ValueError, match="role: auxiliary"):
        TaskSpec(name="d", column="d", adversarial={"lambda": 1.0})


def test_dann_progress_is_set_by_the_trainer(tmp_path):
    frame = tiny_table(200)
    frame["dom"] = (np.arange(200) % 2).astype(int)
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(str(tmp_path / "t.csv"), epochs=2, batch_size=45)
    cfg["data"]["add_tasks"] = [{"name": "dom", "column": "dom",
                                 "adversarial": {"lambda": 1.0, "schedule": "dann"}}]
    result = api.train(cfg)
    model = result.model
    # 180 train rows / 45 = 4 batches; the last step runs at epoch 2, batch 4 of 4
    assert model.progress == pytest.approx((1 + 3 / 4) / 2)
    assert result.results["roles"] == {"click": "main", "like": "main", "dom": "auxiliary"}


def test_target_rate_rule_fitted_on_train_only():
    train = pd.DataFrame({"f": ["a", "a", "b", "b", "b"], "y": [1, 0, 1, 1, 0], "x": 0.0})
    valid = pd.DataFrame({"f": ["a", "c"], "y": [0, 1], "x": 0.0})
    schema = Schema(features=[{"name": "f", "kind": "categorical"},
                              {"name": "x", "kind": "numeric"}],
                    tasks=[{"name": "y", "column": "y"}])
    raw = RawSplits(schema, train, valid)
    apply_data_rules(raw, [], [{"name": "r", "field": "f", "task": "y", "smoothing": 0}],
                     [{"name": "r", "type": "regression", "column": "r"}])
    assert raw.train["r"].tolist() == pytest.approx([0.5, 0.5, 2 / 3, 2 / 3, 2 / 3])
    assert raw.valid["r"].tolist() == pytest.approx([0.5, 0.6])  # unseen 'c' → train prior 3/5
    assert raw.schema.task("r").role == "auxiliary"
    raw2 = RawSplits(schema, train.drop(columns="r"), valid.drop(columns="r"))
    apply_data_rules(raw2, [], [{"name": "r", "field": "f", "task": "y", "smoothing": 2}], [])
    assert raw2.valid["r"].iloc[0] == pytest.approx((1 + 2 * 0.6) / (2 + 2))


def test_data_rules_errors_name_the_problem():
    raw = RawSplits(Schema(features=TINY_FEATURES, tasks=TINY_TASKS), tiny_table(20),
                    tiny_table(10, seed=1))
    with pytest.raises(ConfigError, match="not features"):
        apply_data_rules(raw, ["nope"], [], [])
    with pytest.raises(ConfigError, match="drop_features"):  # a label that is also an input
        apply_data_rules(raw, [], [], [{"name": "c", "column": "color",
                                        "positive_values": ["red"]}])
    with pytest.raises(ConfigError, match="unknown rule"):
        apply_data_rules(raw, [], [{"name": "r", "rule": "median", "field": "color"}], [])


