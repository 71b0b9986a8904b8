"""Diagnostics: golden values on fixed vectors and a tiny linear model, and the recorder."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config, tiny_table
from torch import nn

from mtlkit import api
from mtlkit.config import DiagnosticsConfig
from mtlkit.data.schema import TaskSpec
from mtlkit.data.store import Batch
from mtlkit.diagnose import (
    Diagnostics,
    GateCollapseWarning,
    collapse_warning,
    conflict_rate,
    cosine_matrix,
    delta_m,
    gate_stats,
    read_diagnostics,
    tag_affinity,
    task_gradients,
)
from mtlkit.losses import TaskLosses
from mtlkit.models.base import MultiTaskModel

# --------------------------------------------------------------------- gradient cosine


def test_cosine_matrix_fixed_vectors():
    g = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    cos = cosine_matrix(g)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[1.0, r, -1.0], [r, 1.0, -r], [-1.0, -r, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(cos[:3, :3], expected, atol=1e-12, rtol=0)
    assert torch.isnan(cos[3]).all() and torch.isnan(cos[:, 3]).all()  # zero gradient


def test_conflict_rate_hand_computed():
    # pair cosines over 5 records; NaN (pair undefined) is left out of the count
    cos = np.array([[0.5, -0.1], [-0.2, -0.3], [math.nan, 0.4], [-0.1, -0.9], [0.0, math.nan]])
    np.testing.assert_allclose(conflict_rate(cos), [2 / 4, 3 / 4])
    # matrices [N, T, T] work the same way
    mats = np.array([[[1, -0.5], [-0.5, 1]], [[1, 0.2], [0.2, 1]], [[1, -0.1], [-0.1, 1]]])
    np.testing.assert_allclose(conflict_rate(mats), [[0, 2 / 3], [2 / 3, 0]])
    assert np.isnan(conflict_rate(np.array([[math.nan], [math.nan]]))[0])


# --------------------------------------------------------------------- a tiny linear model


class TinyLinear(MultiTaskModel):
    """z = w·x (shared scalar w), y_k = a_k·z; MSE losses."""

    def __init__(self, tasks: list[TaskSpec], w: float = 1.0, heads=(2.0, -1.0)) -> None:
        super().__init__(tasks)
        self.trunk = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.trunk.weight.fill_(w)
        self.heads = nn.Parameter(torch.tensor(heads))

    def encode(self, features):
        return self.trunk(features["numeric"]).squeeze(-1)

    def decode(self, z):
        return {name: self.heads[k] * z for k, name in enumerate(self.task_names)}

    def shared_modules(self):
        return [self.trunk]


TWO_TASKS = [TaskSpec(name="a", type="regression", column="a"),
             TaskSpec(name="b", type="regression", column="b")]


def tiny_linear_batch() -> Batch:
    x = torch.tensor([[1.0], [2.0]])
    labels = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0, 0.0])}
    return Batch({"numeric": x}, labels, {"a": None, "b": None})


def test_task_gradients_representation_and_parameters():
    # z = [1, 2], y_a = [2, 4], y_b = [-1, -2]; L = mean (y - t)^2
    # dL_a/dz = 2 (y_a - t_a) a_a / B = [2, 6];  dL_b/dz = 2 y_b a_b / B = [1, 2]
    # dL_a/dw = Σ dL_a/dz · x = 2 + 12 = 14;      dL_b/dw = 1 + 4 = 5
    model, losses, batch = TinyLinear(TWO_TASKS), TaskLosses(TWO_TASKS), tiny_linear_batch()
    result, g = task_gradients(model, losses, batch, "representation")
    torch.testing.assert_close(result.values.detach(), torch.tensor([5.0, 2.5]))
    torch.testing.assert_close(g, torch.tensor([[2.0, 6.0], [1.0, 2.0]]))
    assert cosine_matrix(g)[0, 1].item() == pytest.approx(14 / math.sqrt(200), abs=1e-12)
    _, g = task_gradients(model, losses, batch, "parameters")
    torch.testing.assert_close(g, torch.tensor([[14.0], [5.0]]))
    assert model.trunk.weight.grad is None  # .grad untouched


def test_task_gradients_zero_row_for_absent_task():
    model, losses, batch = TinyLinear(TWO_TASKS), TaskLosses(TWO_TASKS), tiny_linear_batch()
    batch.masks["b"] = torch.tensor([False, False])
    _, g = task_gradients(model, losses, batch)
    assert (g[1] == 0).all() and torch.isnan(cosine_matrix(g)[0, 1])


def test_tag_affinity_hand_computed_lookahead():
    # lr 0.05. Step on a: w = 1 - 0.05·14 = 0.3 → L_a = ((0.6-1)² + (1.2-1)²)/2 = 0.1,
    #   L_b = (0.3² + 0.6²)/2 = 0.225.  Step on b: w = 1 - 0.05·5 = 0.75 →
    #   L_a = (0.5² + 2²)/2 = 2.125, L_b = (0.75² + 1.5²)/2 = 1.40625.  Base L = (5, 2.5).
    model, losses, batch = TinyLinear(TWO_TASKS), TaskLosses(TWO_TASKS), tiny_linear_batch()
    z = tag_affinity(model, losses, batch, lr=0.05)
    expected = torch.tensor([[1 - 0.1 / 5, 1 - 0.225 / 2.5],
                             [1 - 2.125 / 5, 1 - 1.40625 / 2.5]], dtype=torch.float64)
    torch.testing.assert_close(z, expected, atol=1e-6, rtol=0)
    assert model.trunk.weight.item() == 1.0  # shared parameters restored exactly


# --------------------------------------------------------------------- gates


def test_gate_stats_hand_computed():
    s = gate_stats(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    assert s.utilisation == pytest.approx([0.75, 0.25])
    assert s.entropy == pytest.approx(math.log(2) / 2)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert s.balance == pytest.approx(h / math.log(2))


def test_gate_utilisation_rows_sum_to_one():
    gates = torch.softmax(torch.randn(3, 64, 8), dim=-1)  # any leading dims are rows
    s = gate_stats(gates)
    assert len(s.utilisation) == 8 and sum(s.utilisation) == pytest.approx(1.0, abs=1e-6)
    assert 0 < s.entropy <= math.log(8) and 0 < s.balance <= 1


def test_collapse_warning_on_crafted_gates():
    collapsed = gate_stats(torch.tensor([[0.97, 0.01, 0.01, 0.01]]).repeat(16, 1))
    msg = collapse_warning("gate/ctr", collapsed)
    assert msg is not None and "collapsed" in msg and "expert 0" in msg and "gate/ctr" in msg
    unused = gate_stats(torch.tensor([[0.6, 0.39, 0.01, 0.0]]))  # dead share 0.1/4 = 0.025
    msg = collapse_warning("g", unused)
    assert msg is not None and "2 of 4 experts" in msg and "[2, 3]" in msg
    assert collapse_warning("g", gate_stats(torch.full((4, 4), 0.25))) is None


# --------------------------------------------------------------------- Δm%


def test_delta_m_higher_and_lower_is_better():
    mtl = {"a": {"auc": 0.80, "logloss": 0.30}, "b": {"rmse": 0.9}, "aux": {"auc": 0.5}}
    stl = {"a": {"auc": 0.75, "logloss": 0.40}, "b": {"rmse": 1.0}, "aux": {"auc": 0.9}}
    d = delta_m(mtl, stl, tasks=["a", "b"])  # auxiliary task left out by the caller
    # a: auc +(0.80-0.75)/0.75·100 = 6.667, logloss -(0.30-0.40)/0.40·100 = +25 → 15.833
    # b: rmse -(0.9-1.0)/1.0·100 = +10;  Δm = (15.833 + 10) / 2
    assert d.per_task["a"] == pytest.approx((100 / 15 + 25) / 2)
    assert d.per_task["b"] == pytest.approx(10.0)
    assert d.value == pytest.approx(((100 / 15 + 25) / 2 + 10) / 2)
    worse = delta_m({"a": {"auc": 0.70}}, {"a": {"auc": 0.80}})
    assert worse.value == pytest.approx(-12.5)
    assert delta_m({"a": {"rmse": 1.2}}, {"a": {"rmse": 1.0}}).value == pytest.approx(-20.0)


def test_delta_m_errors_name_the_task():
    with pytest.raises(KeyError, match="'c'"):
        delta_m({"a": {"auc": 0.7}}, {"a": {"auc": 0.8}}, tasks=["c"])
    with pytest.raises(ZeroDivisionError, match="'a'"):
        delta_m({"a": {"rmse": 0.7}}, {"a": {"rmse": 0.0}})


# --------------------------------------------------------------------- the recorder


def _table(tmp_path, n: int) -> str:
    path = tmp_path / f"tiny{n}.csv"
    if not path.exists():
        tiny_table(n).to_csv(path, index=False)
    return str(path)


def _train(tmp_path, name, progress=False, **diag):
    cfg = tiny_config(_table(tmp_path, 256), "mmoe", epochs=2, tensorboard=True,
                      progress=progress)
    cfg["diagnostics"] = diag
    return api.train(cfg, out=tmp_path / name)


def test_recorder_writes_files_and_does_not_change_training(tmp_path):
    on = _train(tmp_path, "on", every=2, tag_every=3)
    off = _train(tmp_path, "off", enabled=False)
    for k, v in on.model.state_dict().items():  # diagnostics never perturb training
        torch.testing.assert_close(v, off.model.state_dict()[k], atol=0, rtol=0)
    assert not (tmp_path / "off" / "diagnostics").exists()
    data = read_diagnostics(tmp_path / "on")
    steps = on.results["steps"]
    assert list(data.steps["step"]) == list(range(2, steps + 1, 2))
    assert {"loss/click", "loss/like", "weight/click", "weight/like"} <= set(data.steps.columns)
    assert (data.steps["weight/click"] == 1.0).all()
    assert data.pairs() == [("click", "like")]
    cos = data.grads["cos/click|like"]
    assert cos.between(-1, 1).all() and len(cos) == len(data.steps)
    rec = data.gates[-1]["gates"]
    assert set(rec) == {"gate/click", "gate/like"}
    for s in rec.values():
        assert len(s["utilisation"]) == 3 and sum(s["utilisation"]) == pytest.approx(1.0)
    assert [r["step"] for r in data.affinity] == list(range(3, steps + 1, 3))
    assert np.isfinite(np.asarray(data.affinity[0]["affinity"])).all()
    summary = json.loads((tmp_path / "on" / "diagnostics" / "summary.json").read_text())
    rate = summary["gradient"]["click|like"]["conflict_rate"]
    assert rate == pytest.approx(float((cos < 0).mean()))
    assert summary["records"] > 0 and summary["recorder_seconds"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (tmp_path / "on" / "tensorboard").glob("events.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"diagnostics/cos/click|like", "diagnostics/gate/click/entropy",
            "diagnostics/affinity/click->like"} <= tags


def test_recorder_single_task_model_records_losses_only(tmp_path):
    cfg = tiny_config(_table(tmp_path, 128), "single_task", epochs=1)
    cfg["diagnostics"] = {"every": 1, "tag_every": 1}
    api.train(cfg, out=tmp_path / "stl")
    data = read_diagnostics(tmp_path / "stl")
    assert data.meta["shared"] is False and data.grads is None and not data.affinity
    assert len(data.steps) == 4 and not data.gates


def test_recorder_warns_once_per_gate_and_kind(tmp_path):
    diag = Diagnostics(DiagnosticsConfig(), tmp_path, tensorboard=False)
    unused = {"gate/ctr": gate_stats(torch.tensor([[0.6, 0.399, 0.001]]))}
    collapsed = {"gate/ctr": gate_stats(torch.tensor([[0.98, 0.01, 0.01]]))}
    with pytest.warns(GateCollapseWarning, match="almost never used"):
        diag._check_collapse(unused, step=10)
    with pytest.warns(GateCollapseWarning, match="gate/ctr' collapsed"):
        diag._check_collapse(collapsed, step=20)
    diag._check_collapse(collapsed, step=30)  # already reported: no second warning
    assert [(w["step"], w["kind"]) for w in diag.warnings] == [(10, "unused"), (20, "collapsed")]
    assert read_diagnostics(tmp_path).warnings == []  # no meta.json: nothing was recorded
    lines = (tmp_path / "diagnostics" / "warnings.jsonl").read_text().splitlines()
    assert [json.loads(x)["kind"] for x in lines] == ["unused", "collapsed"]


def test_diagnostics_config_defaults_are_coarse():
    cfg = DiagnosticsConfig()
    assert cfg.enabled and cfg.every == 50 and cfg.tag_every is None


def test_gate_warnings_reach_results_json_and_print_above_the_progress_bar(tmp_path,
                                                                           monkeypatch):
    from mtlkit.diagnose import recorder
    from mtlkit.train import trainer as trainer_module

    monkeypatch.setattr(recorder, "gate_problem",
                        lambda name, stats: ("collapsed", f"gate {name!r} collapsed: crafted"))
    written: list[str] = []
    monkeypatch.setattr(trainer_module.tqdm, "write",
                        lambda text, file=None: written.append(text))
    with pytest.warns(GateCollapseWarning):  # no bar drawn: a plain warning
        _train(tmp_path, "quiet", every=1)
    assert written == []
    run = _train(tmp_path, "warned", progress=True, every=1)
    saved = json.loads((run.run_dir / "results.json").read_text())["warnings"]
    gate_names = {w.split("'")[1] for w in saved if "crafted" in w}
    assert gate_names and all(w.startswith("step 1: ") for w in saved if "crafted" in w)
    # with a bar drawn the warning text goes through tqdm.write (above the bar), once per gate
    assert sum("GateCollapseWarning" in w for w in written) == len(gate_names)
