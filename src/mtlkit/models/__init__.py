"""Model registry: ``create_model(name, input_spec, tasks, **params)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from mtlkit.data.prepare import InputSpec
from mtlkit.data.schema import TaskSpec
from mtlkit.errors import ParameterError
from mtlkit.models.base import MultiTaskModel
from mtlkit.registry import Registry

MODELS: Registry[MultiTaskModel] = Registry("model")
register_model = MODELS.register
INPUTS: Registry[nn.Module] = Registry("input")
register_input = INPUTS.register


@register_input("tabular")
def _tabular_input(
    spec: InputSpec, embedding_dim: int = 4, only: list[str] | None = None,
    exclude: list[str] | None = None,
) -> nn.Module:
    """All tabular features, or the named subset (``only``) / complement (``exclude``)."""
    from mtlkit.models.layers import SelectedTabularInput, TabularInput

    if only is None and not exclude:
        return TabularInput(spec.cardinalities, spec.num_numeric, embedding_dim)
    return SelectedTabularInput(spec, embedding_dim, only=only, exclude=exclude)


def create_model(
    name: str, input_spec: InputSpec, tasks: list[TaskSpec], **params: Any
) -> MultiTaskModel:
    """Build a registered model. ``embedding_dim`` and ``input`` params go to the input layer."""
    input_params = dict(params.pop("input", {}) or {})
    if "embedding_dim" in params:
        input_params["embedding_dim"] = params.pop("embedding_dim")
    factory = INPUTS.get(input_spec.kind)

    def make_input(**overrides: Any) -> nn.Module:
        """The configured input module; ``overrides`` (e.g. ``exclude=[...]``) are added."""
        return factory(input_spec, **{**input_params, **overrides})

    def build(model_tasks: list[TaskSpec]) -> MultiTaskModel:
        return MODELS.get(name)(make_input=make_input, tasks=model_tasks, **params)

    try:
        if any(t.adversarial is not None for t in tasks):  # GRL heads on the shared trunk
            from mtlkit.models.adversarial import with_adversarial_heads

            return with_adversarial_heads(build, tasks, input_spec)
        return build(tasks)
    except TypeError as exc:
        raise ParameterError(f"model {name!r}: {exc}") from None


# registration side effects: one file per architecture
from mtlkit.models import (  # noqa: E402,F401
    aitm,
    bias_tower,
    cross_stitch,
    esmm,
    image_input,
    mmoe,
    omoe,
    ple,
    shared_bottom,
    single_task,
    snr,
    task_chain,
    text_input,
)

__all__ = ["INPUTS", "MODELS", "MultiTaskModel", "create_model", "register_input",
           "register_model"]
