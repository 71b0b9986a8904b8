"""In-memory tensor store: every column encoded once; mini-batches are index slices."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from mtlkit.errors import DataError


@dataclass
class Batch:
    """A plain (features, labels, masks) bundle keyed by feature-group and task name.

    ``masks[task]`` is None when every row of the batch is labelled for that task;
    ``weights[task]`` (per-row loss weights) is absent or None when the task is unweighted.
    """

    features: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor | None]
    weights: dict[str, torch.Tensor | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return next(iter(self.features.values())).shape[0]


class TensorStore:
    """Rows held as preallocated tensors.

    Shuffling gathers every tensor once per epoch with one permutation; batches are then
    contiguous views (no per-sample ``__getitem__``, no collate).
    """

    def __init__(
        self,
        features: dict[str, torch.Tensor],
        labels: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor | None] | None = None,
        weights: dict[str, torch.Tensor | None] | None = None,
    ) -> None:
        masks = masks or {}
        weights = weights or {}
        sizes = {f"feature {k!r}": v.shape[0] for k, v in features.items()}
        sizes |= {f"label {k!r}": v.shape[0] for k, v in labels.items()}
        sizes |= {f"mask {k!r}": v.shape[0] for k, v in masks.items() if v is not None}
        sizes |= {f"weight {k!r}": v.shape[0] for k, v in weights.items() if v is not None}
        if len(set(sizes.values())) > 1:
            raise DataError(f"tensor store columns differ in length: {sizes}")
        if not sizes or next(iter(sizes.values())) == 0:
            raise DataError("tensor store is empty")
        self.features = features
        self.labels = labels
        self.masks = {k: masks.get(k) for k in labels}
        self.weights = {k: weights.get(k) for k in labels}

    def __len__(self) -> int:
        return next(iter(self.features.values())).shape[0]

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = {f"f:{k}": v for k, v in self.features.items()}
        out |= {f"y:{k}": v for k, v in self.labels.items()}
        out |= {f"m:{k}": v for k, v in self.masks.items() if v is not None}
        out |= {f"w:{k}": v for k, v in self.weights.items() if v is not None}
        return out

    def _batch(self, tensors: dict[str, torch.Tensor], sl: slice) -> Batch:
        masks: dict[str, torch.Tensor | None] = {}
        weights: dict[str, torch.Tensor | None] = {}
        for k in self.labels:
            m, w = tensors.get(f"m:{k}"), tensors.get(f"w:{k}")
            masks[k] = None if m is None else m[sl]
            weights[k] = None if w is None else w[sl]
        return Batch(
            features={k: tensors[f"f:{k}"][sl] for k in self.features},
            labels={k: tensors[f"y:{k}"][sl] for k in self.labels},
            masks=masks,
            weights=weights,
        )

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(len(self), generator=generator)

    def batches(
        self,
        batch_size: int,
        order: torch.Tensor | None = None,
        start: int = 0,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Yield batches in ``order`` (a permutation; None = storage order) from batch ``start``."""
        tensors = self._tensors()
        if order is not None:
            tensors = {k: v.index_select(0, order) for k, v in tensors.items()}
        n = len(self)
        stop = n - n % batch_size if drop_last else n
        for lo in range(start * batch_size, stop, batch_size):
            yield self._batch(tensors, slice(lo, min(lo + batch_size, n)))

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def subset(self, index: torch.Tensor) -> TensorStore:
        pick = lambda t: None if t is None else t.index_select(0, index)  # noqa: E731
        return TensorStore(
            {k: pick(v) for k, v in self.features.items()},
            {k: pick(v) for k, v in self.labels.items()},
            {k: pick(v) for k, v in self.masks.items()},
            {k: pick(v) for k, v in self.weights.items()},
        )
