"""Balancers: known answers, absent tasks, the non-finite guard, modes, checkpoint/resume."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mtlkit.balancing import BALANCERS, BackwardContext, create_balancer
from mtlkit.balancing.base import NonFiniteError
from mtlkit.balancing.cagrad import cagrad_weights
from mtlkit.balancing.gradnorm import gradnorm_targets
from mtlkit.balancing.imtl_g import imtl_g_weights
from mtlkit.balancing.mgda import mgda_weights
from mtlkit.balancing.nash_mtl import nash_weights
from mtlkit.config import TrainConfig
from mtlkit.data.prepare import InputSpec
from mtlkit.data.schema import TaskSpec
from mtlkit.data.store import Batch
from mtlkit.losses import LossResult
from mtlkit.models import create_model
from mtlkit.models.base import MultiTaskModel
from mtlkit.train.trainer import Trainer

GRADIENT_METHODS = ["mgda", "mgda_ub", "pcgrad", "cagrad", "imtl_g", "gradvac", "nash_mtl",
                    "aligned_mtl", "gradnorm"]


# ----------------------------------------------------------------------------- tiny models
class LinearTrunk(MultiTaskModel):
    """``Z = X W`` (no bias) shared; task k: ``L_k = mean(tanh(Z v_k) − y_k)²`` computed by the
    test. An unused shared parameter checks that ``grad=None`` survives."""

    def __init__(self, d: int = 6, h: int = 3, tasks: int = 3, seed: int = 0) -> None:
        specs = [TaskSpec(name=f"t{k}", column=f"t{k}", type="regression") for k in range(tasks)]
        super().__init__(specs)
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(d, h, generator=g))
        self.unused = nn.Parameter(torch.ones(2))
        self.heads = nn.Parameter(torch.randn(tasks, h, generator=g))

    def encode(self, x):
        return x @ self.w

    def decode(self, z):
        out = torch.tanh(z @ self.heads.T)
        return {n: out[:, k] for k, n in enumerate(self.task_names)}

    def shared_modules(self):
        return [_Holder(self.w, self.unused)]


class _Holder(nn.Module):
    def __init__(self, *params):
        super().__init__()
        self.ps = nn.ParameterList(params)


def _losses(outputs, y, present=None):
    values = torch.stack([((o - y[:, k]) ** 2).mean() for k, o in enumerate(outputs.values())])
    present = torch.ones(len(values), dtype=torch.bool) if present is None else present
    return LossResult(values, present, list(outputs))


def _step(model, balancer, x, y, present=None):
    model.zero_grad(set_to_none=True)
    if balancer.needs_representation:
        rep = model.encode(x)
        out = model.decode(rep)
    else:
        rep, out = None, model(x)
    return balancer.backward(_losses(out, y, present), BackwardContext(model, rep))


class Plane(MultiTaskModel):
    """One shared 2-d parameter θ; ``L_k = g_k·θ`` so the task gradients are exactly g_k."""

    def __init__(self, g: torch.Tensor) -> None:
        super().__init__([TaskSpec(name=f"t{k}", column="c", type="regression")
                          for k in range(len(g))])
        self.theta = nn.Parameter(torch.zeros(g.shape[1]))
        self.register_buffer("g", g)

    def encode(self, x):
        return self.theta * 1.0

    def decode(self, rep):
        return {n: self.g[k] @ rep for k, n in enumerate(self.task_names)}

    def shared_modules(self):
        return [_Holder(self.theta)]


def _plane_step(g, name, **params):
    model = Plane(g)
    bal = create_balancer(name, model.task_names, **params)
    rep = model.encode(None) if bal.needs_representation else None
    out = model.decode(rep if rep is not None else model.encode(None))
    lr = LossResult(torch.stack(list(out.values())), torch.ones(len(g), dtype=torch.bool),
                    model.task_names)
    w = bal.backward(lr, BackwardContext(model, rep))
    return model.theta.grad, w


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("mode", ["parameters", "representation"])
def test_pcgrad_projects_task_gradients_not_their_sum(mode):
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    grad, w = _plane_step(g, "pcgrad", mode=mode)
    assert_close(grad, torch.tensor([0.5, 1.5]))  # sum convention
    assert not torch.allclose(grad, torch.tensor([0.0, 1.0]))  # PCGrad of g1 + g2
    assert_close(w, torch.tensor([2.0, 1.5]))  # g1' = g1 + ½g2, g2' = g2 + g1


def test_pcgrad_zero_norm_gradient_is_safe():
    grad, _ = _plane_step(torch.tensor([[0.0, 0.0], [-1.0, 1.0]]), "pcgrad")
    assert_close(grad, torch.tensor([-1.0, 1.0]))


def test_mgda_two_task_closed_form():
    v1, v2 = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([-1.0, 0.5, 1.0])
    gamma = (v2 @ v2 - v1 @ v2) / (v1 @ v1 + v2 @ v2 - 2 * v1 @ v2)
    gram = torch.stack([v1, v2]) @ torch.stack([v1, v2]).T
    assert_close(mgda_weights(gram), torch.stack([gamma, 1 - gamma]))
    # clipped: v2 = 3·v1 → γ formula > 1 → all weight on the shorter v1
    gram = torch.stack([v1, 3 * v1]) @ torch.stack([v1, 3 * v1]).T
    assert_close(mgda_weights(gram), torch.tensor([1.0, 0.0]))


def _brute_force_simplex(f, steps=400):
    best, arg = math.inf, None
    for i in range(steps + 1):
        for j in range(steps + 1 - i):
            w = np.array([i, j, steps - i - j]) / steps
            v = f(w)
            if v < best:
                best, arg = v, w
    return best, arg


def test_mgda_frank_wolfe_matches_brute_force_for_three_tasks():
    rng = np.random.default_rng(0)
    for _ in range(3):
        j = rng.normal(size=(3, 5))
        k = j @ j.T
        w = mgda_weights(torch.tensor(k)).numpy()
        best, _ = _brute_force_simplex(lambda x, k=k: x @ k @ x)
        assert abs(w.sum() - 1) < 1e-9 and (w >= 0).all()
        assert w @ k @ w <= best + 1e-9
        assert w @ k @ w >= best - 1e-3 * max(best, 1e-3)


def test_cagrad_hand_values_two_by_three():
    j = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
    gram = j @ j.T
    # c = 0.5: g0 = (1,1,1), √φ = 0.5·√3; the minimiser is w = e1 (f'(1) < 0 on the segment),
    # so d = g0 + √φ/‖g1‖ · g1 with ‖g1‖ = √18
    lam = 0.5 * math.sqrt(3) / math.sqrt(18)
    assert_close(cagrad_weights(gram, 0.5, 0), torch.tensor([0.5 + lam, 0.5], dtype=gram.dtype))
    # c = 2: interior optimum; compare with a dense 1-d search of the CAGrad objective
    cn = 2 * math.sqrt(3)
    ts = np.linspace(0, 1, 200001)
    gw = np.outer(ts, j[0].numpy()) + np.outer(1 - ts, j[1].numpy())
    obj = gw @ np.ones(3) + cn * np.linalg.norm(gw, axis=1)
    t = ts[obj.argmin()]
    gwn = np.linalg.norm(gw[obj.argmin()])
    expected = torch.tensor([0.5 + cn / gwn * t, 0.5 + cn / gwn * (1 - t)])
    assert_close(cagrad_weights(gram, 2.0, 0).float(), expected.float(), atol=1e-4, rtol=0)
    # rescale=1 divides by 1 + c²
    assert_close(cagrad_weights(gram, 2.0, 1), cagrad_weights(gram, 2.0, 0) / 5)


def test_imtl_g_hand_values_two_by_three():
    g1, g2 = torch.tensor([-4.0, 1.0, 1.0]), torch.tensor([6.0, 1.0, 1.0])
    j = torch.stack([g1, g2])
    n1, n2 = math.sqrt(18), math.sqrt(38)
    # α₂ = g1·(u1 − u2) / ((g1 − g2)·(u1 − u2)), g1·g2 = −22
    a2 = (n1 + 22 / n2) / (10 * (4 / n1 + 6 / n2))
    w = imtl_g_weights(j @ j.T)
    assert_close(w, torch.tensor([1 - a2, a2]))
    d = w @ j  # equal projections on both unit gradients
    assert_close(d @ g1 / n1, d @ g2 / n2)


def test_nash_solves_the_bargaining_equation():
    g = torch.diag(torch.tensor([1.0, 1000.0], dtype=torch.float64))
    k = g.T @ g
    a = nash_weights(k)
    assert_close(k @ a, 1 / a, atol=1e-6, rtol=1e-6)
    assert_close(a, torch.tensor([1.0, 1e-3], dtype=torch.float64), atol=1e-6, rtol=1e-6)
    rng = np.random.default_rng(1)
    j = torch.tensor(rng.normal(size=(4, 10)))
    k = j @ j.T
    a = nash_weights(k)
    assert (a > 0).all()
    assert_close(k @ a, 1 / a, atol=1e-6, rtol=1e-6)


def test_dwa_weights_from_loss_history():
    bal = create_balancer("dwa", ["a", "b"])
    present = [0, 1]
    losses = torch.tensor([1.0, 2.0])
    for epoch, mean in enumerate([[1.0, 2.0], [0.5, 1.8]]):
        assert_close(bal.weights(losses, present), torch.ones(2))  # λ = 1 for two epochs
        bal.update(torch.tensor(mean), present)
        bal.on_epoch_end(epoch, torch.tensor(mean))
    e = [math.exp(0.5 / 2), math.exp(0.9 / 2)]
    assert_close(bal.weights(losses, present), torch.tensor([2 * e[0], 2 * e[1]]) / sum(e))


def test_gradnorm_targets_equal_when_losses_halve():
    t = gradnorm_targets(torch.tensor([3.0, 0.2]), torch.tensor([5.0, 0.05]),
                         torch.tensor([10.0, 0.1]), alpha=1.5)
    assert_close(t[0], t[1])
    assert_close(t[0], torch.tensor(1.6))


def test_gradnorm_weights_positive_sum_to_t_and_slow_task_gains():
    bal = create_balancer("gradnorm", ["fast", "slow"], mode="parameters")
    opt = torch.optim.Adam(bal.parameters(), lr=0.05)
    grads = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    for step in range(50):
        losses = torch.tensor([0.9 ** step, 0.99 ** step])  # 'fast' falls ~10× faster
        opt.zero_grad()
        _, w = bal.combine(grads, losses, [0, 1])
        opt.step()
        assert (w > 0).all() and abs(float(w.sum()) - 2) < 1e-5
    assert w[1] > w[0]


def test_uncertainty_bound_on_an_exactly_fitted_task():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = torch.stack([x @ torch.tensor([1.0, -2.0, 0.5]), torch.randn(64)], 1)
    model = nn.Linear(3, 2)
    bal = create_balancer("uncertainty", ["exact", "noisy"], bound=5.0)
    opt = torch.optim.Adam([*model.parameters(), *bal.parameters()], lr=0.05)
    s_min = math.inf
    for _ in range(2000):
        opt.zero_grad()
        out = model(x)
        values = ((out - y) ** 2).mean(0)
        ctx = BackwardContext(model)
        w = bal.backward(LossResult(values, torch.ones(2, dtype=torch.bool), ["exact", "noisy"]),
                         ctx)
        opt.step()
        s = bal.log_vars().detach()
        assert torch.isfinite(s).all() and torch.isfinite(w).all()
        assert (s.abs() <= 5.0).all()
        s_min = min(s_min, float(s[0]))
    assert float(values[0].detach()) < 1e-3  # fitted …
    assert s_min < -4.0  # … and s pushed against (not past) its bound


# ----------------------------------------------------------------------------- modes
def _orthonormal_rows(b: int, d: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, b, dtype=torch.float64))
    return q.T.contiguous()  # [b, d], X Xᵀ = I


@pytest.mark.parametrize("name", ["mgda_ub", "pcgrad", "cagrad", "imtl_g", "gradvac", "nash_mtl",
                                  "aligned_mtl", "gradnorm"])
def test_representation_mode_equals_parameter_mode_for_linear_trunk(name):
    """Z = XW with X Xᵀ = I: ∇_W L_k = Xᵀ∇_Z L_k, so both Gram matrices (and norms) are equal,
    every Gram-based method picks the same weights and W receives Xᵀ·(same combination)."""
    torch.manual_seed(0)
    x, y = _orthonormal_rows(4, 6), torch.randn(4, 3, dtype=torch.float64)
    grads = {}
    for mode in ("representation", "parameters"):
        model = LinearTrunk().double()
        bal = create_balancer(name, model.task_names, mode=mode).double()
        w = _step(model, bal, x, y)
        grads[mode] = (model.w.grad.clone(), model.heads.grad.clone(), w)
        assert model.unused.grad is None
    for a, b in zip(grads["representation"], grads["parameters"], strict=True):
        assert_close(a, b.to(a.dtype), atol=1e-6, rtol=1e-5)  # solver tolerance (CAGrad T=3)


@pytest.mark.parametrize("mode", ["representation", "parameters"])
def test_no_graph_retained_after_step(mode):
    model = LinearTrunk()
    bal = create_balancer("pcgrad", model.task_names, mode=mode)
    x, y = torch.randn(5, 6), torch.randn(5, 3)
    rep = model.encode(x)
    lr = _losses(model.decode(rep), y)
    bal.backward(lr, BackwardContext(model, rep if mode == "representation" else None))
    with pytest.raises(RuntimeError, match=r"second time|freed"):
        lr.values.sum().backward()


# ----------------------------------------------------------------------------- absent tasks
def test_absent_task_weight_zero_state_untouched_and_excluded():
    model = LinearTrunk()
    x, y = torch.randn(5, 6), torch.randn(5, 3)
    present = torch.tensor([True, False, True])
    for name in BALANCERS.names():
        bal = create_balancer(name, model.task_names)
        before = {k: v.clone() for k, v in bal.state_dict().items() if torch.is_tensor(v)}
        w = _step(model, bal, x, y, present)
        assert w[1] == 0, name
        # learned per-task parameters: the absent task's keeps grad None (optimizer skips it)
        if hasattr(bal, "raw"):
            assert bal.raw[1].grad is None and bal.raw[0].grad is not None
        if hasattr(bal, "logits") and isinstance(bal.logits, nn.ParameterList):
            assert bal.logits[1].grad is None
        after = bal.state_dict()
        for key, value in before.items():
            if value.ndim >= 1 and value.shape[0] == 3:
                assert torch.equal(value[1], after[key][1]), (name, key)
    # a solver sees only the present tasks: MGDA over {t0, t2} equals MGDA on those rows alone
    m1, m2 = LinearTrunk(), LinearTrunk()
    b1 = create_balancer("mgda", m1.task_names)
    _step(m1, b1, x, y, present)
    b2 = create_balancer("mgda", ["t0", "t2"])
    m2.zero_grad()
    out = m2(x)
    lr = _losses({"t0": out["t0"], "t2": out["t2"]}, y[:, [0, 2]])
    b2.backward(lr, BackwardContext(m2))
    assert_close(m1.w.grad, m2.w.grad)


# ----------------------------------------------------------------------------- non-finite
class _NanGradModel(LinearTrunk):
    def decode(self, z):
        out = super().decode(z)
        out["t1"] = out["t1"] * 0 + torch.sqrt((z * 0).sum())  # finite (0) value, NaN gradient
        return out


@pytest.mark.parametrize("name", ["equal", "uncertainty", "famo", "rlw", "pcgrad", "nash_mtl",
                                  "db_mtl"])
def test_nonfinite_raise_names_task_and_skip_leaves_state(name):
    x, y = torch.randn(5, 6), torch.randn(5, 3)
    model = LinearTrunk()
    bal = create_balancer(name, model.task_names)
    # a NaN loss is refused before anything runs
    out = model(x)
    lr = _losses(out, y)
    lr.values = lr.values.clone()
    lr.values = torch.where(torch.arange(3) == 2, torch.tensor(float("nan")), lr.values)
    with pytest.raises(NonFiniteError, match="t2"):
        bal.backward(lr, BackwardContext(model))
    # a NaN gradient (finite loss)
    with pytest.raises(NonFiniteError, match="t1"):
        _step(_NanGradModel(), create_balancer(name, model.task_names), x, y)
    # skip: no gradients, state unchanged (including generators), returns None
    bal = create_balancer(name, model.task_names, nonfinite="skip")
    _step(model, bal, x, y)  # one good step so histories exist
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in bal.state_dict().items()}
    bad = _NanGradModel()
    assert _step(bad, bal, x, y) is None
    assert all(p.grad is None for p in bad.parameters())
    for k, v in bal.state_dict().items():
        if torch.is_tensor(v):
            assert torch.equal(v, state[k]), k
        else:
            assert repr(v) == repr(state[k]), k


def test_trainer_skips_optimizer_step_on_skipped_batch():
    model, tasks = _tiny_mmoe()
    bal = create_balancer("equal", [t.name for t in tasks], nonfinite="skip")
    trainer = Trainer(model, tasks, bal, TrainConfig(progress=False, tensorboard=False))
    batch = _batches(1)[0]
    batch.labels["b"] = batch.labels["b"].clone()
    batch.labels["b"][0] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    _, weights = trainer.train_step(batch)
    assert weights is None and trainer.state.step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ----------------------------------------------------------------------------- trainer level
def _tiny_mmoe(seed: int = 0):
    torch.manual_seed(seed)
    tasks = [TaskSpec(name="a", column="a"), TaskSpec(name="b", column="b")]
    model = create_model("mmoe", InputSpec(cardinalities=[3, 4], num_numeric=2), tasks,
                         num_experts=3, expert_units=[8], tower_units=[4])
    return model, tasks


def _batches(n: int, size: int = 16, partial: bool = False) -> list[Batch]:
    g = torch.Generator().manual_seed(123)
    out = []
    for i in range(n):
        cat = torch.stack([torch.randint(0, 3, (size,), generator=g),
                           torch.randint(0, 4, (size,), generator=g)], 1)
        num = torch.randn(size, 2, generator=g)
        labels = {"a": (num[:, 0] > 0).float(), "b": (cat[:, 0] == 1).float()}
        masks = {"a": None, "b": None}
        if partial and i % 3 == 1:
            masks["b"] = torch.zeros(size, dtype=torch.bool)  # task b absent in this batch
        out.append(Batch({"categorical": cat, "numeric": num}, labels, masks))
    return out


@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_registered_balancer_trains_a_tiny_mmoe(name):
    model, tasks = _tiny_mmoe()
    bal = create_balancer(name, [t.name for t in tasks])
    trainer = Trainer(model, tasks, bal, TrainConfig(progress=False, tensorboard=False))
    for batch in _batches(4, partial=True):
        losses, w = trainer.train_step(batch)
        assert w.shape == (2,) and torch.isfinite(w).all()
    bal.on_epoch_end(0, losses)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert trainer.state.step == 4


RESUME_METHODS = ["uncertainty", "gradnorm", "dwa", "famo", "nash_mtl", "pcgrad"]


def _run_steps(trainer, start: int, stop: int) -> None:
    batches = _batches(10, partial=True)
    for i in range(start, stop):
        losses, _ = trainer.train_step(batches[i % 10])
        if (i + 1) % 20 == 0:
            trainer.balancer.on_epoch_end(i // 20, losses)


def _trainer(name: str, seed: int = 0) -> Trainer:
    model, tasks = _tiny_mmoe(seed)
    bal = create_balancer(name, [t.name for t in tasks])
    return Trainer(model, tasks, bal, TrainConfig(progress=False, tensorboard=False))


def _resume_main(folder: str) -> None:
    """Fresh process: restore each checkpoint, take step 101, save the parameters."""
    torch.set_num_threads(1)
    for name in RESUME_METHODS:
        trainer = _trainer(name, seed=99)  # different init: everything must come from the file
        trainer.load_state_dict(torch.load(Path(folder) / f"{name}.pt", weights_only=False))
        _run_steps(trainer, 100, 101)
        torch.save([p.detach() for p in trainer.model.parameters()],
                   Path(folder) / f"{name}.after.pt")


def test_checkpoint_restore_in_fresh_process_equals_uninterrupted(tmp_path):
    expected = {}
    for name in RESUME_METHODS:
        trainer = _trainer(name)
        _run_steps(trainer, 0, 100)
        torch.save(trainer.state_dict(), tmp_path / f"{name}.pt")
        assert "balancer" in trainer.state_dict()
        _run_steps(trainer, 100, 101)
        expected[name] = [p.detach().clone() for p in trainer.model.parameters()]
    subprocess.run([sys.executable, __file__, str(tmp_path)], check=True, timeout=300)
    for name in RESUME_METHODS:
        got = torch.load(tmp_path / f"{name}.after.pt")
        assert all(torch.equal(a, b) for a, b in zip(got, expected[name], strict=True)), name


def test_balancer_state_not_in_model_state_dict():
    model, tasks = _tiny_mmoe()
    bal = create_balancer("uncertainty", [t.name for t in tasks])
    assert not any(k.startswith("raw") for k in model.state_dict())
    assert set(bal.state_dict()) == {"raw.0", "raw.1"}


def test_unknown_balancer_and_bad_params_are_named():
    with pytest.raises(KeyError, match="pcgrad"):
        create_balancer("pcgard", ["a"])
    with pytest.raises(ValueError, match="normalization"):
        create_balancer("mgda", ["a", "b"], normalization="l1")
    with pytest.raises(ValueError, match="parameters"):
        create_balancer("db_mtl", ["a", "b"], mode="representation")
    with pytest.raises(ValueError, match="nonfinite"):
        create_balancer("equal", ["a"], nonfinite="ignore")


if __name__ == "__main__":
    _resume_main(sys.argv[1])
