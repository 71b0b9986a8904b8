"""Balancer registry: ``create_balancer(name, task_names, **params)``."""

from __future__ import annotations

from mtlkit.balancing.base import BackwardContext, Balancer, LossWeighting
from mtlkit.errors import ParameterError
from mtlkit.registry import Registry

BALANCERS: Registry[Balancer] = Registry("balancer")
register_balancer = BALANCERS.register


def create_balancer(name: str, task_names: list[str], **params) -> Balancer:
    try:
        return BALANCERS.get(name)(task_names=task_names, **params)
    except TypeError as exc:
        raise ParameterError(f"balancer {name!r}: {exc}") from None


from mtlkit.balancing import (  # noqa: E402,F401
    aligned_mtl,
    cagrad,
    db_mtl,
    dwa,
    famo,
    fixed,
    gls,
    gradnorm,
    gradvac,
    imtl_g,
    mgda,
    nash_mtl,
    pcgrad,
    rlw,
    scale_invariant,
    uncertainty,
)

__all__ = ["BALANCERS", "BackwardContext", "Balancer", "LossWeighting", "create_balancer",
           "register_balancer"]
