"""mtlkit vs LibMTL 1.1.5 step time for PCGrad, MGDA and CAGrad on the same models.

Run in a separate virtual environment that sees mtlkit and torch 2.13.0 and has LibMTL
installed WITHOUT its dependencies (its torchvision pin would replace torch):

    python -m venv --system-site-packages /tmp/venv-libmtl
    /tmp/venv-libmtl/bin/pip install --no-deps LibMTL==1.1.5
    /tmp/venv-libmtl/bin/python benchmarks/libmtl_compare.py --steps 60

LibMTL is adapted, never edited: a stub ``torchvision.models.utils`` module satisfies its
import; its weighting classes are mixins expecting ``task_num``, ``device``, ``rep_grad``,
``get_share_params`` and ``zero_grad_share_params`` from its architecture classes, which a
small mtlkit ``Balancer`` adapter supplies (device ``cpu`` instead of its ``cuda:0``; the
weighting code itself never calls ``iterator.next()``, only LibMTL's trainer does). LibMTL 1.1.5
ships no Nash-MTL, and its CAGrad objective only accepts exactly 3 tasks (subclassed here).
Both sides run in their default modes: LibMTL's PCGrad/MGDA/CAGrad take
gradients on the shared parameters; mtlkit's MGDA does too, PCGrad/CAGrad (and ``mgda_ub``)
at the representation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types

import torch

sys.path.insert(0, "benchmarks")
from balancers import census_setup, synthetic_setup

from mtlkit.balancing import create_balancer
from mtlkit.balancing.base import BackwardContext, Balancer, present_indices
from mtlkit.config import TrainConfig
from mtlkit.losses import LossResult
from mtlkit.train.trainer import Trainer


def _stub_torchvision() -> None:
    from torch.hub import load_state_dict_from_url

    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    utils = types.ModuleType("torchvision.models.utils")
    utils.load_state_dict_from_url = load_state_dict_from_url
    tv.models, models.utils = models, utils
    sys.modules.update({"torchvision": tv, "torchvision.models": models,
                        "torchvision.models.utils": utils})


class LibMTLAdapter(Balancer):
    """Runs a LibMTL weighting's ``backward`` as an mtlkit balancer (parameter gradients)."""

    def __init__(self, task_names, weighting_cls, model, **kwargs) -> None:
        super().__init__(task_names)
        shared = list(model.shared_parameters())

        class Weighting(weighting_cls):
            task_num = len(task_names)
            device = torch.device("cpu")
            rep_grad = False

            def get_share_params(self):
                return shared

            def zero_grad_share_params(self):
                for p in shared:
                    if p.grad is not None:
                        p.grad.zero_()

        self.weighting = Weighting()
        self.weighting.init_param()
        self.kwargs = kwargs

    def _backward(self, losses: LossResult, ctx: BackwardContext):
        present = present_indices(losses)
        w = self.weighting.backward([losses.values[k] for k in present], **self.kwargs)
        out = torch.zeros(self.num_tasks)
        out[present] = torch.as_tensor(w, dtype=torch.float32)
        return out


def _cagrad_any_t(cagrad_cls):
    """LibMTL 1.1.5's CAGrad objective hard-codes ``reshape(1, 3)`` (3 tasks only); this subclass
    runs the same steps (its gradient pass, SciPy SLSQP on the Gram matrix, its rescale and
    ``_reset_grad``) for any number of tasks."""
    import numpy as np
    from scipy.optimize import minimize

    class CAGradAnyT(cagrad_cls):
        def backward(self, losses, **kwargs):
            calpha, rescale = kwargs["calpha"], kwargs["rescale"]
            self._compute_grad_dim()
            grads = self._compute_grad(losses, mode="backward")
            gg = torch.matmul(grads, grads.t()).cpu()
            g0_norm = (gg.mean() + 1e-8).sqrt()
            x_start = np.ones(self.task_num) / self.task_num
            a, b = gg.numpy(), x_start.copy()
            c = (calpha * g0_norm + 1e-8).item()

            def objfn(x):
                return float(x @ a @ b + c * np.sqrt(x @ a @ x + 1e-8))

            res = minimize(objfn, x_start, bounds=tuple((0, 1) for _ in x_start),
                           constraints=({"type": "eq", "fun": lambda x: 1 - sum(x)},))
            ww = torch.Tensor(res.x)
            gw = (grads * ww.view(-1, 1)).sum(0)
            g = grads.mean(0) + c / (gw.norm() + 1e-8) * gw
            self._reset_grad(g / {0: 1.0, 1: 1 + calpha**2, 2: 1 + calpha}[rescale])
            return res.x

    return CAGradAnyT


def time_steps(trainer, batches, steps):
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        trainer.train_step(batches[i % len(batches)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times[5:]) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _stub_torchvision()
    from LibMTL.weighting import MGDA, CAGrad, PCGrad

    libmtl = {"pcgrad": (PCGrad, {}), "mgda": (MGDA, {"mgda_gn": "none"}),
              "cagrad": (_cagrad_any_t(CAGrad), {"calpha": 0.4, "rescale": 1})}
    ours = {"pcgrad": ["pcgrad"], "mgda": ["mgda", "mgda_ub"], "cagrad": ["cagrad"]}
    for label, setup in {"census": census_setup, "synthetic": synthetic_setup}.items():
        make, tasks, batches = setup()
        names = [t.name for t in tasks]
        print(f"\n## {label} ({len(tasks)} tasks)")
        print("| method | LibMTL ms | mtlkit | mtlkit ms | speed-up |")
        print("|---|---:|---|---:|---:|")
        for method, (cls, kw) in libmtl.items():
            model = make()
            tr = Trainer(model, tasks, LibMTLAdapter(names, cls, model, **kw),
                         TrainConfig(progress=False, tensorboard=False))
            lib_ms = time_steps(tr, batches, args.steps)
            for name in ours[method]:
                model = make()
                bal = create_balancer(name, names)
                tr = Trainer(model, tasks, bal, TrainConfig(progress=False, tensorboard=False))
                ms = time_steps(tr, batches, args.steps)
                print(f"| {method} | {lib_ms:.2f} | {name} ({bal.mode}) | {ms:.2f} "
                      f"| {lib_ms / ms:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
