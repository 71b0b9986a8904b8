"""benchmarks/peers.py: the pure helpers (the peer runs themselves need their own venv)."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("mtlkit_bench_peers", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_import_needs_no_peer_packages(peers):
    assert peers.TORCH_SPEC == "torch==2.13.0"
    assert all("==" in s for s in peers.PEER_SPECS)
    assert peers.SIZES == {"embedding_dim": 4, "num_experts": 8, "expert_units": 16,
                           "tower_units": 8, "batch_size": 1024, "lr": 1e-3}


def test_mark_fastest_per_group(peers):
    rows = [
        {"library": "a", "mode": "loop", "threads": 1, "samples_per_s": 10.0},
        {"library": "a", "mode": "loop", "threads": 2, "samples_per_s": 12.0},
        {"library": "b", "mode": "loop", "threads": 1, "samples_per_s": 9.0},
        {"library": "b", "mode": "loop", "threads": 2, "error": "boom"},
    ]
    peers._mark_fastest(rows, ("library", "mode"), "samples_per_s", higher=True)
    assert [r.get("fastest") for r in rows] == [False, True, True, None]
    steps = [{"method": "pcgrad", "num_tasks": 2, "ms_per_step": v} for v in (5.0, 4.0)]
    peers._mark_fastest(steps, ("method", "num_tasks"), "ms_per_step", higher=False)
    assert [r["fastest"] for r in steps] == [False, True]


def test_tables_show_numbers_and_errors(peers):
    ok = {"library": "torch-rechub", "mode": "loop", "threads": 1, "samples_per_s": 16599.1,
          "peak_rss_mb": 613.1, "test_auc": {"income": 0.91849, "marital": 0.99322},
          "fastest": True}
    bad = {"library": "deepctr-torch", "mode": "trainer", "threads": 2, "error": "exit 1: x"}
    table = peers.format_peer_table([ok, bad])
    assert "16,599*" in table and "0.9185" in table and "0.9932" in table
    assert "ERROR exit 1: x" in table
    step = {"method": "cagrad", "num_tasks": 2, "threads": 1, "ms_per_step": 12.345,
            "peak_rss_mb": 480.0, "note": "subclass", "fastest": False}
    missing = {"method": "nash_mtl", "num_tasks": 2, "threads": 1, "error": "NotImplementedError"}
    table = peers.format_libmtl_table([step, missing])
    assert "12.35" in table and "(subclass)" in table and "ERROR NotImplementedError" in table


@pytest.fixture(scope="module")
def throughput():
    path = PATH.parent / "throughput.py"
    spec = importlib.util.spec_from_file_location("mtlkit_bench_throughput", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_balancer_table_takes_each_sides_fastest_and_divides(throughput):
    ours = [{"method": "pcgrad", "mode": "representation", "ms_per_step": 10.0},
            {"method": "pcgrad", "mode": "representation", "ms_per_step": 8.0},
            {"method": "mgda_ub", "mode": "representation", "ms_per_step": 6.0}]
    libmtl = [{"method": "pcgrad", "ms_per_step": 30.0}, {"method": "pcgrad", "ms_per_step": 24.0},
              {"method": "mgda", "ms_per_step": 18.0},
              {"method": "cagrad", "error": "exit 1: boom"}]
    table = throughput.balancer_table(ours, libmtl).splitlines()
    row = {line.split(" | ")[2]: line for line in table[2:]}
    assert "| 24.00 | pcgrad (representation) | 8.00 | 3.0× |" in row["pcgrad (representation)"]
    assert "| 18.00 | mgda_ub (representation) | 6.00 | 3.0× |" in row["mgda_ub (representation)"]
    assert "exit 1: boom" in row["cagrad"]  # LibMTL failed: its error, no ratio
    assert "not measured" in row["equal"]
