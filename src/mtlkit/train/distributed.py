"""Data-parallel training over ``torch.distributed`` (``torchrun``; gloo on CPU, nccl on GPU).

``torchrun --nproc-per-node N -m mtlkit train CONFIG`` runs the same ``api.train`` in every
process; ``setup()`` joins the process group and ``DistributedContext.wrap`` adapts a
``Trainer`` without changing it. ``batch_size`` is per rank: one step on N ranks × B rows is
one step on the global batch of N·B rows, exactly (up to float summation order):

* **data**: every rank draws the same per-epoch permutation (same seed) and takes rows
  ``[rank·B, (rank+1)·B)`` of each global batch of ``N·B`` rows; an incomplete last global
  batch is dropped so every rank takes the same number of steps;
* **losses — global value, local gradient**: per task, the labelled-row counts ``n_r`` and
  weighted loss sums ``S_r = n_r·L_r`` are all-reduced (one tiny collective), and each rank
  hands the balancer ``L̃_r = c_r + (L_global − c_r).detach()`` with ``c_r = N·S_r/n`` (so
  ``mean_r ∇c_r = ∇L_global``). Every rank therefore sees the GLOBAL loss values and presence
  (identical balancer state and weights everywhere), and a task with no labelled rows on one
  rank still enters that rank's graph with a zero gradient — DDP's reduction never waits for a
  missing gradient;
* **gradients**: before ``optimizer.step`` every gradient is averaged across ranks in one flat
  all-reduce (the reduction DDP performs; done by hand so it also covers ``encode``/``decode``
  calls and ``autograd.grad``); parameters no rank reached keep ``grad=None``;
* **gradient balancers** see the global per-task gradients: on the shared parameters the
  per-task gradient matrix is all-reduced (averaged) before ``combine``; at the shared
  representation (rows differ per rank) the Gram matrix is all-reduced instead
  (``G = Σ_r G_r / N²``, the Gram of the concatenated global gradients), the weights come from
  it and each rank back-propagates its own rows of the combination.

Only rank 0 writes (run directory, checkpoints, metrics, results); validation runs on every
rank over the whole split, so its metrics are those of the union (AUC over all rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from mtlkit.balancing.base import GradientBalancer
from mtlkit.data.store import TensorStore
from mtlkit.losses import LossResult, TaskLosses


def setup() -> DistributedContext | None:
    """The process group of this run: joined from torchrun's environment (``WORLD_SIZE`` > 1)
    or already initialised by the caller; None for a single process."""
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.get_world_size() == 1:
        return None
    return DistributedContext(dist.get_rank(), dist.get_world_size())


class ShardedStore:
    """This rank's rows of every global batch of ``batch_size · world`` rows of ``store``."""

    def __init__(self, store: TensorStore, rank: int, world: int) -> None:
        self.store, self.rank, self.world = store, rank, world

    def __len__(self) -> int:
        return len(self.store) // self.world

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        return self.store.permutation(generator)

    def num_batches(self, batch_size: int, drop_last: bool = True) -> int:
        return len(self.store) // (batch_size * self.world)

    def batches(self, batch_size: int, order: torch.Tensor | None = None, start: int = 0,
                drop_last: bool = True):
        order = torch.arange(len(self.store)) if order is None else order
        n = self.num_batches(batch_size) * batch_size * self.world
        mine = order[:n].view(-1, self.world, batch_size)[:, self.rank].reshape(-1)
        return self.store.subset(mine).batches(batch_size, None, start)  # one gather per epoch


class DistributedTaskLosses:
    """``TaskLosses`` whose results carry the global values and presence (module docstring)."""

    def __init__(self, inner: TaskLosses, world: int) -> None:
        self.inner, self.world = inner, world

    def __call__(self, outputs, labels, masks, weights=None) -> LossResult:
        local = self.inner(outputs, labels, masks, weights)
        n_rows = len(next(iter(labels.values())))
        counts = torch.stack([
            torch.tensor(float(n_rows)) if masks.get(name) is None
            else masks[name].sum().to(torch.float32) for name in local.names])
        has_loss = torch.tensor([fn is not None for fn in self.inner.fns])
        counts = torch.where(has_loss, counts, torch.zeros_like(counts))
        values = local.values
        sums = values.detach() * counts
        totals = torch.cat([counts, sums]).to(torch.float64)
        dist.all_reduce(totals)
        t = len(local.names)
        n_all, s_all = totals[:t], totals[t:]
        present = n_all > 0
        global_values = torch.where(present, s_all / n_all.clamp_min(1), torch.zeros_like(s_all))
        scale = torch.where(present, self.world * counts.double() / n_all.clamp_min(1),
                            torch.zeros_like(n_all)).to(values.dtype)
        contrib = values * scale
        shown = contrib + (global_values.to(values.dtype) - contrib).detach()
        return LossResult(shown, present & has_loss, local.names)


@dataclass
class DistributedContext:
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, trainer: Any, data: Any = None) -> None:
        """Make ``trainer`` (and ``data.stores['train']``) data-parallel; see the module doc."""
        params = [p for p in trainer.model.parameters()] + list(trainer.balancer.parameters())
        with torch.no_grad():  # identical start everywhere (seeding already makes it so)
            for p in params:
                dist.broadcast(p.data, 0)
        trainer.losses = DistributedTaskLosses(trainer.losses, self.world)
        self._wrap_balancer(trainer.balancer)
        trainer.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: self.average_gradients(params))
        if data is not None:
            train = data.stores["train"]
            if hasattr(train, "shard_of"):  # a StreamingStore shards its own stream
                train.shard_of = (self.rank, self.world)
            else:
                data.stores["train"] = ShardedStore(train, self.rank, self.world)

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Mean gradient over ranks (one flat all-reduce); no rank with a grad → stays None."""
        if not params:
            return
        holds = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
        dist.all_reduce(holds)
        flat = torch.cat([
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
            for p in params])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, held in zip(params, holds.tolist(), strict=True):
            n = p.numel()
            if held > 0:
                p.grad = flat[offset: offset + n].view_as(p).to(p.dtype).clone()
            offset += n

    def _wrap_balancer(self, balancer: Any) -> None:
        if not isinstance(balancer, GradientBalancer):
            return  # loss weighting: the global loss values + gradient averaging suffice
        world = self.world
        original = balancer.combine
        if balancer.mode == "parameters":
            def combine(grads, losses, present):
                grads = grads.contiguous().clone()
                dist.all_reduce(grads)
                return original(grads / world, losses, present)
        else:
            if type(balancer).combine is not GradientBalancer.combine:
                raise NotImplementedError(
                    f"{type(balancer).__name__} in representation mode under torchrun: its "
                    "update is not a Gram-weighted combination; use balancer param "
                    "mode: parameters")

            def combine(grads, losses, present):
                gram = grads @ grads.T
                dist.all_reduce(gram)
                w = balancer.weigh(gram / world**2, losses, present).to(grads.dtype)
                return w @ grads, w
        balancer.combine = combine


__all__ = ["DistributedContext", "DistributedTaskLosses", "ShardedStore", "setup"]
