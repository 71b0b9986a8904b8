"""The Python API. The CLI is a thin layer over these functions.

>>> from mtlkit import api
>>> result = api.train("configs/census-income/mmoe.yaml", out="runs/mmoe")   # doctest: +SKIP
>>> model = api.load("runs/mmoe")                                             # doctest: +SKIP
>>> model.predict(frame)                                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mtlkit import __version__
from mtlkit.balancing import BALANCERS, create_balancer
from mtlkit.config import RunConfig, build_config, load_config
from mtlkit.data.auxiliary import apply_data_rules
from mtlkit.data.checks import CheckReport, check_predictions, run_checks
from mtlkit.data.datasets import DATASETS, RawSplits, load_dataset
from mtlkit.data.encoders import TabularEncoder
from mtlkit.data.prepare import InputSpec, PreparedData, encode_frame, prepare
from mtlkit.data.readers import ReadOptions, iter_table, read_table, write_table
from mtlkit.data.sampling import negative_downsample
from mtlkit.data.schema import TaskSpec
from mtlkit.errors import ConfigError
from mtlkit.evaluate import compute_metrics, evaluate_store, predict_store
from mtlkit.losses.calibration import NegativeSamplingCalibration, chain
from mtlkit.models import MODELS, create_model
from mtlkit.models.base import MultiTaskModel
from mtlkit.train import checkpoint as ckpt
from mtlkit.train import distributed
from mtlkit.train.trainer import CHECKPOINT, Trainer

MODEL_FILE = "model.pt"
RESULTS_FILE = "results.json"


def _as_config(config: RunConfig | dict | str | Path, overrides: list[str] | None) -> RunConfig:
    if isinstance(config, RunConfig):
        cfg = build_config(config.model_dump(), overrides) if overrides else config
    elif isinstance(config, dict):
        cfg = build_config(config, overrides)
    else:
        cfg = load_config(config, overrides)
    validate_components(cfg)
    return cfg


def validate_components(cfg: RunConfig) -> None:
    """Check the dataset, model and balancer names and their parameter names before any data
    is read, so a typo fails in a second with a suggestion instead of after loading."""
    DATASETS.check_params(cfg.data.dataset, cfg.data.params, provided=["data_dir"])
    MODELS.check_params(cfg.model.name, cfg.model.params, provided=["input", "embedding_dim"],
                        internal=["make_input", "tasks"])
    BALANCERS.check_params(cfg.balancer.name, cfg.balancer.params, internal=["task_names"])


def load_data(config: RunConfig, check: bool = True) -> PreparedData:
    """Load the configured dataset, apply task overrides and data rules, fit encoders on train,
    encode, then down-sample the train split's negatives if ``data.negative_sampling`` says so."""
    if config.data.streaming is not None:  # train file(s) streamed, never held in memory
        from mtlkit.data.streaming import prepare_streaming

        return prepare_streaming(config.data)
    data = prepare(load_raw(config), check=check and config.data.check_leakage)
    ns = config.data.negative_sampling
    if ns is not None:
        data.stores["train"], data.negative_sampling = negative_downsample(
            data.stores["train"], ns.task, ns.rate, ns.seed)
    return data


def load_raw(config: RunConfig) -> RawSplits:
    """The configured dataset's raw splits with ``data.tasks`` overrides and the rules
    ``data.drop_features`` / ``derive`` / ``add_tasks`` applied."""
    raw = load_dataset(config.data.dataset, data_dir=config.data.data_dir, **config.data.params)
    if config.data.tasks:
        names = raw.schema.task_names
        unknown = sorted(set(config.data.tasks) - set(names))
        if unknown:
            raise ConfigError(f"data.tasks names unknown task(s) {unknown}; tasks are {names}")
        tasks = [
            TaskSpec.model_validate({**t.model_dump(), **config.data.tasks.get(t.name, {})})
            for t in raw.schema.tasks
        ]
        raw.schema = raw.schema.model_copy(update={"tasks": tasks})
    d = config.data
    if d.drop_features or d.derive or d.add_tasks:
        raw = apply_data_rules(raw, d.drop_features, d.derive, d.add_tasks)
    return raw


def check(config: RunConfig | dict | str | Path, overrides: list[str] | None = None) -> CheckReport:
    """The data checks ``train`` runs first, as a report (``mtlkit check``)."""
    cfg = _as_config(config, overrides)
    return run_checks(load_raw(cfg), leakage=cfg.data.check_leakage)


@dataclass
class RunResult:
    run_dir: Path | None
    model: MultiTaskModel
    data: PreparedData
    results: dict[str, Any]


def build_model(config: RunConfig, spec: InputSpec, tasks: list[TaskSpec]) -> MultiTaskModel:
    return create_model(config.model.name, spec, tasks, **dict(config.model.params))


def train(
    config: RunConfig | dict | str | Path, out: str | Path | None = None,
    overrides: list[str] | None = None, resume: bool = False, data: PreparedData | None = None,
    calibrate: Callable | None = None,
) -> RunResult:
    """Check the data, train, restore the best epoch, evaluate on valid and test (predictions
    passed through the negative-sampling calibration, then ``calibrate``), write the run."""
    cfg = _as_config(config, overrides)
    run_dir = Path(out) if out is not None else None
    ctx = distributed.setup()  # None unless launched by torchrun (WORLD_SIZE > 1)
    writer = run_dir if ctx is None or ctx.is_main else None  # only rank 0 writes
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if resume:
        if run_dir is None or not (run_dir / CHECKPOINT).exists():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {run_dir}")
        saved = ckpt.load(run_dir / CHECKPOINT)
        cfg = RunConfig.model_validate(saved["bundle"]["config"])
    ckpt.seed_everything(cfg.train.seed)
    data = data or load_data(cfg, check=False)
    report = run_checks(data.raw, data.encoder, leakage=cfg.data.check_leakage)
    report.raise_errors()
    report.emit_warnings()
    rates = ({data.negative_sampling["task"]: data.negative_sampling["rate"]}
             if data.negative_sampling else {})
    calibrate = chain(NegativeSamplingCalibration(rates) if rates else None, calibrate)
    tasks = data.raw.schema.tasks
    model = build_model(cfg, data.input_spec, tasks)
    balancer = create_balancer(
        cfg.balancer.name, [t.name for t in tasks],
        **({"weights": {t.name: t.weight for t in tasks}} if cfg.balancer.name == "fixed" else {}),
        **cfg.balancer.params,
    )
    bundle = {
        "format": "mtlkit-model", "version": __version__, "config": cfg.model_dump(mode="json"),
        "model": {"name": cfg.model.name, "params": cfg.model.params},
        "input_spec": data.input_spec.__dict__, "encoder": data.encoder.to_dict(),
        "read_options": data.raw.read_options.model_dump(),
        "pre_encoded": data.raw.inputs is not None,
        #: task → kept fraction of negatives; predictions are always re-calibrated with it
        "calibration": {"negative_sampling": rates},
    }
    if writer is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    trainer = Trainer(model, tasks, balancer, cfg.train, writer, bundle, calibrate)
    if ctx is not None:  # data-parallel: shard the data, all-reduce losses and gradients
        ctx.wrap(trainer, data)
    if resume:
        trainer.load_state_dict(saved)
    diagnostics = None
    if cfg.diagnostics.enabled and writer is not None:
        from mtlkit.diagnose import Diagnostics

        diagnostics = Diagnostics(cfg.diagnostics, run_dir, cfg.train.tensorboard)
        trainer.step_callbacks.append(diagnostics)
    started = time.perf_counter()
    try:
        state = trainer.fit(data.stores["train"], data.stores["valid"])
    finally:
        if diagnostics is not None:
            diagnostics.close()
    valid = data.stores["valid"]
    valid_preds = predict_store(model, valid, tasks, cfg.train.eval_batch_size, calibrate)
    results: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "valid": compute_metrics(tasks, valid_preds, valid.labels, valid.masks),
    }
    if "test" in data.stores:
        results["test"] = evaluate_store(model, data.stores["test"], tasks,
                                         cfg.train.eval_batch_size, calibrate)
    results["roles"] = {t.name: t.role for t in tasks}
    if data.negative_sampling:
        results["negative_sampling"] = data.negative_sampling
    findings = check_predictions(tasks, valid_preds, valid.masks, results["valid"])
    for finding in findings:
        warnings.warn(f"[{finding.check}] {finding.message}", stacklevel=2)
    results["warnings"] = [f.message for f in report.warnings + findings]
    if diagnostics is not None:  # gate collapse / unused experts seen during training
        results["warnings"] += [f"step {e['step']}: {e['message']}" for e in diagnostics.warnings]
    results["monitor"] = {"task": trainer.monitor[0], "metric": trainer.monitor[1]}
    results["train_seconds"] = round(state.elapsed, 3)
    results["wall_seconds"] = round(time.perf_counter() - started, 3)
    results["steps"] = state.step
    results["parameters"] = model.describe()
    if writer is not None:
        ckpt.atomic_save({**bundle, "state_dict": model.state_dict()}, run_dir / MODEL_FILE)
        ckpt.atomic_write_text(json.dumps(_jsonable(results), indent=2), run_dir / RESULTS_FILE)
    return RunResult(run_dir, model, data, results)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


class Predictor:
    """A trained model with its encoders: raw rows in, per-task predictions out."""

    def __init__(self, bundle: dict[str, Any], calibrate: Callable | None = None) -> None:
        if bundle.get("format") != "mtlkit-model":
            raise ValueError("not an mtlkit model file")
        rates = bundle.get("calibration", {}).get("negative_sampling") or {}
        #: the saved negative-sampling calibration, then the caller's ``calibrate``
        self.calibrate = chain(NegativeSamplingCalibration(rates) if rates else None, calibrate)
        self.bundle = bundle
        self.config = RunConfig.model_validate(bundle["config"])
        self.encoder = TabularEncoder.from_dict(bundle["encoder"])
        self.tasks = self.encoder.schema.tasks
        self.read_options = ReadOptions.model_validate(bundle["read_options"])
        self.model = build_model(self.config, InputSpec(**bundle["input_spec"]), self.tasks)
        self.model.load_state_dict(bundle["state_dict"])
        self.model.eval()

    def predict(self, frame: pd.DataFrame, batch_size: int = 16384) -> pd.DataFrame:
        """One column per task (``<task>`` probability/value, or ``<task>_<k>`` per class)."""
        self._check_tabular()
        store = encode_frame(self.encoder, frame, with_labels=False)
        preds = predict_store(self.model, store, self.tasks, batch_size, self.calibrate)
        out = {}
        for task in self.tasks:
            p = preds[task.name].numpy()
            if p.ndim == 1:
                out[task.name] = p
            else:
                for k in range(p.shape[1]):
                    out[f"{task.name}_{k}"] = p[:, k]
        return pd.DataFrame(out, index=frame.index)

    def evaluate(self, frame: pd.DataFrame) -> dict[str, dict[str, float]]:
        self._check_tabular()
        store = encode_frame(self.encoder, frame)
        return evaluate_store(self.model, store, self.tasks, calibrate=self.calibrate)

    def _check_tabular(self) -> None:
        if self.bundle.get("pre_encoded"):
            raise ValueError(
                f"this model reads pre-encoded {self.bundle['input_spec']['kind']!r} inputs, not "
                "table rows; evaluate it on its dataset with mtlkit.api.evaluate(run_dir)"
            )


def load(run_dir: str | Path) -> Predictor:
    path = Path(run_dir)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.exists():
        raise FileNotFoundError(f"no trained model at {path}; run `mtlkit train` first")
    return Predictor(ckpt.load(path))


def evaluate(run_dir: str | Path, data: str | Path | None = None) -> dict[str, Any]:
    """Metrics of a trained run on a file (read like the training data), or on its test split."""
    predictor = load(run_dir)
    if data is not None:
        return predictor.evaluate(read_table(data, predictor.read_options))
    prepared = load_data(predictor.config, check=False)
    split = "test" if "test" in prepared.stores else "valid"
    if prepared.raw.inputs is not None:  # images/tokens: the dataset encoded them itself
        store = prepared.stores[split]
    else:
        store = encode_frame(predictor.encoder, getattr(prepared.raw, split))
    return {split: evaluate_store(predictor.model, store, predictor.tasks,
                                  calibrate=predictor.calibrate)}


def predict(
    run_dir: str | Path, input_path: str | Path, out_path: str | Path, chunk_rows: int = 262144
) -> int:
    """Stream ``input_path`` in chunks and write predictions (rows in input order)."""
    predictor = load(run_dir)
    out_path = Path(out_path)
    chunks = iter_table(input_path, predictor.read_options, chunk_rows)
    n = 0
    if out_path.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for frame in chunks:
                table = pa.Table.from_pandas(predictor.predict(frame), preserve_index=False)
                writer = writer or pq.ParquetWriter(out_path, table.schema)
                writer.write_table(table)
                n += len(frame)
        finally:
            if writer is not None:
                writer.close()
    else:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "w", newline="") as fh:
            for i, frame in enumerate(chunks):
                predictor.predict(frame).to_csv(fh, index=False, header=i == 0)
                n += len(frame)
    if n == 0:
        raise ValueError(f"{input_path}: no rows to predict")
    return n


__all__ = ["Predictor", "RunResult", "check", "evaluate", "load", "load_data", "predict", "train",
           "write_table"]
