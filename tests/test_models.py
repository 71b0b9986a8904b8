"""Foundation models against straightforward reference implementations."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mtlkit.data import InputSpec, TaskSpec
from mtlkit.models import create_model
from mtlkit.models.layers import BatchedTowers, FeatureEmbedding, GatedExperts

SPEC = InputSpec("tabular", [4, 6, 3], 2)
TASKS = [TaskSpec(name="a", column="a"), TaskSpec(name="b", column="b")]


def _features(n=16):
    g = torch.Generator().manual_seed(1)
    cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in SPEC.cardinalities], 1)
    return {"categorical": cat, "numeric": torch.randn(n, 2, generator=g)}


def test_one_embedding_table_with_offsets_and_exact_gradient():
    emb = FeatureEmbedding([4, 6, 3], dim=2)
    assert emb.table.weight.shape == (13, 2)
    codes = torch.tensor([[0, 0, 0], [3, 5, 2]])
    out = emb(codes)
    w = emb.table.weight
    assert torch.equal(out[1], torch.cat([w[3], w[4 + 5], w[10 + 2]]))
    grad = torch.randn_like(out)
    out.backward(grad)
    custom = emb.table.weight.grad.clone()
    emb.table.weight.grad = None
    F.embedding(codes + emb.offsets, emb.table.weight).flatten(1).backward(grad)
    torch.testing.assert_close(custom, emb.table.weight.grad, rtol=0, atol=1e-6)


def test_gated_experts_match_a_per_expert_loop():
    torch.manual_seed(0)
    layer = GatedExperts(in_dim=5, num_experts=3, units=[4, 2], num_gates=2)
    x = torch.randn(7, 5)
    experts, gate_logits = layer(x)
    w, b = layer.weight, layer.bias
    for e in range(3):
        h = torch.relu(x @ w[:, e * 4:(e + 1) * 4] + b[e * 4:(e + 1) * 4])
        deep = layer.deep[0]
        h = torch.relu(h @ deep.weight[e] + deep.bias[e, 0])
        torch.testing.assert_close(experts[:, e], h)
    for g in range(2):
        lo = 12 + g * 3
        torch.testing.assert_close(gate_logits[:, g], x @ w[:, lo:lo + 3] + b[lo:lo + 3])


def test_experts_differ_at_initialisation():
    layer = GatedExperts(in_dim=5, num_experts=4, units=[3], num_gates=1)
    blocks = layer.weight[:, :12].view(5, 4, 3)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(blocks[:, i], blocks[:, j])


def test_mmoe_forward_equals_reference_formula():
    torch.manual_seed(0)
    model = create_model("mmoe", SPEC, TASKS, num_experts=3, expert_units=[4], tower_units=[2])
    f = _features()
    out = model(f)
    x = model.input(f)
    experts, logits = model.experts(x)
    for t, name in enumerate(["a", "b"]):
        gate = torch.softmax(logits[:, t], -1)
        mixed = sum(gate[:, e:e + 1] * experts[:, e] for e in range(3))
        tower = model.towers
        h = torch.relu(mixed @ tower.hidden[0].weight[t] + tower.hidden[0].bias[t, 0])
        y = (h @ tower.out.weight[t] + tower.out.bias[t, 0]).squeeze(-1)
        torch.testing.assert_close(out[name], y)


def test_omoe_uses_one_gate_and_single_task_shares_nothing():
    omoe = create_model("omoe", SPEC, TASKS, num_experts=3)
    assert omoe.experts.G == 1
    single = create_model("single_task", SPEC, TASKS)
    assert list(single.shared_parameters()) == []
    out = single(_features())
    out["a"].sum().backward()
    assert all(p.grad is None for p in single.inputs["b"].parameters())


def test_batched_towers_handle_mixed_output_sizes():
    towers = BatchedTowers(["bin", "mc"], in_dim=3, units=[4], output_dims=[1, 5])
    out = towers(torch.randn(2, 6, 3))
    assert out["bin"].shape == (6,) and out["mc"].shape == (6, 5)


def test_every_parameter_gets_gradient():
    for name in ["single_task", "shared_bottom", "omoe", "mmoe"]:
        model = create_model(name, SPEC, TASKS)
        out = model(_features(64))
        sum(o.sum() for o in out.values()).backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname}"


@pytest.mark.parametrize("gates", [1, 2, 5])
def test_mix_equals_the_broadcast_formula_and_passes_gradcheck(gates):
    from mtlkit.models.layers import _Mixture, mix

    torch.manual_seed(0)
    logits = torch.randn(7, gates, 4, dtype=torch.float64, requires_grad=True)
    experts = torch.randn(7, 4, 3, dtype=torch.float64, requires_grad=True)
    mixed, weights = mix(logits, experts)
    reference = (torch.softmax(logits, -1).unsqueeze(-1) * experts.unsqueeze(1)).sum(2)
    torch.testing.assert_close(mixed, reference.transpose(0, 1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(7, gates, dtype=torch.float64))
    assert torch.autograd.gradcheck(_Mixture.apply, (torch.softmax(logits, -1), experts))
    assert torch.autograd.gradcheck(lambda a, b: mix(a, b)[0], (logits, experts))
