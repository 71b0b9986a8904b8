"""Run configuration: one pydantic model, loaded from YAML with ``--set key=value`` overrides."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mtlkit.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NegativeSamplingConfig(_Strict):
    """Keep every positive of ``task`` and a fraction ``rate`` of its training negatives;
    predictions are re-calibrated to the full-data scale (the rate is saved with the model)."""

    task: str
    rate: float = Field(gt=0.0, le=1.0)
    seed: int = 0


class StreamingConfig(_Strict):
    """Stream the ``table`` dataset's train file(s) (Parquet/CSV, a file or a folder) instead
    of loading them: constant memory for data larger than memory (``mtlkit.data.streaming``)."""

    #: rows per record batch read from the files
    batch_rows: int = Field(default=65536, ge=1)
    #: rows held in the shuffle buffer (0 = no row shuffling)
    shuffle_buffer: int = Field(default=262144, ge=0)
    #: permute the files / Parquet row groups every epoch
    shuffle_files: bool = True
    #: reuse the encoders of a trained run (RUN_DIR or model.pt) instead of a fitting pass
    encoder: str | None = None
    #: reader processes that decode and encode record batches ahead of the training step
    #: (0 = read in the training process); with more than 1, their chunks interleave
    workers: int = Field(default=1, ge=0)
    #: under torchrun: "files" = each rank reads its own files / Parquet row groups; "rows" =
    #: every rank reads everything and keeps its slice of each global batch (exactly the
    #: single-process stream, world× the reading)
    shard: Literal["files", "rows"] = "files"


class DataConfig(_Strict):
    dataset: str = "synthetic"
    data_dir: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    #: stream the train file(s) instead of loading them (dataset ``table`` only)
    streaming: StreamingConfig | None = None
    #: per-task overrides of the dataset's task specs, e.g. {income: {weight: 2.0}}
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: feature columns of the dataset left out of the inputs (e.g. to predict one of them)
    drop_features: list[str] = Field(default_factory=list)
    #: derived label columns fitted on train, e.g.
    #: {name: occ_rate, rule: target_rate, field: occupation_code, task: income}
    derive: list[dict[str, Any]] = Field(default_factory=list)
    #: extra tasks (TaskSpec fields; ``role`` defaults to auxiliary)
    add_tasks: list[dict[str, Any]] = Field(default_factory=list)
    negative_sampling: NegativeSamplingConfig | None = None
    #: refuse features identical or near-identical to a label (turn off only for samples known
    #: to be assembled from separate positive / negative pools)
    check_leakage: bool = True


class ModelConfig(_Strict):
    name: str = "mmoe"
    params: dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(_Strict):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = 0.0


class BalancerConfig(_Strict):
    name: str = "fixed"
    params: dict[str, Any] = Field(default_factory=dict)


class MonitorConfig(_Strict):
    #: task used for early stopping and best-checkpoint selection (default: first main task)
    task: str | None = None
    #: metric of that task (default: the task type's default metric)
    metric: str | None = None


class TrainConfig(_Strict):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    eval_batch_size: int = Field(default=16384, ge=1)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    patience: int | None = Field(default=3, ge=1)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    seed: int = 0
    #: intra-op threads; 0 = leave torch's default. 1 is fastest for small models on 2 cores.
    threads: int = Field(default=1, ge=0)
    checkpoint_every_steps: int | None = Field(default=None, ge=1)
    progress: bool = True
    tensorboard: bool = True


class DiagnosticsConfig(_Strict):
    """What ``mtlkit.diagnose.Diagnostics`` records while training (in RUN_DIR/diagnostics)."""

    enabled: bool = True
    #: record losses, balancer weights, gradient cosines and gate use every this many steps
    every: int = Field(default=50, ge=1)
    #: where task gradients are compared: at the shared representation (cheap: backward through
    #: the heads only) or on the shared parameters (a backward through the trunk per task)
    grad_space: Literal["representation", "parameters"] = "representation"
    gates: bool = True
    #: TAG lookahead task affinity every this many steps (None: off; costs T+1 forwards)
    tag_every: int | None = Field(default=None, ge=1)
    #: SGD step size of the lookahead (None: the optimizer's learning rate)
    tag_lr: float | None = Field(default=None, gt=0)


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    balancer: BalancerConfig = Field(default_factory=BalancerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def build_config(tree: dict | None = None, overrides: list[str] | None = None,
                 source: str = "config") -> RunConfig:
    tree = dict(tree or {})
    parsed = parse_overrides(overrides or [])
    for key, value in parsed:
        _set_dotted(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(explain(exc, source, {k for k, _ in parsed})) from None


def _section(path: tuple) -> type[BaseModel] | None:
    """The config class at a dotted path (``("train", "optimizer")`` → OptimizerConfig)."""
    node: type[BaseModel] = RunConfig
    for part in path:
        field = node.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            return None
        candidates = [field.annotation, *get_args(field.annotation)]
        node = next((c for c in candidates if isinstance(c, type)
                     and issubclass(c, BaseModel)), None)
        if node is None:
            return None
    return node


def explain(exc: ValidationError, source: str, override_keys: set[str] = frozenset()) -> str:
    """One line per problem: the dotted key, where it came from (``--set`` or the file), what
    is wrong and, for an unknown key, the closest known keys."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        origin = " (from --set)" if key in override_keys else ""
        if err["type"] == "extra_forbidden":
            section = _section(loc[:-1])
            known = list(section.model_fields) if section else []
            close = [".".join(map(str, (*loc[:-1], c)))
                     for c in difflib.get_close_matches(str(loc[-1]), known, n=2)]
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            lines.append(f"  {key}{origin}: unknown key{hint} (known here: {', '.join(known)})")
        else:
            lines.append(f"  {key}{origin}: {err['msg']} (got {err['input']!r})")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return build_config(tree, overrides, str(path))
