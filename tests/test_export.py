"""Export for serving: ONNX (checked with onnxruntime) and TorchScript equal eager outputs for
every registered model; ``mtlkit export`` writes a vocabulary that maps raw values to inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tests.conftest import tiny_config, tiny_table
from tests.test_model_contract import SPEC, TEST_CONFIGS, TWO

from mtlkit import api
from mtlkit.data.encoders import MISSING_TOKEN, OOV_ID
from mtlkit.data.prepare import InputSpec
from mtlkit.data.schema import TaskSpec
from mtlkit.export import ServingModel, serving_model, write_model
from mtlkit.models import INPUTS, MODELS, create_model

#: what cannot be exported, with the reason (one table; every registered MODEL exports)
NOT_EXPORTABLE: dict[str, str] = {
    "input:image": "pre-encoded image tensors are not table rows; export covers tabular inputs "
                   "(categorical ids + numeric values) described by vocabulary.json",
    "input:text": "token ids come from the dataset's own tokenizer, which is not exported",
}
INPUT_NAMES = ["categorical", "numeric"]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cat = (torch.rand(n, len(SPEC.cardinalities), generator=g)
           * torch.tensor(SPEC.cardinalities)).long()
    return cat, torch.randn(n, SPEC.num_numeric, generator=g)


def _run(path, fmt: str, cat: torch.Tensor, num: torch.Tensor) -> list[np.ndarray]:
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"categorical": cat.numpy(), "numeric": num.numpy()})
    with torch.no_grad():
        return [t.numpy() for t in torch.jit.load(str(path))(cat, num)]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("name", MODELS.names())
def test_exported_outputs_equal_eager(name, fmt, tmp_path):
    tasks, params = TEST_CONFIGS.get(name, (TWO, {}))
    model = create_model(name, SPEC, tasks, **params)
    with torch.no_grad():  # move off the initialisation so the check is not trivial
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    wrapper = ServingModel(model, tasks, INPUT_NAMES).eval()
    example = list(_inputs(2, 0))  # traced on 2 rows; run on 37: the batch axis is dynamic
    outputs = [t.name for t in tasks]
    path = write_model(wrapper, example, INPUT_NAMES, outputs, tmp_path / f"m.{fmt}", fmt)
    cat, num = _inputs(37, 1)
    with torch.no_grad():
        eager = wrapper(cat, num)
    got = _run(path, fmt, cat, num)
    assert len(got) == len(tasks)
    for task, a, b in zip(tasks, got, eager, strict=True):
        assert a.shape == tuple(b.shape) == (37,), task.name
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=0, err_msg=task.name)
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == outputs
        assert [i.name for i in session.get_inputs()] == INPUT_NAMES


def test_every_input_kind_is_exportable_or_listed():
    listed = {k.removeprefix("input:") for k in NOT_EXPORTABLE}
    assert set(INPUTS.names()) - listed == {"tabular"}


def test_multiclass_and_regression_outputs(tmp_path):
    tasks = [TaskSpec(name="kind", type="multiclass", num_classes=3, column="k"),
             TaskSpec(name="value", type="regression", column="v")]
    wrapper = ServingModel(create_model("mmoe", SPEC, tasks, num_experts=2), tasks,
                           INPUT_NAMES).eval()
    path = write_model(wrapper, list(_inputs(2, 0)), INPUT_NAMES, ["kind", "value"],
                       tmp_path / "m.onnx", "onnx")
    cat, num = _inputs(9, 3)
    kind, value = _run(path, "onnx", cat, num)
    assert kind.shape == (9, 3) and value.shape == (9,)
    np.testing.assert_allclose(kind.sum(1), 1.0, atol=1e-6)
    with torch.no_grad():
        ref = wrapper(cat, num)
    np.testing.assert_allclose(kind, ref[0].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(value, ref[1].numpy(), atol=1e-5, rtol=0)


def test_non_tabular_run_is_refused():
    fake = type("Fake", (), {})()
    fake.bundle = {"input_spec": InputSpec("image").__dict__}
    with pytest.raises(ValueError, match="tabular"):
        serving_model(fake)


def _encode_with_json(vocab: dict, frame) -> tuple[np.ndarray, np.ndarray]:
    """What a server does with vocabulary.json alone (independent of mtlkit's encoders)."""
    enc = vocab["encoder"]
    oov, missing = enc["oov_id"], enc["missing_token"]
    cat = np.empty((len(frame), len(enc["categorical"])), dtype=np.int64)
    for j, col in enumerate(enc["categorical"]):
        ids = {v: i + 1 for i, v in enumerate(col["vocabulary"])}
        cat[:, j] = [ids.get(missing if v is None or v != v else str(v), oov)
                     for v in frame[col["name"]]]
    num = np.empty((len(frame), len(enc["numeric"])), dtype=np.float32)
    for j, col in enumerate(enc["numeric"]):
        x = frame[col["name"]].astype(float).to_numpy()
        x = np.log1p(x) if col["transform"] == "log1p" else x
        num[:, j] = np.where(np.isnan(x), 0.0, (x - col["mean"]) / col["std"])
    return cat, num


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cli_export_round_trip_matches_predict(tmp_path, fmt):
    csv = tmp_path / "train.csv"
    tiny_table(300).to_csv(csv, index=False)
    run = tmp_path / "run"
    api.train(tiny_config(str(csv), epochs=1), out=run)
    done = subprocess.run(
        [sys.executable, "-m", "mtlkit", "export", str(run), "--format", fmt, "--out",
         str(tmp_path / "exp")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    vocab = json.loads((tmp_path / "exp" / "vocabulary.json").read_text())
    assert vocab["encoder"]["oov_id"] == OOV_ID == 0
    assert vocab["encoder"]["missing_token"] == MISSING_TOKEN
    assert vocab["inputs"]["categorical"]["columns"] == ["color", "shape"]
    assert list(vocab["outputs"]) == ["click", "like"]

    frame = tiny_table(40, seed=5).drop(columns=["click", "like"])
    frame["color"] = frame["color"].astype(object)
    frame.loc[0, "color"] = "ultraviolet"  # unseen in training
    frame.loc[1, "color"] = None  # missing, never seen in training
    cat, num = _encode_with_json(vocab, frame)
    assert cat[0, 0] == OOV_ID and cat[1, 0] == OOV_ID
    assert (cat[2:, 0] != OOV_ID).all()
    predictor = api.load(run)
    ref = predictor.encoder.transform(frame)  # the JSON encodes exactly as mtlkit does
    np.testing.assert_array_equal(cat, ref["categorical"].numpy())
    np.testing.assert_allclose(num, ref["numeric"].numpy(), atol=1e-6)

    model_file = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}[fmt]
    got = _run(tmp_path / "exp" / model_file, fmt, torch.from_numpy(cat), torch.from_numpy(num))
    expected = predictor.predict(frame)
    for task, values in zip(["click", "like"], got, strict=True):
        np.testing.assert_allclose(values, expected[task].to_numpy(), atol=1e-5, rtol=0)
