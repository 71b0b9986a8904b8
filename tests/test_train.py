"""End-to-end: train → results.json → predict / evaluate / resume, via the API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from tests.conftest import tiny_config, tiny_table

from mtlkit import api


@pytest.fixture()
def tiny_csv(tmp_path):
    path = tmp_path / "train.csv"
    tiny_table(400).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("model", ["single_task", "shared_bottom", "omoe", "mmoe"])
def test_every_foundation_model_learns_the_tiny_task(tiny_csv, tmp_path, model):
    cfg = tiny_config(tiny_csv, model=model, epochs=15, patience=None)
    cfg["train"]["optimizer"] = {"lr": 0.01}
    result = api.train(cfg, out=tmp_path / "run")
    assert result.results["valid"]["click"]["auc"] > 0.85
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.csv", "checkpoint.pt", "model.pt", "results.json"} <= files
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(saved) >= {"best_epoch", "valid"}
    assert set(saved["valid"]) == {"click", "like"}
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert len(metrics) == 15 and "valid/click/auc" in metrics and "train/like/loss" in metrics


def test_seed_makes_training_deterministic(tiny_csv):
    a = api.train(tiny_config(tiny_csv, seed=3)).model.state_dict()
    b = api.train(tiny_config(tiny_csv, seed=3)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_restores_best_epoch(tiny_csv, tmp_path):
    cfg = tiny_config(tiny_csv, epochs=30, patience=2)
    cfg["train"]["optimizer"] = {"lr": 0.05}
    result = api.train(cfg, out=tmp_path / "r")
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    best = result.results["best_epoch"]
    assert len(metrics) == best + 2  # stopped after `patience` epochs without improvement
    assert metrics["valid/click/auc"].idxmax() + 1 == best
    assert result.results["valid"]["click"]["auc"] == pytest.approx(
        metrics["valid/click/auc"].max())


def test_resume_continues_to_the_same_parameters(tiny_csv, tmp_path):
    full = api.train(tiny_config(tiny_csv, epochs=4, patience=None), out=tmp_path / "full")
    api.train(tiny_config(tiny_csv, epochs=2, patience=None), out=tmp_path / "part")
    # extend the finished 2-epoch run to 4 epochs from its checkpoint
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    ck["bundle"]["config"]["train"]["epochs"] = 4
    torch.save(ck, tmp_path / "part" / "checkpoint.pt")
    resumed = api.train(tiny_config(tiny_csv), out=tmp_path / "part", resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results["valid"] == full.results["valid"]


def test_mid_epoch_checkpoint_resume_is_exact(tiny_csv, tmp_path):
    full = api.train(tiny_config(tiny_csv, epochs=2, patience=None), out=tmp_path / "full")
    cfg = tiny_config(tiny_csv, epochs=2, patience=None, checkpoint_every_steps=3)
    run = tmp_path / "mid"
    api.train(cfg, out=run)
    # rewind: replay from the step-3 checkpoint of a fresh run stopped after it was written
    from mtlkit.train import checkpoint as ckpt

    steps = []
    original = ckpt.atomic_save

    def stop_after_first(obj, path):
        original(obj, path)
        steps.append(obj["fit"]["step"])
        if obj["fit"]["step"] == 3:
            raise KeyboardInterrupt

    ckpt.atomic_save = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            api.train(cfg, out=tmp_path / "killed")
    finally:
        ckpt.atomic_save = original
    resumed = api.train(cfg, out=tmp_path / "killed", resume=True)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_rows_in_input_order_and_unseen_categories(tiny_csv, tmp_path):
    api.train(tiny_config(tiny_csv), out=tmp_path / "r")
    frame = tiny_table(50, seed=9).drop(columns=["click", "like"])
    frame.loc[0, "color"] = "ultraviolet"  # unseen in training → OOV id
    model = api.load(tmp_path / "r")
    out = model.predict(frame)
    assert list(out.columns) == ["click", "like"] and len(out) == 50
    assert out.notna().all().all() and ((out >= 0) & (out <= 1)).all().all()
    rev = model.predict(frame.iloc[::-1].reset_index(drop=True))
    np.testing.assert_allclose(rev["click"].to_numpy()[::-1], out["click"].to_numpy(), rtol=1e-6)


def test_cli_train_predict_evaluate(tiny_csv, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(tiny_config(tiny_csv)))
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "mtlkit"]
    done = subprocess.run([*cli, "train", str(cfg_path), "--out", str(run),
                           "--set", "train.epochs=3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "best epoch" in done.stdout
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
    done = subprocess.run([*cli, "predict", str(run), tiny_csv, "--out",
                           str(tmp_path / "p.parquet")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pred = pd.read_parquet(tmp_path / "p.parquet")
    labels = pd.read_csv(tiny_csv)
    assert len(pred) == len(labels)
    done = subprocess.run([*cli, "evaluate", str(run), "--data", tiny_csv],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout)["data"]["click"]["auc"]
    assert reported == pytest.approx(roc_auc_score(labels["click"], pred["click"]), abs=1e-9)
    bad = subprocess.run([*cli, "train", str(tmp_path / "nope.yaml")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "config file not found" in bad.stdout
    # a finished run is not replaced by accident
    before = (run / "results.json").read_bytes()
    again = subprocess.run([*cli, "train", str(cfg_path), "--out", str(run)],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a run" in again.stdout
    assert "--overwrite" in again.stdout and (run / "results.json").read_bytes() == before
    again = subprocess.run([*cli, "train", str(cfg_path), "--out", str(run), "--overwrite",
                            "--set", "train.epochs=1"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "results.json").read_text())["best_epoch"] == 1


def test_census_predict_auc_equals_results_json(data_dir, tmp_path):
    """Acceptance: AUC from `mtlkit predict` output equals the AUC in results.json."""
    run = tmp_path / "census"
    overrides = ["train.epochs=2", "train.optimizer.lr=0.005", "train.progress=false",
                 f"data.data_dir={data_dir}", "data.params.train_fraction=0.25",
                 "train.tensorboard=false"]
    result = api.train("configs/census-income/mmoe.yaml", out=run, overrides=overrides)
    test_frame = result.data.raw.test
    test_frame.to_parquet(tmp_path / "test.parquet")
    done = subprocess.run([sys.executable, "-m", "mtlkit", "predict", str(run),
                           str(tmp_path / "test.parquet"), "--out", str(tmp_path / "pred.csv")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    saved = json.loads((run / "results.json").read_text())
    y_income = (test_frame["income"] == "50000+.").to_numpy()
    y_never = (test_frame["marital_status"] == "Never married").to_numpy()
    assert roc_auc_score(y_income, pred["income"]) == pytest.approx(
        saved["test"]["income"]["auc"], abs=1e-6)
    assert roc_auc_score(y_never, pred["marital"]) == pytest.approx(
        saved["test"]["marital"]["auc"], abs=1e-6)
    assert saved["test"]["income"]["auc"] > 0.9


@pytest.mark.parametrize("dataset", ["ali-ccp", "aliexpress"])
@pytest.mark.parametrize("model", ["esmm", "aitm", "mmoe"])
def test_alibaba_sample_configs_train_through_the_api(data_dir, tmp_path, dataset, model):
    """Format check: the shipped configs load the samples and train end to end."""
    result = api.train(f"configs/{dataset}/{model}.yaml", out=tmp_path / "r",
                       overrides=["train.epochs=1", "train.progress=false",
                                  "train.tensorboard=false", f"data.data_dir={data_dir}"])
    assert set(result.results["test"]) == {"ctr", "cvr", "ctcvr"}


def test_mtlkit_warnings_print_their_message_without_source_lines():
    from mtlkit.diagnose.recorder import GateCollapseWarning
    from mtlkit.errors import format_warning

    assert format_warning("gate 'income' collapsed", GateCollapseWarning, "/x/recorder.py",
                          195, "warnings.warn(...)") == (
        "warning: GateCollapseWarning: gate 'income' collapsed\n")
    other = format_warning("careful", UserWarning, "/elsewhere/mod.py", 7)
    assert other.startswith("/elsewhere/mod.py:7: UserWarning: careful")


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os

    from mtlkit.train import checkpoint as ckpt

    old = os.umask(0o022)
    try:
        ckpt.atomic_write_text("{}", tmp_path / "results.json")
        ckpt.atomic_save({"a": 1}, tmp_path / "model.pt")
    finally:
        os.umask(old)
    for name in ("results.json", "model.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "results.json"]
