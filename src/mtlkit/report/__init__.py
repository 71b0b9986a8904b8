"""Reports: one self-contained HTML page per set of runs, and the terminal comparison table.

>>> from mtlkit.report import build_report
>>> build_report(["runs/mmoe", "runs/stl"], "report.html")   # doctest: +SKIP
"""

from mtlkit.report.compare import (
    RunRow,
    compare_runs,
    comparison_table,
    load_comparison,
    pick_references,
)
from mtlkit.report.html import SECTIONS, build_report, render_report
from mtlkit.report.runs import Run, load_run, load_runs

__all__ = ["SECTIONS", "Run", "RunRow", "build_report", "compare_runs", "comparison_table",
           "load_comparison", "load_run", "load_runs", "pick_references", "render_report"]
