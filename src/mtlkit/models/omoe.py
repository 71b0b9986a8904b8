"""One-gate Mixture-of-Experts: MMoE with a single gate shared by all tasks."""

from __future__ import annotations

from mtlkit.models import register_model
from mtlkit.models.mmoe import MMoE


@register_model("omoe")
def omoe(**kw) -> MMoE:
    return MMoE(one_gate=True, **kw)
