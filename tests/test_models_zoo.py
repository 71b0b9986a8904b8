"""Known-answer tests of the model zoo: PLE/CGC wiring, SNR codes, Cross-Stitch, ESMM, AITM,
task chaining, the bias tower, and the Ali-CCP / AliExpress / entire-space datasets."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mtlkit.data.datasets.alibaba import esmm_tasks
from mtlkit.data.encoders import encode_label
from mtlkit.data.prepare import InputSpec
from mtlkit.data.schema import TaskSpec
from mtlkit.errors import DataError
from mtlkit.evaluate import compute_metrics
from mtlkit.losses import TaskLosses
from mtlkit.models import create_model
from mtlkit.models.esmm import product_logit
from mtlkit.models.snr import BETA, GAMMA, ZETA

SPEC = InputSpec("tabular", [5, 4, 3], 2, categorical_names=["a", "b", "position"],
                 numeric_names=["x", "y"])
TWO = [TaskSpec(name="t1", column="c1"), TaskSpec(name="t2", column="c2")]
ESMM_TASKS = esmm_tasks("click", "conversion")


def features(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cards = torch.tensor(SPEC.cardinalities)
    return {"categorical": (torch.rand(n, 3, generator=g) * cards).long(),
            "numeric": torch.randn(n, 2, generator=g)}


def bce(p: np.ndarray, y: np.ndarray) -> float:
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


# ------------------------------------------------------------------------------- PLE / CGC
def test_ple_wiring_two_levels_three_specific_one_shared():
    model = create_model("ple", SPEC, TWO, num_levels=2, specific_experts=3, shared_experts=1)
    lvl1, lvl2 = model.levels
    assert lvl1.gate_sizes == [4, 4] and lvl2.gate_sizes == [4, 4]
    assert lvl1.shared_gate.out_features == 7 and lvl2.shared_gate is None
    specific = [set(m[:3]) for m in lvl1.gate_members]
    assert not specific[0] & specific[1]  # no expert in two tasks' specific sets
    assert lvl1.gate_members[0][3:] == lvl1.gate_members[1][3:] == [6]  # the shared expert
    model.record_gates = True
    out = model(features())
    assert set(out) == {"t1", "t2"}
    shapes = {k: tuple(v.shape) for k, v in model.gate_weights.items()}
    assert shapes == {"gate/level1/t1": (16, 4), "gate/level1/t2": (16, 4),
                      "gate/level1/shared": (16, 7), "gate/level2/t1": (16, 4),
                      "gate/level2/t2": (16, 4)}
    for g in model.gate_weights.values():
        torch.testing.assert_close(g.sum(-1), torch.ones(16))
    # upper levels take the fused outputs of the level below as selector input
    assert lvl2.task_gates.weight.shape[1] == lvl1.output_dim


def test_cgc_task_output_ignores_the_other_tasks_specific_experts():
    model = create_model("cgc", SPEC, TWO, specific_experts=2, shared_experts=1)
    out = model(features())
    w = model.levels[0].experts.layers[0].weight  # [E=5, in, H]: t1 t1 t2 t2 shared
    (g,) = torch.autograd.grad(out["t1"].sum(), w)
    assert g[2:4].abs().sum() == 0  # task 2's experts
    assert g[:2].abs().sum() > 0 and g[4].abs().sum() > 0


def test_ple_unequal_specific_counts_and_more_experts_than_tasks():
    tasks = [*TWO, TaskSpec(name="t3", column="c3")]
    model = create_model("ple", SPEC, tasks, num_levels=2,
                         specific_experts={"t1": 1, "t2": 4, "t3": 2}, shared_experts=2)
    assert model.levels[0].gate_sizes == [3, 6, 4]
    assert model.levels[0].shared_gate.out_features == 9
    model.record_gates = True
    out = model(features())
    assert set(out) == {"t1", "t2", "t3"}
    assert model.gate_weights["gate/level2/t1"].shape == (16, 3)
    with pytest.raises(ValueError, match="misses task"):
        create_model("ple", SPEC, tasks, specific_experts={"t1": 1})
    with pytest.raises(ValueError, match="one level"):
        create_model("cgc", SPEC, TWO, num_levels=2)


# ------------------------------------------------------------------------------------- SNR
def test_hard_concrete_codes_and_l0_penalty_known_values():
    model = create_model("snr_trans", SPEC, TWO, num_subnets=3, subnet_units=[8],
                         l0_weight=0.5)
    codes = model.routes[0].codes
    with torch.no_grad():
        codes.log_alpha.zero_()
    # P(z ≠ 0) = σ(log α − β log(−γ/ζ)) = σ((2/3)·ln 11) per connection, 2 × 3 connections
    per = 1 / (1 + math.exp(-(2 / 3) * math.log(11)))
    torch.testing.assert_close(codes.l0(), torch.tensor(6 * per))
    model(features())
    torch.testing.assert_close(model.extra_losses()["l0"], torch.tensor(0.5 * 6 * per))
    z = codes(4096)  # training: per-row samples, exact zeros and ones occur
    assert z.min() == 0 and z.max() == 1 and ((z > 0) & (z < 1)).any()
    assert abs(float((z > 0).float().mean()) - per) < 0.02
    codes.eval()  # eval: deterministic σ(log α)(ζ − γ) + γ = 0.5
    torch.testing.assert_close(codes(7), torch.full((1, 2, 3), 0.5 * (ZETA - GAMMA) + GAMMA))
    assert pytest.approx(2 / 3) == BETA


def test_snr_aver_is_the_coded_sum_of_subnetworks():
    model = create_model("snr_aver", SPEC, TWO, num_subnets=3, subnet_units=[8]).eval()
    feats = features()
    v = model.bottom(model.input(feats).unsqueeze(0))  # [3, B, 8]
    z = model.routes[0].codes(feats["numeric"].shape[0])[0]  # [2 tasks, 3 subnets]
    expected = torch.einsum("ti,ibh->tbh", z, v)
    torch.testing.assert_close(model.encode(feats), expected)
    with pytest.raises(ValueError, match="same width"):
        create_model("snr_aver", SPEC, TWO, subnet_units=[8, 4])


# ---------------------------------------------------------------------------- Cross-Stitch
def test_cross_stitch_init_near_identity_and_identity_separates_tasks():
    model = create_model("cross_stitch", SPEC, TWO, units=[8, 4], self_weight=0.9)
    torch.testing.assert_close(model.stitches[0].data, torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    with torch.no_grad():
        for a in model.stitches:
            a.copy_(torch.eye(2))
    out = model(features())
    (g,) = torch.autograd.grad(out["t1"].sum(), model.layers[0].weight)
    assert g[1].abs().sum() == 0 and g[0].abs().sum() > 0


# ------------------------------------------------------------------------------------ ESMM
def test_product_logit_golden_values_and_extremes():
    a = torch.tensor([0.0, 2.0, -3.0, 60.0, -60.0, 60.0])
    b = torch.tensor([0.0, -1.0, 0.5, 60.0, -60.0, -60.0])
    got = product_logit(a, b)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    p = sig(2.0) * sig(-1.0)
    torch.testing.assert_close(got[0], torch.tensor(math.log(1 / 3)))  # p = 1/4
    torch.testing.assert_close(got[1], torch.tensor(math.log(p / (1 - p))))
    assert torch.isfinite(got).all()
    assert got[3] > 50 and got[4] < -100  # p → 1 (logit ≈ 59.3) and p → 0 (logit ≈ −120)
    a.requires_grad_(True)
    product_logit(a, b).sum().backward()
    assert torch.isfinite(a.grad).all()


def _esmm_batch():
    click = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0], dtype=torch.float32)
    conv = torch.tensor([1, 0, 0, 0, 0, 0, 1, 0], dtype=torch.float32)
    frame = pd.DataFrame({"click": click.int().numpy(), "conversion": conv.int().numpy()})
    labels, masks = {}, {}
    for t in ESMM_TASKS:
        labels[t.name], masks[t.name] = encode_label(frame, t)
    return labels, masks


def test_esmm_eight_row_loss_equals_hand_computed_bce():
    torch.manual_seed(0)
    model = create_model("esmm", SPEC, ESMM_TASKS, tower_units=[8])
    feats = features(8)
    labels, masks = _esmm_batch()
    assert masks["ctr"] is None and masks["ctcvr"] is None
    assert masks["cvr"].tolist() == [True, True, True, False, False, False, True, False]
    out = model(feats)
    result = TaskLosses(ESMM_TASKS)(out, labels, masks)
    p_ctr = torch.sigmoid(out["ctr"]).double().detach().numpy()
    p_cvr = torch.sigmoid(out["cvr"]).double().detach().numpy()
    click, conv = labels["ctr"].numpy(), labels["ctcvr"].numpy()
    expected = bce(p_ctr, click) + bce(p_ctr * p_cvr, conv)  # over ALL 8 impressions
    assert float(result.values.detach().sum()) == pytest.approx(expected, rel=1e-5)
    assert result.present.tolist() == [True, False, True]  # cvr: no direct loss
    p_ctcvr = torch.sigmoid(out["ctcvr"])
    assert (p_ctcvr <= torch.sigmoid(out["ctr"]) + 1e-7).all()
    torch.testing.assert_close(p_ctcvr.double(), torch.from_numpy(p_ctr * p_cvr))


def test_esmm_cvr_metrics_on_clicked_rows_only():
    labels, masks = _esmm_batch()
    scores = torch.tensor([0.9, 0.2, 0.6, 0.99, 0.01, 0.5, 0.4, 0.7])
    preds = {"ctr": scores, "cvr": scores, "ctcvr": scores}
    metrics = compute_metrics(ESMM_TASKS, preds, labels, masks)
    clicked = masks["cvr"].numpy()
    want = roc_auc_score(labels["cvr"].numpy()[clicked], scores.numpy()[clicked])
    assert metrics["cvr"]["auc"] == pytest.approx(want)  # 4 clicked rows: 2 pos, 2 neg → 0.75
    assert want == pytest.approx(0.75)
    assert metrics["ctcvr"]["auc"] == pytest.approx(
        roc_auc_score(labels["ctcvr"].numpy(), scores.numpy()))


def test_esmm_cvr_tower_learns_through_ctcvr_only():
    torch.manual_seed(0)
    model = create_model("esmm", SPEC, ESMM_TASKS, tower_units=[8])
    labels, masks = _esmm_batch()
    before = model.towers.hidden[0].weight[1].detach().clone()  # the cvr tower's slice
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model(features(8))
    result = TaskLosses(ESMM_TASKS)(out, labels, masks)
    (g,) = torch.autograd.grad(result.values[2], model.towers.hidden[0].weight, retain_graph=True)
    assert g[1].abs().sum() > 0  # ctcvr reaches the cvr tower
    result.values.sum().backward()
    opt.step()
    assert not torch.equal(model.towers.hidden[0].weight[1], before)


def test_conversion_without_click_is_rejected():
    frame = pd.DataFrame({"click": [1, 0, 0], "conversion": [1, 1, 0]})
    frame.attrs["source"] = "impressions.csv"
    with pytest.raises(DataError, match=r"impressions.csv.*'cvr'.*row 1.*'click' = 0"):
        encode_label(frame, ESMM_TASKS[1])


def test_esmm_roles_are_checked():
    with pytest.raises(ValueError, match="ctr_task='click'"):
        create_model("esmm", SPEC, ESMM_TASKS, ctr_task="click")
    with pytest.raises(ValueError, match="no tower"):
        create_model("esmm", SPEC, [*ESMM_TASKS, TaskSpec(name="like", column="l")])


# ------------------------------------------------------------------------------------ AITM
def test_aitm_key_gets_gradient_and_calibrator_is_batch_size_invariant():
    torch.manual_seed(0)
    model = create_model("aitm", SPEC, ESMM_TASKS, cvr_task="cvr", tower_units=[8])
    feats = features(64)
    g = torch.Generator().manual_seed(3)
    click = (torch.rand(64, generator=g) < 0.5).float()
    labels = {"ctr": click, "ctcvr": click * (torch.rand(64, generator=g) < 0.5).float(),
              "cvr": click}
    masks = {"ctr": None, "ctcvr": None, "cvr": click.bool()}
    losses = TaskLosses(ESMM_TASKS)

    def ratio(rep: int) -> float:
        f = {k: v.repeat(rep, *[1] * (v.dim() - 1)) for k, v in feats.items()}
        y = {k: v.repeat(rep) for k, v in labels.items()}
        m = {k: None if v is None else v.repeat(rep) for k, v in masks.items()}
        out = model(f)
        bce_sum = losses(out, y, m).values.sum()
        return float((model.extra_losses()["aitm_calibrator"] / bce_sum).detach())

    assert ratio(1) == pytest.approx(ratio(64), rel=1e-5)
    out = model(feats)
    p = torch.sigmoid(torch.stack([out["ctr"], out["ctcvr"]])).detach()
    want = 0.6 * torch.relu(p[1] - p[0]).mean()
    torch.testing.assert_close(model.extra_losses()["aitm_calibrator"].detach(), want)
    total = losses(out, labels, masks).values.sum() + model.extra_losses()["aitm_calibrator"]
    total.backward()
    assert model.ait[0].key.weight.grad.abs().sum() > 0
    # the derived cvr output is pCTCVR / pCTR
    torch.testing.assert_close(torch.sigmoid(out["cvr"]),
                               (p[1] / p[0]).clamp(max=1 - 1e-6), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- Task chain
@pytest.mark.parametrize("stop", [True, False])
def test_chain_stop_gradient(stop):
    model = create_model("task_chain", SPEC, TWO, chain={"t2": "t1"}, stop_gradient=stop,
                         bottom_units=[8], tower_units=[4])
    assert model.levels == [["t1"], ["t2"]]
    out = model(features())
    t1_tower = list(model.towers[0].parameters())
    grads = torch.autograd.grad(out["t2"].sum(), t1_tower, allow_unused=True)
    total = sum(0.0 if g is None else float(g.abs().sum()) for g in grads)
    assert (total == 0.0) if stop else (total > 0.0)


def test_chain_feeds_probability_or_logit_and_rejects_cycles():
    for kind in ("prob", "logit"):
        model = create_model("task_chain", SPEC, TWO, chain={"t2": ["t1"]}, chain_input=kind)
        out = model(features())
        fed = model._fed("t1", out["t1"])
        want = torch.sigmoid(out["t1"]) if kind == "prob" else out["t1"]
        torch.testing.assert_close(fed, want.detach())
    with pytest.raises(ValueError, match="cycle: t1 → t2 → t1"):
        create_model("task_chain", SPEC, TWO, chain={"t2": "t1", "t1": "t2"})
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        create_model("task_chain", SPEC, TWO, chain={"t2": "nope"})


# ----------------------------------------------------------------------------- Bias tower
def test_bias_tower_training_only_and_excluded_from_base_input():
    torch.manual_seed(0)
    model = create_model("bias_tower", SPEC, TWO, bias_features=["position"], bias_tasks=["t1"],
                         base="shared_bottom", base_params={"bottom_units": [8]},
                         embedding_dim=4, feature_dropout=0.0)
    # base input: a, b (2 × 4) + x, y; bias input: position only
    assert model.base.input.output_dim == 2 * 4 + 2 and model.bias_input.output_dim == 4
    feats = features()
    bias = model.bias_logits(feats)[:, 0]
    base_out = model.base(feats)
    out = model(feats)
    torch.testing.assert_close(out["t1"], base_out["t1"] + bias)
    torch.testing.assert_close(out["t2"], base_out["t2"])
    model.eval()  # serving: position-free, and the position value does not matter
    other = {**feats, "categorical": feats["categorical"].clone()}
    other["categorical"][:, 2] = (other["categorical"][:, 2] + 1) % 3
    torch.testing.assert_close(model(feats)["t1"], model(other)["t1"])
    torch.testing.assert_close(model(feats)["t1"], base_out["t1"])


def test_bias_feature_dropout_rate():
    model = create_model("bias_tower", SPEC, TWO, bias_features=["position", "x"])
    assert model.feature_dropout == 0.1
    n = 20000
    selected = {"categorical": torch.ones(n, 1, dtype=torch.long), "numeric": torch.ones(n, 1)}
    dropped = model._drop(selected)
    for x in dropped.values():
        assert abs(float((x == 0).float().mean()) - 0.1) < 0.01
    with pytest.raises(ValueError, match="not model inputs"):
        create_model("bias_tower", SPEC, TWO, bias_features=["rank"])


def test_bias_tower_forwards_gate_recording():
    model = create_model("bias_tower", SPEC, TWO, bias_features=["position"],
                         base_params={"num_experts": 3})
    model.record_gates = True
    model(features())
    assert set(model.gate_weights) == {"gate/t1", "gate/t2"}


# ------------------------------------------------------------------------------- Datasets
def test_entire_space_generator_truth_and_selection_bias():
    from mtlkit.data.datasets.entire_space import generate_entire_space

    df = generate_entire_space(200_000, seed=1)
    assert ((df.conversion == 1) <= (df.click == 1)).all()  # conversions only after clicks
    assert (df.conversion == df.click * df.would_convert).all()
    assert df.click.mean() == pytest.approx(df.true_ctr.mean(), abs=0.003)
    assert df.would_convert.mean() == pytest.approx(df.true_cvr.mean(), abs=0.004)
    clicked = df[df.click == 1]
    # selection bias: the clicked rows' conversion propensity differs from the population's
    assert abs(clicked.true_cvr.mean() - df.true_cvr.mean()) > 0.03


@pytest.mark.parametrize("dataset,model,params", [
    ("ali-ccp", "esmm", {}), ("ali-ccp", "aitm", {"cvr_task": "cvr"}),
    ("ali-ccp", "mmoe", {"num_experts": 2}),
    ("aliexpress", "esmm", {}), ("aliexpress", "aitm", {"cvr_task": "cvr"}),
    ("aliexpress", "mmoe", {"num_experts": 2}),
])
def test_alibaba_samples_load_and_train(data_dir, dataset, model, params):
    from mtlkit.balancing import create_balancer
    from mtlkit.config import TrainConfig
    from mtlkit.data import load_dataset
    from mtlkit.data.prepare import prepare
    from mtlkit.train.trainer import Trainer

    if not (data_dir / f"{dataset}-sample").exists():
        pytest.skip(f"{dataset}-sample not in {data_dir}")
    raw = load_dataset(dataset, data_dir=str(data_dir))
    assert raw.schema.task_names == ["ctr", "cvr", "ctcvr"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = prepare(raw, check=False)
    tasks = raw.schema.tasks
    m = create_model(model, data.input_spec, tasks, **params)
    cfg = TrainConfig(epochs=1, batch_size=32, progress=False, tensorboard=False,
                      monitor={"task": "ctr"})
    trainer = Trainer(m, tasks, create_balancer("equal", [t.name for t in tasks]), cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = trainer.fit(data.stores["train"], data.stores["valid"])
    assert state.step == data.stores["train"].num_batches(32)
    assert np.isfinite(state.history[-1]["train/ctr/loss"])
