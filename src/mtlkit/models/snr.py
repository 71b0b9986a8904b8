"""Sub-Network Routing (Ma et al., AAAI 2019): SNR-Trans and SNR-Aver.

The shared bottom is split into levels of ``num_subnets`` sub-networks (widths
``subnet_units``); every connection from a lower sub-network i to an upper unit j (the next
level's sub-networks, and after the last level the T task towers) carries a binary code
``z_ij`` learned with the hard-concrete relaxation of Louizos et al. (ICLR 2018):

    u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α_ij) / β),
    z = min(1, max(0, s·(ζ − γ) + γ))

with β = 2/3, γ = −0.1, ζ = 1.1. At evaluation z = min(1, max(0, σ(log α)(ζ − γ) + γ)). The
L0 penalty ``Σ_ij σ(log α_ij − β log(−γ/ζ))`` (the expected number of open connections) times
``l0_weight`` is returned by ``extra_losses``.

* SNR-Trans: ``u_j = Σ_i z_ij W_ij v_i`` (a transformation matrix per connection, + bias);
  at an inner level the upper sub-network's output is ``act(u_j)``.
* SNR-Aver: ``u_j = Σ_i z_ij v_i`` (coded sum of equally sized outputs); at an inner level the
  upper sub-network then applies its own layer, ``act(V_j u_j + c_j)``.

Codes are drawn per example (independent noise for each row), which keeps every connection's
gradient non-degenerate within a batch; all routing is one batched contraction per level.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.models import register_model
from mtlkit.models.base import InputFactory, MultiTaskModel
from mtlkit.models.layers import ACTIVATIONS, BatchedTowers, StackedLinear, StackedMLP, _uniform_

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


class HardConcreteGates(nn.Module):
    """``[out, in]`` binary codes with the hard-concrete relaxation and their L0 penalty."""

    def __init__(self, n_out: int, n_in: int, log_alpha_init: float = 2.0,
                 init_noise: float = 0.01) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(log_alpha_init + init_noise * torch.randn(n_out, n_in))

    def forward(self, batch: int) -> torch.Tensor:
        """Codes ``[B, out, in]`` (training: sampled per row; eval: deterministic ``[1, …]``)."""
        if self.training:
            u = torch.rand(batch, *self.log_alpha.shape, device=self.log_alpha.device,
                           dtype=self.log_alpha.dtype).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / BETA)
        else:
            s = torch.sigmoid(self.log_alpha).unsqueeze(0)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def l0(self) -> torch.Tensor:
        """Expected number of non-zero codes: Σ P(z_ij ≠ 0)."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-GAMMA / ZETA)).sum()


class Routing(nn.Module):
    """Coded connections from ``n_in`` lower outputs to ``n_out`` upper units.

    ``trans``: ``u_j = Σ_i z_ij W_ij v_i + b_j``; ``aver``: ``u_j = Σ_i z_ij v_i``.
    """

    def __init__(self, n_out: int, n_in: int, in_dim: int, out_dim: int, trans: bool,
                 log_alpha_init: float) -> None:
        super().__init__()
        self.codes = HardConcreteGates(n_out, n_in, log_alpha_init)
        self.weight = self.bias = None
        if trans:
            fan_in = in_dim * n_in
            self.weight = nn.Parameter(_uniform_(torch.empty(n_out, n_in, in_dim, out_dim), fan_in))
            self.bias = nn.Parameter(_uniform_(torch.empty(n_out, 1, out_dim), fan_in))

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v [n_in, B, H]`` → (``u [n_out, B, H']``, codes ``[B or 1, n_out, n_in]``)."""
        z = self.codes(v.shape[1])
        zt = z.permute(1, 2, 0).unsqueeze(-1)  # [out, in, B or 1, 1]
        if self.weight is None:
            return (zt * v.unsqueeze(0)).sum(1), z
        o, i, h_in, h_out = self.weight.shape
        # every connection's transform as one batched matmul: [o·i, B, H] @ [o·i, H, H']
        t = torch.bmm(v.unsqueeze(0).expand(o, -1, -1, -1).reshape(o * i, -1, h_in),
                      self.weight.reshape(o * i, h_in, h_out)).view(o, i, -1, h_out)
        return (zt * t).sum(1) + self.bias, z


class SNR(MultiTaskModel):
    """``mode='trans'`` (SNR-Trans) or ``'aver'`` (SNR-Aver)."""

    def __init__(
        self, make_input: InputFactory, tasks: list[TaskSpec], mode: str = "trans",
        num_subnets: int = 4, subnet_units: list[int] = (16,), tower_units: list[int] = (8,),
        activation: str = "relu", dropout: float = 0.0, l0_weight: float = 1e-3,
        log_alpha_init: float = 2.0,
    ) -> None:
        super().__init__(tasks)
        if mode not in ("trans", "aver"):
            raise ValueError(f"snr: mode must be 'trans' or 'aver', got {mode!r}")
        subnet_units = list(subnet_units)
        if not subnet_units:
            raise ValueError("snr: subnet_units needs at least one level")
        if mode == "aver" and len(set(subnet_units)) > 1:
            # a coded sum needs equal widths on both sides of every routing
            raise ValueError(f"snr_aver: every level must have the same width, got {subnet_units}")
        if l0_weight < 0:
            raise ValueError(f"snr: l0_weight must be ≥ 0, got {l0_weight}")
        self.mode, self.l0_weight = mode, float(l0_weight)
        self.input = make_input()
        N, T = num_subnets, len(tasks)
        self.bottom = StackedMLP(N, self.input.output_dim, subnet_units[:1], activation)
        self.act = ACTIVATIONS[activation]()
        # routing r connects level r's N sub-networks to level r+1's (or, last, to the towers)
        outs = [N] * (len(subnet_units) - 1) + [T]
        widths = [*subnet_units[1:], subnet_units[-1]]
        self.routes = nn.ModuleList(
            Routing(n, N, subnet_units[r], w, mode == "trans", log_alpha_init)
            for r, (n, w) in enumerate(zip(outs, widths, strict=True))
        )
        # SNR-Aver: the upper sub-networks' own layers (inner levels only)
        self.upper = nn.ModuleList(
            StackedLinear(N, subnet_units[r], widths[r]) for r in range(len(outs) - 1)
        ) if mode == "aver" else nn.ModuleList()
        self.towers = BatchedTowers(self.task_names, widths[-1], list(tower_units),
                                    [t.output_dim for t in tasks], activation, dropout)
        self._penalty: torch.Tensor | None = None

    def encode(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        v = self.bottom(self.input(features).unsqueeze(0))  # [N, B, H]
        for r, route in enumerate(self.routes):
            u, z = route(v)
            self._record(f"gate/route{r + 1}", z.mean(0))
            if r == len(self.routes) - 1:
                break
            v = self.act(u if self.mode == "trans" else self.upper[r](u))
        self._penalty = self.l0_weight * sum(r.codes.l0() for r in self.routes)
        return u  # [T, B, H]: one input per task tower

    def decode(self, rep: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.towers(rep)

    def shared_modules(self) -> list[nn.Module]:
        return [self.input, self.bottom, self.routes[:-1], self.upper]

    def extra_losses(self) -> dict[str, torch.Tensor]:
        if self._penalty is None or self.l0_weight == 0:
            return {}
        return {"l0": self._penalty}


@register_model("snr_trans")
def snr_trans(**kw) -> SNR:
    return SNR(mode="trans", **kw)


@register_model("snr_aver")
def snr_aver(**kw) -> SNR:
    return SNR(mode="aver", **kw)
