"""``mtlkit bench`` options (the runs themselves are in test_bench_smoke.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mtlkit.bench import census
from mtlkit.cli import app


def test_census_models_option_picks_a_subset(monkeypatch, tmp_path):
    seen = {}

    def fake_run(out, models, seeds, group, quick, overrides, model_overrides):
        seen.update(models=models, seeds=seeds, group=group, overrides=overrides)
        assert model_overrides is None  # no --search
        return []

    monkeypatch.setattr(census, "run_census", fake_run)
    monkeypatch.setattr(census, "format_table", lambda rows: "table")
    result = CliRunner().invoke(app, ["bench", "census", "--models", "MMoE, PLE", "--seeds", "2",
                                      "--group", "2", "--out", str(tmp_path),
                                      "--set", "train.epochs=100", "--set", "train.patience=5"])
    assert result.exit_code == 0, result.output
    assert seen == {"models": {"MMoE": "mmoe", "PLE": "ple"}, "seeds": (0, 1), "group": 2,
                    "overrides": ["train.epochs=100", "train.patience=5"]}


def test_census_unknown_model_names_the_known_ones(tmp_path):
    result = CliRunner().invoke(app, ["bench", "census", "--models", "MMoE,Foo",
                                      "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "Foo" in result.output and "Shared-Bottom" in result.output


def test_correlation_summary_by_hand():
    from mtlkit.bench.correlation import format_table, summarise

    final = {"Shared-Bottom|1.0": [0.1, 0.2, 0.3], "MMoE|1.0": [0.1, 0.1, 0.9],
             "Shared-Bottom|0.5": [0.4, 0.5, 0.6], "MMoE|0.5": [0.2, 0.2, 0.2]}
    s = summarise({"final": final}, [1.0, 0.5], ["Shared-Bottom", "MMoE"])
    one = s["1.0"]
    assert one["MMoE"]["mean"] == pytest.approx(1.1 / 3) and one["MMoE"]["median"] == 0.1
    assert one["Shared-Bottom"]["std"] == pytest.approx(0.1)
    # p = 1.0: means 0.2 vs 0.3667 (one failed MMoE run), medians 0.2 vs 0.1
    assert one["gap_sb_minus_mmoe_mean"] == pytest.approx(0.2 - 1.1 / 3)
    assert one["gap_sb_minus_mmoe_median"] == pytest.approx(0.1)
    assert s["0.5"]["gap_sb_minus_mmoe_median"] == pytest.approx(0.3)
    assert s["mean_gap_grows_as_correlation_drops"] and s["median_gap_grows_as_correlation_drops"]
    table = format_table({"summary": s, "runs": 3, "steps": 10, "shared_bottom_width": 4},
                         [1.0, 0.5], ["Shared-Bottom", "MMoE"])
    assert "0.3667 ± 0.4619 (median 0.1000)" in table and "| +0.3000 |" in table


def test_census_bench_reuses_a_finished_run_with_the_same_config(tmp_path):
    from tests.conftest import tiny_config, tiny_table

    from mtlkit import api
    from mtlkit.bench.census import _finished
    from mtlkit.config import build_config

    csv = tmp_path / "t.csv"
    tiny_table(100).to_csv(csv, index=False)
    cfg = build_config(tiny_config(str(csv), epochs=1))
    assert _finished(tmp_path / "run", cfg) is None  # nothing there yet
    done = api.train(cfg, out=tmp_path / "run")
    assert _finished(tmp_path / "run", cfg) == json.loads(
        (done.run_dir / "results.json").read_text())
    other = build_config(tiny_config(str(csv), epochs=1), ["train.seed=7"])
    assert _finished(tmp_path / "run", other) is None  # another config: train again


@pytest.mark.parametrize("config", sorted(census.SEARCH_SPACE))
def test_search_trials_are_reproducible_valid_configs(config):
    from mtlkit.api import build_model
    from mtlkit.config import load_config
    from mtlkit.data import InputSpec
    from mtlkit.data.datasets.census import census_schema

    trials = census.sample_trials(config, 5)
    assert trials == census.sample_trials(config, 5)  # seeded by the config name
    assert trials[0] == {} and len(trials) == 5  # trial 0: the config as it is
    spec = InputSpec("tabular", [5, 7, 3], 2)
    for trial in trials[1:]:
        assert census.LR_RANGE[0] <= trial["train.optimizer.lr"] <= census.LR_RANGE[1]
        assert trial["model.params.embedding_dim"] in census.EMBEDDING_DIMS
        for key, choices in census.SEARCH_SPACE[config].items():
            assert trial[key] in choices
        cfg = load_config(census.CONFIG_DIR / f"{config}.yaml", census._as_overrides(trial))
        assert cfg.train.optimizer.lr == trial["train.optimizer.lr"]
        build_model(cfg, spec, census_schema(1).tasks)  # every drawn size builds


def test_search_picks_by_validation_auc_and_tunes_only_that_model(monkeypatch, tmp_path):
    calls = []

    def fake_train(run_dir, config, seed, group, quick, overrides, config_dir):
        calls.append((run_dir.name, seed, overrides))
        trial = int(run_dir.name.rsplit("trial", 1)[-1]) if "trial" in run_dir.name else 0
        # validation prefers trial 2, test would prefer trial 1: selection must use validation
        valid = {0: 0.90, 1: 0.91, 2: 0.95}[trial]
        test = {0: 0.90, 1: 0.99, 2: 0.93}[trial]
        return {"monitor": {"task": "income"}, "train_seconds": 1.0,
                "valid": {"income": {"auc": valid}, "marital": {"auc": 0.99}},
                "test": {"income": {"auc": test}, "marital": {"auc": 0.99}}}

    monkeypatch.setattr(census, "_train", fake_train)
    result = CliRunner().invoke(app, ["bench", "census", "--models", "MMoE", "--seeds", "2",
                                      "--search", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    chosen = census._as_overrides(census.sample_trials("mmoe", 3)[2])
    assert [c[0] for c in calls] == ["mmoe-trial0", "mmoe-trial1", "mmoe-trial2",
                                     "mmoe-seed0", "mmoe-seed1"]
    assert calls[0][2] == [] and calls[3][2] == chosen and calls[4][2] == chosen
    rows = json.loads((tmp_path / "results.json").read_text())
    assert rows[0]["overrides"] == chosen
    search_md = (tmp_path / "search.md").read_text()
    assert "| MMoE | 2 **(chosen)** |" in search_md and "config as is" in search_md
