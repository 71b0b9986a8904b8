"""``mtlkit bench ... --quick`` smoke runs (marked slow; `.ci/run` runs them after the suite)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("bench,files", [
    ("correlation", ["curves.png", "histograms.png", "table.md", "results.json"]),
    ("census", ["table.md", "results.json"]),
    ("multi-fashion", ["results.md"]),
    ("reviews", ["results.md"]),
    ("peers", ["results.json"]),  # installs the peer libraries into .venv-peers from PyPI
])
def test_bench_quick_writes_its_outputs(tmp_path, data_dir, bench, files):
    done = subprocess.run([sys.executable, "-m", "mtlkit", "bench", bench, "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True,
                          env={**__import__("os").environ, "MTLKIT_DATA_DIR": str(data_dir)})
    assert done.returncode == 0, done.stderr[-2000:]
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
