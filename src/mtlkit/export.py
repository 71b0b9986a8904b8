"""Export a trained run for serving: ONNX or TorchScript, plus the encoders as JSON.

The exported graph takes the ENCODED inputs of a tabular model and returns one named output per
task, already turned into predictions (and re-calibrated when the run used negative sampling):

* inputs ``categorical`` (int64 ``[batch, F]``: per-column ids) and ``numeric`` (float32
  ``[batch, M]``: standardised values), each present only when the model has such columns; the
  batch axis is dynamic;
* outputs named by task: binary → probability ``[batch]``, multiclass → class probabilities
  ``[batch, C]``, regression → value ``[batch]``.

``vocabulary.json`` tells a server how to build those inputs from raw values: per categorical
column its vocabulary (id = position + 1; anything else, including a value unseen in training,
is the OOV id 0; a missing value is the token ``"<missing>"``, which has its own id only if it
was seen in training), and per numeric column ``(transform(x) − mean) / std`` with ``transform``
``none`` or ``log1p`` and a missing value replaced by the mean (i.e. 0 after scaling).

The embedding lookup uses a custom autograd function only while gradients are enabled, so the
export runs under ``torch.no_grad()`` and the plain embedding op is traced.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from mtlkit.data.schema import TaskSpec
from mtlkit.evaluate.metrics import to_prediction
from mtlkit.losses.calibration import recalibrate
from mtlkit.models.base import MultiTaskModel

ExportFormat = Literal["onnx", "torchscript"]
FORMATS: dict[str, str] = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
VOCABULARY_FILE = "vocabulary.json"
#: ONNX opset used by the exporter
OPSET = 17


class ServingModel(nn.Module):
    """``(categorical, numeric) → per-task predictions`` in task order (the exported graph)."""

    def __init__(self, model: MultiTaskModel, tasks: list[TaskSpec], input_names: list[str],
                 rates: dict[str, float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.tasks = list(tasks)
        self.input_names = list(input_names)
        self.rates = dict(rates or {})

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(dict(zip(self.input_names, inputs, strict=True)))
        preds = []
        for t in self.tasks:
            p = to_prediction(t, out[t.name])
            if t.name in self.rates:
                p = recalibrate(p, self.rates[t.name])
            preds.append(p)
        return tuple(preds)


@dataclass
class Exported:
    """What ``export`` wrote."""

    model: Path
    vocabulary: Path
    inputs: list[str]
    outputs: list[str]


def serving_model(predictor) -> tuple[ServingModel, list[str], dict[str, torch.Tensor]]:
    """The eval-mode serving wrapper of a loaded run, its input names and example inputs."""
    spec = predictor.bundle["input_spec"]
    if spec.get("kind", "tabular") != "tabular":
        raise ValueError(f"export supports tabular models; this run reads {spec['kind']!r} "
                         "inputs")
    names, example = [], {}
    cards = list(spec["cardinalities"])
    if cards:
        names.append("categorical")
        example["categorical"] = torch.zeros(2, len(cards), dtype=torch.long)
    if spec["num_numeric"]:
        names.append("numeric")
        example["numeric"] = torch.zeros(2, spec["num_numeric"], dtype=torch.float32)
    rates = predictor.bundle.get("calibration", {}).get("negative_sampling") or {}
    wrapper = ServingModel(predictor.model, predictor.tasks, names, rates).eval()
    return wrapper, names, example


def vocabulary(predictor) -> dict:
    """The JSON document a server needs to encode raw rows (see the module docstring)."""
    enc = predictor.encoder
    spec = predictor.bundle["input_spec"]
    return {
        "format": "mtlkit-vocabulary",
        "version": predictor.bundle.get("version"),
        "inputs": {
            "categorical": {"dtype": "int64", "shape": ["batch", len(enc.categorical)],
                            "columns": [e.name for e in enc.categorical],
                            "cardinalities": list(spec["cardinalities"])},
            "numeric": {"dtype": "float32", "shape": ["batch", len(enc.numeric)],
                        "columns": [e.name for e in enc.numeric]},
        },
        "outputs": {t.name: {"type": t.type, "shape": ["batch"] if t.output_dim == 1
                             else ["batch", t.output_dim],
                             "meaning": {"binary": "probability", "regression": "value",
                                         "multiclass": "class probabilities"}[t.type]}
                    for t in predictor.tasks},
        "encoding": {
            "categorical": "id = vocabulary.index(str(value)) + 1; unseen → oov_id; missing → "
                           "missing_token (its id if in the vocabulary, else oov_id)",
            "numeric": "(transform(x) - mean) / std, transform in {none, log1p}; missing → mean",
        },
        "calibration": predictor.bundle.get("calibration", {}),
        "encoder": enc.to_dict(),  # oov_id, missing_token, per-column vocabulary and scalers
    }


def _register_onnx_symbolics() -> None:
    """ONNX has no ``expm1``/``logaddexp`` (used by AITM and ESMM in log space): spell them
    with Exp/Log/Max/Abs. ``exp(x) − 1`` loses relative precision only near 0, where the
    models clamp away from it; ``logaddexp(a, b) = max + log(1 + exp(−|a − b|))`` is stable."""
    from torch.onnx import register_custom_op_symbolic

    def one(g, like):
        return g.op("CastLike", g.op("Constant", value_t=torch.tensor(1.0)), like)

    def expm1(g, x):
        return g.op("Sub", g.op("Exp", x), one(g, x))

    def logaddexp(g, a, b):
        spread = g.op("Exp", g.op("Neg", g.op("Abs", g.op("Sub", a, b))))
        return g.op("Add", g.op("Max", a, b), g.op("Log", g.op("Add", one(g, a), spread)))

    register_custom_op_symbolic("aten::expm1", expm1, OPSET)
    register_custom_op_symbolic("aten::logaddexp", logaddexp, OPSET)


def write_model(wrapper: nn.Module, example: list[torch.Tensor], input_names: list[str],
                output_names: list[str], path: str | Path, format: ExportFormat) -> Path:
    """Trace ``wrapper`` on ``example`` (batch axis dynamic) and save it as ONNX/TorchScript."""
    path = Path(path)
    args = tuple(example)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer/deprecation chatter, not user-actionable
        if format == "onnx":
            _register_onnx_symbolics()
            torch.onnx.export(
                wrapper, args, str(path), input_names=input_names, output_names=output_names,
                dynamic_axes={n: {0: "batch"} for n in [*input_names, *output_names]},
                opset_version=OPSET, dynamo=False,
            )
        elif format == "torchscript":
            torch.jit.trace(wrapper, args, check_trace=False).save(str(path))
        else:
            raise ValueError(f"export format must be one of {list(FORMATS)}, got {format!r}")
    return path


def export(run_dir: str | Path, format: ExportFormat = "onnx",
           out: str | Path | None = None) -> Exported:
    """Write ``RUN_DIR/export`` (or ``out``): the model file and ``vocabulary.json``."""
    from mtlkit.api import load

    if format not in FORMATS:
        raise ValueError(f"export format must be one of {list(FORMATS)}, got {format!r}")
    predictor = load(run_dir)
    out_dir = Path(out) if out is not None else Path(run_dir) / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapper, names, example = serving_model(predictor)
    outputs = [t.name for t in predictor.tasks]
    path = out_dir / FORMATS[format]
    write_model(wrapper, [example[n] for n in names], names, outputs, path, format)
    vocab_path = out_dir / VOCABULARY_FILE
    vocab_path.write_text(json.dumps(vocabulary(predictor), indent=1))
    return Exported(path, vocab_path, names, outputs)


__all__ = ["FORMATS", "Exported", "ServingModel", "export", "serving_model", "vocabulary",
           "write_model"]
