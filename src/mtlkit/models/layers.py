"""Building blocks: one embedding table with offsets, MLPs, batched experts and towers."""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


def _uniform_(t: torch.Tensor, fan_in: int) -> torch.Tensor:
    """nn.Linear's default initialisation, applied to a stacked weight."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return nn.init.uniform_(t, -bound, bound)


class _GatherRows(torch.autograd.Function):
    """``weight[index]`` whose backward is one ``index_add_`` (CPU's dense embedding backward
    sorts the indices and was the largest single cost of a census MMoE step)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = weight.shape[0]
        return weight.index_select(0, index.reshape(-1)).view(*index.shape, weight.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        dim = grad.shape[-1]
        out = grad.new_zeros(ctx.num_rows, dim)
        return out.index_add_(0, index.reshape(-1), grad.reshape(-1, dim)), None


class FeatureEmbedding(nn.Module):
    """All categorical fields share ONE table; field j's ids are shifted by ``offsets[j]``."""

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        offsets = torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(max(sum(cardinalities), 1), dim)
        nn.init.normal_(self.table.weight, std=0.05)
        self.num_fields, self.dim = len(cardinalities), dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, F] local ids → [B, F·dim]."""
        ids = codes + self.offsets
        if torch.is_grad_enabled() and self.table.weight.requires_grad:
            return _GatherRows.apply(self.table.weight, ids).flatten(1)
        return self.table(ids).flatten(1)  # plain op: traceable for ONNX / TorchScript


class TabularInput(nn.Module):
    """Categorical embeddings concatenated with standardised numeric columns."""

    def __init__(self, cardinalities: list[int], num_numeric: int, embedding_dim: int = 4) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(cardinalities, embedding_dim) if cardinalities else None
        self.has_numeric = num_numeric > 0
        self.output_dim = len(cardinalities) * embedding_dim + num_numeric

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.embedding is not None:
            parts.append(self.embedding(features["categorical"]))
        if self.has_numeric:
            parts.append(features["numeric"])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class MLP(nn.Sequential):
    """Linear → activation (→ dropout) for each width in ``units``."""

    def __init__(
        self, in_dim: int, units: list[int], activation: str = "relu", dropout: float = 0.0
    ) -> None:
        layers: list[nn.Module] = []
        for width in units:
            layers += [nn.Linear(in_dim, width), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        super().__init__(*layers)
        self.output_dim = in_dim


class StackedLinear(nn.Module):
    """``n`` independent linear maps applied as one batched matmul.

    Input ``[n, B, in]`` (or ``[1, B, in]`` broadcast to all n) → output ``[n, B, out]``.
    """

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(_uniform_(torch.empty(n, in_dim, out_dim), in_dim))
        self.bias = nn.Parameter(_uniform_(torch.empty(n, 1, out_dim), in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1 and self.weight.shape[0] > 1:
            x = x.expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)


class BatchedTowers(nn.Module):
    """One MLP tower per task, all evaluated with batched matmuls over stacked weights.

    Input ``[T, B, in]`` (one row per task; ``[1, B, in]`` for a shared input).
    Output: ``{task: [B]}`` for output size 1, ``{task: [B, C]}`` otherwise.
    """

    def __init__(
        self, names: list[str], in_dim: int, units: list[int], output_dims: list[int],
        activation: str = "relu", dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.names = list(names)
        n = len(names)
        self.hidden = nn.ModuleList()
        for width in units:
            self.hidden.append(StackedLinear(n, in_dim, width))
            in_dim = width
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.output_dims = list(output_dims)
        width = max(output_dims)
        self.out = StackedLinear(n, in_dim, width)
        self.uniform = all(d == width for d in output_dims)
        if not self.uniform:  # zero (and never use) the padded output columns
            pad = torch.zeros(n, 1, width, dtype=torch.bool)
            for t, d in enumerate(output_dims):
                pad[t, 0, d:] = True
            self.register_buffer("_pad", pad, persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for layer in self.hidden:
            x = self.dropout(self.act(layer(x)))
        y = self.out(x)  # [T, B, width]
        if self.uniform and self.output_dims[0] == 1:
            y = y.squeeze(-1)
            return {name: y[t] for t, name in enumerate(self.names)}
        return {name: y[t, :, : d] if d > 1 else y[t, :, 0]
                for t, (name, d) in enumerate(zip(self.names, self.output_dims, strict=True))}


class GatedExperts(nn.Module):
    """``E`` experts and ``G`` softmax gates over them, computed from one fused matmul.

    The first layer of every expert and every gate's logits come from a single
    ``addmm`` over the concatenated weight ``[in, E·H + G·E]``; deeper expert layers are one
    batched matmul over stacked weights. Returns expert outputs ``[B, E, H]`` and gate logits
    ``[B, G, E]``.
    """

    def __init__(
        self, in_dim: int, num_experts: int, units: list[int], num_gates: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if not units:
            raise ValueError("experts need at least one hidden layer (expert_units)")
        self.E, self.G, self.H = num_experts, num_gates, units[0]
        width = num_experts * units[0] + num_gates * num_experts
        self.weight = nn.Parameter(_uniform_(torch.empty(in_dim, width), in_dim))
        self.bias = nn.Parameter(_uniform_(torch.empty(width), in_dim))
        self.deep = nn.ModuleList(
            StackedLinear(num_experts, a, b) for a, b in pairwise(units)
        )
        self.act = ACTIVATIONS[activation]()
        self.output_dim = units[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.addmm(self.bias, x, self.weight)
        split = self.E * self.H
        experts = self.act(h[:, :split]).view(-1, self.E, self.H)
        gate_logits = h[:, split:].view(-1, self.G, self.E)
        if self.deep:
            z = experts.transpose(0, 1)  # [E, B, H]
            for layer in self.deep:
                z = self.act(layer(z))
            experts = z.transpose(0, 1)
        return experts, gate_logits


class _Mixture(torch.autograd.Function):
    """``out[b, g] = Σ_e gates[b, g, e] · experts[b, e]`` without a [B, G, E, H] intermediate.

    On CPU, B tiny ``[G, E] @ [E, H]`` products (``bmm``/``einsum``) and the broadcast
    multiply-sum (which autograd differentiates through two more [B, G, E, H] products) are both
    slower than E fused multiply-adds forward and G backward: 1.5-3x for 3-6 gates (1,024 rows,
    8 experts × 16). The gates' gradient is one ``bmm``.
    """

    @staticmethod
    def forward(ctx, gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gates, experts)
        return _mixture_forward(gates, experts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gates, experts = ctx.saved_tensors
        grad_gates = grad_experts = None
        if ctx.needs_input_grad[0]:
            grad_gates = torch.bmm(grad, experts.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            grad_experts = gates[:, 0, :, None] * grad[:, 0, None, :]
            for g in range(1, gates.shape[1]):
                grad_experts.addcmul_(gates[:, g, :, None], grad[:, g, None, :])
        return grad_gates, grad_experts


def _mixture_forward(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    out = gates[:, :, 0, None] * experts[:, None, 0, :]
    for e in range(1, experts.shape[1]):
        out.addcmul_(gates[:, :, e, None], experts[:, None, e, :])
    return out  # [B, G, H]


def mix(gate_logits: torch.Tensor, experts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax gates [B, G, E] · experts [B, E, H] → mixtures [G, B, H] and gate weights.

    The custom backward is used only while gradients are enabled (export traces plain ops).
    """
    gates = F.softmax(gate_logits, dim=-1)
    if gates.shape[1] == 1:  # one gate: autograd's broadcast multiply-sum is as fast
        mixed = (gates.unsqueeze(-1) * experts.unsqueeze(1)).sum(2)
    elif torch.is_grad_enabled() and (gates.requires_grad or experts.requires_grad):
        mixed = _Mixture.apply(gates, experts)
    else:
        mixed = _mixture_forward(gates, experts)
    return mixed.transpose(0, 1), gates


class SelectedTabularInput(nn.Module):
    """A :class:`TabularInput` over a named subset of the tabular features.

    ``only`` keeps the named columns, ``exclude`` drops them (names from ``InputSpec``'s
    ``categorical_names`` / ``numeric_names``). Used to route bias features to a bias tower and
    keep them out of the main network.
    """

    def __init__(self, spec, embedding_dim: int = 4, only: list[str] | None = None,
                 exclude: list[str] | None = None) -> None:
        super().__init__()
        cat_names, num_names = list(spec.categorical_names), list(spec.numeric_names)
        if len(cat_names) != len(spec.cardinalities) or len(num_names) != spec.num_numeric:
            raise ValueError("selecting input features by name needs InputSpec.categorical_names "
                             "and numeric_names (set by mtlkit.data.prepare)")
        known = cat_names + num_names
        asked = list(only or []) + list(exclude or [])
        unknown = [n for n in asked if n not in known]
        if unknown:
            raise ValueError(f"feature(s) {unknown[:5]} are not model inputs; inputs are "
                             f"{known[:20]}")
        keep = (lambda n: n in only) if only is not None else (lambda n: n not in exclude)
        cat_idx = [j for j, n in enumerate(cat_names) if keep(n)]
        num_idx = [j for j, n in enumerate(num_names) if keep(n)]
        if not cat_idx and not num_idx:
            raise ValueError("the feature selection leaves no input features")
        self.register_buffer("cat_idx", torch.tensor(cat_idx, dtype=torch.long), persistent=False)
        self.register_buffer("num_idx", torch.tensor(num_idx, dtype=torch.long), persistent=False)
        self.names = [cat_names[j] for j in cat_idx] + [num_names[j] for j in num_idx]
        self.inner = TabularInput([spec.cardinalities[j] for j in cat_idx], len(num_idx),
                                  embedding_dim)
        self.output_dim = self.inner.output_dim

    def select(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        if len(self.cat_idx):
            out["categorical"] = features["categorical"].index_select(1, self.cat_idx)
        if len(self.num_idx):
            out["numeric"] = features["numeric"].index_select(1, self.num_idx)
        return out

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner(self.select(features))


class StackedMLP(nn.Module):
    """``n`` independent MLPs (experts, sub-networks, towers) as batched matmuls.

    Input ``[n, B, in]`` or ``[1, B, in]`` (shared input) → ``[n, B, units[-1]]``; every layer
    is followed by the activation.
    """

    def __init__(self, n: int, in_dim: int, units: list[int], activation: str = "relu") -> None:
        super().__init__()
        if not units:
            raise ValueError("a stacked MLP needs at least one layer (units)")
        dims = [in_dim, *units]
        self.layers = nn.ModuleList(StackedLinear(n, a, b) for a, b in pairwise(dims))
        self.act = ACTIVATIONS[activation]()
        self.output_dim = units[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = self.act(layer(x))
        return x


def gather_mix(
    gate_logits: torch.Tensor, experts: torch.Tensor, index: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates over chosen subsets of experts, as one batched contraction.

    ``gate_logits [G, B, N]`` score, for gate g, the experts ``index[g] [N]`` of
    ``experts [E, B, H]``; ``valid [G, N]`` marks real entries when gates have fewer than N
    experts (padding gets weight 0). Returns mixtures ``[G, B, H]`` and gate weights
    ``[G, B, N]``.
    """
    if valid is not None:
        gate_logits = gate_logits.masked_fill(~valid[:, None, :], float("-inf"))
    gates = F.softmax(gate_logits, dim=-1)
    chosen = experts[index]  # [G, N, B, H]
    return torch.einsum("gbn,gnbh->gbh", gates, chosen), gates
