"""``mtlkit bench`` options (the runs themselves are in test_bench_smoke.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from mtlkit.bench import census
from mtlkit.cli import app


def test_census_models_option_picks_a_subset(monkeypatch, tmp_path):
    seen = {}

    def fake_run(out, models, seeds, group, quick):
        seen.update(models=models, seeds=seeds, group=group)
        return []

    monkeypatch.setattr(census, "run_census", fake_run)
    monkeypatch.setattr(census, "format_table", lambda rows: "table")
    result = CliRunner().invoke(app, ["bench", "census", "--models", "MMoE, PLE", "--seeds", "2",
                                      "--group", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == {"models": {"MMoE": "mmoe", "PLE": "ple"}, "seeds": (0, 1), "group": 2}


def test_census_unknown_model_names_the_known_ones(tmp_path):
    result = CliRunner().invoke(app, ["bench", "census", "--models", "MMoE,Foo",
                                      "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "Foo" in result.output and "Shared-Bottom" in result.output
