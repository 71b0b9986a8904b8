"""Diagnostics: do the tasks help each other, and is sharing working?

* gradient cosine similarity and conflict rate between tasks (``gradients``);
* gate utilisation of mixture-of-experts models, with a collapse warning (``gates``);
* lookahead task affinity, TAG (``affinity``);
* Δm% against single-task references (``delta_m``);
* ``Diagnostics``: the recorder the trainer calls every ``diagnostics.every`` steps (``recorder``).
"""

from mtlkit.diagnose.affinity import tag_affinity
from mtlkit.diagnose.delta_m import DeltaM, delta_m
from mtlkit.diagnose.gates import GateStats, collapse_warning, gate_stats, split_gate_name
from mtlkit.diagnose.gradients import conflict_rate, cosine_matrix, task_gradients
from mtlkit.diagnose.recorder import (
    DIAGNOSTICS_DIR,
    Diagnostics,
    DiagnosticsData,
    GateCollapseWarning,
    mean_gate_utilisation,
    read_diagnostics,
    summarize,
)

__all__ = [
    "DIAGNOSTICS_DIR",
    "DeltaM",
    "Diagnostics",
    "DiagnosticsData",
    "GateCollapseWarning",
    "GateStats",
    "collapse_warning",
    "conflict_rate",
    "cosine_matrix",
    "delta_m",
    "gate_stats",
    "mean_gate_utilisation",
    "read_diagnostics",
    "split_gate_name",
    "summarize",
    "tag_affinity",
    "task_gradients",
]
