"""What a dataset holds: feature columns and tasks. Plain pydantic models, usable from YAML."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskType = Literal["binary", "regression", "multiclass"]

DEFAULT_LOSS: dict[str, str] = {"binary": "bce", "regression": "mse", "multiclass": "ce"}
DEFAULT_METRIC: dict[str, str] = {"binary": "auc", "regression": "rmse", "multiclass": "accuracy"}
HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "logloss": False,
    "rmse": False,
    "mae": False,
    "accuracy": True,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureSpec(_Strict):
    """One input column.

    ``categorical`` columns are mapped to contiguous ids (0 = out-of-vocabulary);
    ``numeric`` columns are standardised with train mean/std, optionally after ``log1p``.
    """

    name: str
    kind: Literal["categorical", "numeric"]
    transform: Literal["none", "log1p"] = "none"


class AdversarialSpec(_Strict):
    """An adversarial auxiliary task: its head sees the shared representation through a
    gradient-reversal layer scaled by λ. ``schedule: dann`` ramps λ·(2/(1+exp(−γ·p)) − 1)
    over training progress p ∈ [0, 1] (Ganin & Lempitsky, 2015); ``constant`` keeps λ."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lambda_: float = Field(default=1.0, ge=0.0, alias="lambda")
    schedule: Literal["constant", "dann"] = "dann"
    gamma: float = Field(default=10.0, gt=0.0)
    #: hidden widths of the adversarial head
    units: list[int] = Field(default_factory=lambda: [16])


class TaskSpec(_Strict):
    """One prediction target.

    The label is read from ``column``. For binary tasks the label is either the column's
    0/1 values, or derived by ``positive_values`` (value in the list → 1, otherwise 0; if
    ``negative_values`` is also given, any value in neither list is an error).
    """

    name: str
    type: TaskType = "binary"
    column: str
    positive_values: list[Any] | None = None
    negative_values: list[Any] | None = None
    num_classes: int | None = Field(default=None, ge=2)
    loss: str | None = None
    loss_params: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, ge=0.0)
    role: Literal["main", "auxiliary"] = "main"
    allow_missing: bool = False
    #: indicator column: the task is defined only on rows where it is 1 (e.g. CVR on clicks);
    #: other rows are masked out of its loss and metrics, and a positive label there is an error
    sample_space: str | None = None
    #: column of non-negative per-row loss weights (the reduction is Σ w·loss / #rows)
    sample_weight: str | None = None
    #: binary tasks: loss multipliers of positive and negative rows (negative down-weighting)
    positive_weight: float = Field(default=1.0, ge=0.0)
    negative_weight: float = Field(default=1.0, ge=0.0)
    #: head on a gradient-reversal layer over the shared representation (role: auxiliary)
    adversarial: AdversarialSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if self.type != "binary" and (self.positive_values or self.negative_values):
            raise ValueError(f"task {self.name!r}: positive_values only apply to binary tasks")
        if self.type != "binary" and (self.positive_weight != 1.0 or self.negative_weight != 1.0):
            raise ValueError(f"task {self.name!r}: positive_weight/negative_weight only apply "
                             f"to binary tasks")
        if self.adversarial is not None and self.role != "auxiliary":
            raise ValueError(f"task {self.name!r}: adversarial tasks must have role: auxiliary")
        if self.negative_values is not None and self.positive_values is None:
            raise ValueError(f"task {self.name!r}: negative_values needs positive_values")
        return self

    @property
    def has_loss(self) -> bool:
        """False for tasks that are predicted and reported but never trained directly."""
        return self.loss_name != "none"

    @property
    def loss_name(self) -> str:
        return self.loss or DEFAULT_LOSS[self.type]

    @property
    def default_metric(self) -> str:
        return DEFAULT_METRIC[self.type]

    @property
    def output_dim(self) -> int:
        if self.type == "multiclass":
            if self.num_classes is None:
                raise ValueError(f"task {self.name!r}: multiclass tasks need num_classes")
            return self.num_classes
        return 1


class Schema(_Strict):
    """Features and tasks of one dataset."""

    features: list[FeatureSpec]
    tasks: list[TaskSpec]

    @model_validator(mode="after")
    def _check(self) -> Schema:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature columns listed twice: {dupes}")
        task_names = [t.name for t in self.tasks]
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"task names must be unique, got {task_names}")
        if not self.tasks:
            raise ValueError("a schema needs at least one task")
        label_cols = {t.column: t.name for t in self.tasks}
        leaking = [n for n in names if n in label_cols]
        if leaking:
            raise ValueError(
                f"label column(s) {leaking} are also listed as features (task "
                f"{label_cols[leaking[0]]!r}); remove them from the features: that is label leakage"
            )
        return self

    @property
    def categorical(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "categorical"]

    @property
    def numeric(self) -> list[FeatureSpec]:
        return [f for f in self.features if f.kind == "numeric"]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"unknown task {name!r}; tasks are {self.task_names}")

    def columns(self) -> list[str]:
        """Every raw column the schema reads (features, label columns, sample-space columns)."""
        cols = [f.name for f in self.features]
        for t in self.tasks:
            cols += [c for c in (t.column, t.sample_space, t.sample_weight)
                     if c is not None and c not in cols]
        return cols
