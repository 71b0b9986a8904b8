"""Data checks (``mtlkit check``; run first by ``mtlkit train``): each fires on a crafted tiny
table and stays silent on Census-Income."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from tests.conftest import TINY_FEATURES, TINY_TASKS, tiny_config, tiny_table
from typer.testing import CliRunner

from mtlkit import api
from mtlkit.cli import app
from mtlkit.data.checks import check_predictions, run_checks
from mtlkit.data.datasets import RawSplits
from mtlkit.data.schema import Schema
from mtlkit.errors import DataError


def _raw(train: pd.DataFrame, valid: pd.DataFrame | None = None, features=None,
         tasks=None) -> RawSplits:
    schema = Schema(features=features or TINY_FEATURES, tasks=tasks or TINY_TASKS)
    return RawSplits(schema, train, valid if valid is not None else tiny_table(100, seed=1))


def _checks(report) -> list[tuple[str, str]]:
    return [(f.level, f.check) for f in report.findings]


def test_clean_tiny_table_is_silent():
    report = run_checks(_raw(tiny_table(300)))
    assert report.findings == []
    rows = {(r["split"], r["task"]): r for r in report.tasks}
    train = tiny_table(300)
    assert rows["train", "click"]["positives"] == int(train["click"].sum())
    assert rows["train", "click"]["positive_rate"] == pytest.approx(train["click"].mean())
    feats = {r["feature"]: r for r in report.features}
    assert feats["color"]["cardinality"] == 3 and feats["color"]["unseen_valid"] == 0.0


def test_identical_and_near_identical_feature_is_leakage():
    frame = tiny_table(300)
    frame["copy"] = frame["click"].map({0: "no", 1: "yes"})
    feats = [*TINY_FEATURES, {"name": "copy", "kind": "categorical"}]
    valid = tiny_table(100, seed=1)
    valid["copy"] = valid["click"].map({0: "no", 1: "yes"})
    report = run_checks(_raw(frame, valid, features=feats))
    assert ("error", "leakage") in _checks(report)
    assert "'copy'" in report.errors[0].message and "'click'" in report.errors[0].message
    frame.loc[5, "copy"] = "no" if frame.loc[5, "copy"] == "yes" else "yes"  # one row differs
    assert ("error", "leakage") in _checks(run_checks(_raw(frame, valid, features=feats)))
    report = run_checks(_raw(frame, tiny_table(100, seed=1), features=feats))
    assert ("error", "features") in _checks(report)  # valid lacks the column: named


def test_label_column_among_features_is_refused(tmp_path):
    frame = tiny_table(50)
    with pytest.raises(ValueError, match="label leakage"):
        Schema(features=[*TINY_FEATURES, {"name": "click", "kind": "numeric"}], tasks=TINY_TASKS)
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(str(tmp_path / "t.csv"))
    cfg["data"]["params"]["features"] = [*TINY_FEATURES, {"name": "like", "kind": "numeric"}]
    with pytest.raises(ValueError, match="like"):
        api.check(cfg)


def test_label_outside_domain_names_column_and_first_bad_row():
    frame = tiny_table(100)
    frame.loc[7, "click"] = 2
    frame.loc[9, "click"] = 3
    report = run_checks(_raw(frame))
    assert _checks(report) == [("error", "labels")]
    assert "'click'" in report.errors[0].message and "row 7" in report.errors[0].message


def test_one_class_and_tiny_class_warn_with_counts():
    frame = tiny_table(300)
    frame["like"] = 0
    frame.loc[:9, "click"] = 1
    frame.loc[10:, "click"] = 0
    report = run_checks(_raw(frame))
    found = {f.check: f.message for f in report.findings}
    assert report.errors == []
    assert "only one class among 300 labelled rows (0 positive, 300 negative)" in found["one class"]
    assert "task 'click' (train): 10 positive and 290 negative" in found["tiny class"]


def test_unseen_categories_warn():
    valid = tiny_table(100, seed=1)
    valid.loc[:59, "color"] = "purple"
    report = run_checks(_raw(tiny_table(300), valid))
    assert ("warning", "unseen categories") in _checks(report)
    assert "'color': 60.0% of valid rows" in report.warnings[0].message


def test_esmm_conversion_without_click_is_an_error():
    frame = tiny_table(200)
    frame["buy"] = frame["click"]
    frame.loc[frame.index[frame["click"] == 0][0], "buy"] = 1
    tasks = [*TINY_TASKS, {"name": "buy", "column": "buy", "sample_space": "click"}]
    valid = tiny_table(100, seed=1)
    report = run_checks(_raw(frame, valid.assign(buy=valid["click"] * valid["like"]), tasks=tasks))
    assert _checks(report) == [("error", "labels")]
    assert "conversion without a click" in report.errors[0].message


def test_bad_sample_weight_is_an_error():
    frame = tiny_table(100).assign(w=1.0)
    frame.loc[4, "w"] = -2.0
    tasks = [{**TINY_TASKS[0], "sample_weight": "w"}, TINY_TASKS[1]]
    report = run_checks(_raw(frame, tiny_table(50, seed=1).assign(w=1.0), tasks=tasks))
    assert _checks(report) == [("error", "labels")]
    assert "'w' row 4" in report.errors[0].message


def test_after_training_suspicious_auc_and_constant_predictions_warn():
    schema = Schema(features=TINY_FEATURES, tasks=TINY_TASKS)
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    preds = {"click": y.clone(), "like": torch.full((4,), 0.3)}
    metrics = {"click": {"auc": 1.0}, "like": {"auc": 0.5}}
    found = check_predictions(schema.tasks, preds, {"click": None, "like": None}, metrics)
    assert [(f.check, f.message.split(":")[0]) for f in found] == [
        ("suspicious AUC", "task 'click'"), ("constant predictions", "task 'like'")]
    metrics["click"]["auc"] = 0.95
    assert check_predictions(schema.tasks, {"click": torch.rand(4), "like": torch.rand(4)},
                             {}, metrics) == []


def test_train_runs_the_checks_first(tmp_path):
    frame = tiny_table(200)
    frame["leak"] = frame["click"] * 10.0 + 1
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(str(tmp_path / "t.csv"))
    cfg["data"]["params"]["features"] = [*TINY_FEATURES, {"name": "leak", "kind": "numeric"}]
    with pytest.raises(DataError, match="(?s)data checks failed.*'leak'"):
        api.train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_check_cli_reports_and_exits_nonzero_on_errors(tmp_path):
    frame = tiny_table(200)
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(str(tmp_path / "t.csv"))
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(tmp_path / "ok.yaml")], env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert "0 error(s), 0 warning(s)" in ok.output and "positive rate" in ok.output
    frame.loc[3, "like"] = 5
    frame.to_csv(tmp_path / "t.csv", index=False)
    bad = runner.invoke(app, ["check", str(tmp_path / "ok.yaml")], env={"COLUMNS": "200"})
    assert bad.exit_code == 1 and "row 3" in bad.output


def test_adversarial_label_leak_is_only_a_warning():
    frame = tiny_table(300)
    frame["dom"] = (frame["color"] == "red").astype(int)
    tasks = [*TINY_TASKS, {"name": "dom", "column": "dom", "role": "auxiliary",
                           "adversarial": {"lambda": 1.0}}]
    valid = tiny_table(100, seed=1)
    valid["dom"] = (valid["color"] == "red").astype(int)
    report = run_checks(_raw(frame, valid, tasks=tasks))
    assert _checks(report) == [("warning", "adversarial leakage")]


def test_census_is_silent(census_raw):
    report = run_checks(census_raw)
    assert report.findings == []
    rates = {(r["split"], r["task"]): r["positive_rate"] for r in report.tasks}
    assert rates["train", "income"] == pytest.approx(12382 / 199523)
    assert {r["feature"] for r in report.features} == {f.name for f in census_raw.schema.features}


