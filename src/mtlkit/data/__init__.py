"""Data layer: schema → readers → encoders → tensor store → batches."""

from mtlkit.data.datasets import DATASETS, RawSplits, load_dataset
from mtlkit.data.encoders import TabularEncoder
from mtlkit.data.prepare import InputSpec, PreparedData, encode_frame, prepare
from mtlkit.data.readers import ReadOptions, read_table
from mtlkit.data.schema import FeatureSpec, Schema, TaskSpec
from mtlkit.data.store import Batch, TensorStore

__all__ = [
    "DATASETS", "Batch", "FeatureSpec", "InputSpec", "PreparedData", "RawSplits", "ReadOptions",
    "Schema", "TabularEncoder", "TaskSpec", "TensorStore", "encode_frame", "load_dataset",
    "prepare", "read_table",
]
