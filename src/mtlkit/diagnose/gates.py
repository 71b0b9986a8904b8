"""Gate utilisation of mixture-of-experts models.

A gated model records its softmax gate weights (``[B, E]``: rows sum to 1) in
``model.gate_weights[name]`` when ``model.record_gates`` is True. For each gate:

* ``utilisation[e]``: mean weight of expert ``e`` over the batch rows (sums to 1);
* ``entropy``: mean per-row gate entropy in nats (0: every row picks one expert);
* ``balance``: entropy of the mean utilisation divided by ``log E`` (1: experts used equally
  on average, 0: one expert takes everything).

A gate *collapses* when one expert takes at least ``collapse_share`` of its weight, or when
some expert gets less than ``dead_share`` (default: a tenth of the uniform share ``1/E``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class GateStats:
    utilisation: list[float]
    entropy: float
    balance: float

    @property
    def num_experts(self) -> int:
        return len(self.utilisation)

    @property
    def max_share(self) -> float:
        return max(self.utilisation)

    def as_dict(self) -> dict:
        return {"utilisation": self.utilisation, "entropy": self.entropy,
                "balance": self.balance, "max_share": self.max_share}


def gate_stats(gates: torch.Tensor) -> GateStats:
    """Statistics of gate weights ``[..., E]`` (leading dimensions are rows)."""
    if gates.dim() < 1 or gates.shape[-1] < 1:
        raise ValueError(f"gate weights must be [..., experts], got {tuple(gates.shape)}")
    g = gates.detach().reshape(-1, gates.shape[-1])
    util = g.mean(dim=0, dtype=torch.float64)
    entropy = -(g * g.clamp_min(1e-30).log()).sum(dim=1).mean(dtype=torch.float64)
    n = g.shape[1]
    h_util = -(util * util.clamp_min(1e-30).log()).sum()
    balance = float(h_util / math.log(n)) if n > 1 else 1.0
    return GateStats(util.tolist(), float(entropy), balance)


def gate_problem(
    name: str, stats: GateStats, collapse_share: float = 0.9, dead_share: float | None = None
) -> tuple[str, str] | None:
    """``("collapsed" | "unused", message)`` when the gate ``name`` has a problem, else None."""
    n = stats.num_experts
    if n < 2:
        return None
    dead_share = 0.1 / n if dead_share is None else dead_share
    top = max(range(n), key=stats.utilisation.__getitem__)
    if stats.max_share >= collapse_share:
        return "collapsed", (f"gate {name!r} collapsed: expert {top} takes "
                             f"{stats.max_share:.1%} of the gate weight "
                             f"(threshold {collapse_share:.0%})")
    dead = [e for e, u in enumerate(stats.utilisation) if u < dead_share]
    if dead:
        shown = dead[:5] + (["..."] if len(dead) > 5 else [])
        return "unused", (f"gate {name!r}: {len(dead)} of {n} experts are almost never used "
                          f"(utilisation < {dead_share:.3g}): experts {shown}")
    return None


def collapse_warning(
    name: str, stats: GateStats, collapse_share: float = 0.9, dead_share: float | None = None
) -> str | None:
    """A message when the gate ``name`` has collapsed onto one expert or leaves experts unused."""
    problem = gate_problem(name, stats, collapse_share, dead_share)
    return problem[1] if problem else None


def split_gate_name(name: str) -> tuple[str, str]:
    """``"level0/gate/ctr"`` → layer ``"level0/gate"``, gate ``"ctr"`` (no slash: layer ``""``)."""
    layer, _, gate = name.rpartition("/")
    return layer, gate
