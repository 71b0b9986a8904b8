"""Raw splits → fitted encoder + one TensorStore per split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mtlkit.data.checks import check_leakage
from mtlkit.data.datasets import RawSplits
from mtlkit.data.encoders import TabularEncoder
from mtlkit.data.store import TensorStore


@dataclass
class InputSpec:
    """What the model's input layer must accept; derived from the fitted encoders."""

    kind: str = "tabular"
    cardinalities: list[int] = field(default_factory=list)
    num_numeric: int = 0
    extra: dict = field(default_factory=dict)
    #: column names behind ``cardinalities`` / the numeric block, in input order (lets a model
    #: route named features, e.g. bias features to a bias tower)
    categorical_names: list[str] = field(default_factory=list)
    numeric_names: list[str] = field(default_factory=list)


@dataclass
class PreparedData:
    encoder: TabularEncoder
    stores: dict[str, TensorStore]
    input_spec: InputSpec
    raw: RawSplits
    #: what ``data.negative_sampling`` did to the train store (its ``rate`` calibrates)
    negative_sampling: dict[str, Any] | None = None


def encode_frame(
    encoder: TabularEncoder, frame: pd.DataFrame, with_labels: bool = True
) -> TensorStore:
    features = encoder.transform(frame)
    if not with_labels:
        return TensorStore(features, {}, {})
    labels, masks = encoder.encode_labels(frame)
    return TensorStore(features, labels, masks, encoder.encode_weights(frame))


def prepare(raw: RawSplits, check: bool = True) -> PreparedData:
    """Fit encoders on the training split only and encode every split once.

    Datasets with pre-encoded inputs (``raw.inputs``: images, token ids) keep their feature
    tensors; only their labels are encoded from the frames, and the input spec comes from them.
    """
    encoder = TabularEncoder(raw.schema).fit(raw.train)
    stores = {}
    for split in ("train", "valid", "test"):
        frame = getattr(raw, split)
        if frame is None:
            continue
        if raw.inputs is not None:
            stores[split] = TensorStore(raw.inputs.features[split], *encoder.encode_labels(frame),
                                        encoder.encode_weights(frame))
            continue
        stores[split] = encode_frame(encoder, frame)
        if check and split == "train":
            check_leakage(frame, raw.schema, stores[split].labels, stores[split].masks)
    spec = InputSpec("tabular", encoder.cardinalities, len(encoder.numeric),
                     categorical_names=[e.name for e in encoder.categorical],
                     numeric_names=[e.name for e in encoder.numeric])
    if raw.inputs is not None:
        spec = InputSpec(raw.inputs.kind, extra=dict(raw.inputs.extra))
    return PreparedData(encoder, stores, spec, raw)
