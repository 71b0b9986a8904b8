"""Data layer: readers, encoders, tensor store, built-in datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mtlkit.data import ReadOptions, Schema, TabularEncoder, TensorStore, read_table
from mtlkit.data.datasets import census
from mtlkit.data.datasets.synthetic import generate_synthetic
from mtlkit.data.encoders import MISSING_TOKEN, OOV_ID, CategoricalEncoder, NumericEncoder


def test_csv_reader_handles_leading_spaces_and_na_category(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a, b\n x, NA\n y, 2\n")
    frame = read_table(path, ReadOptions(skipinitialspace=True, na_values=[]))
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == ["x", "y"]
    assert frame["b"].tolist() == ["NA", "2"]  # a real category spelled NA is kept


def test_csv_reader_without_header_uses_names(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1;2\n3;4\n")
    frame = read_table(path, ReadOptions(header=False, names=["p", "q"], delimiter=";"))
    assert frame["q"].tolist() == ["2", "4"]


def test_parquet_roundtrip(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["u", "v"]})
    frame.to_parquet(tmp_path / "t.parquet")
    back = read_table(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, frame)


def test_categorical_encoder_orders_by_frequency_and_maps_unseen_to_oov():
    enc = CategoricalEncoder("c").fit(pd.Series(["b", "a", "b", None, "c", "b", "a"]))
    assert enc.vocabulary == ["b", "a", MISSING_TOKEN, "c"]
    assert enc.cardinality == 5
    codes = enc.transform(pd.Series(["a", "zzz", None, "b"]))
    assert codes.tolist() == [2, OOV_ID, 3, 1]


def test_numeric_encoder_standardises_with_train_stats_and_imputes_mean():
    enc = NumericEncoder("x").fit(pd.Series([1.0, 2.0, 3.0, np.nan]))
    assert enc.mean == pytest.approx(2.0)
    assert enc.std == pytest.approx(np.std([1.0, 2.0, 3.0]))
    out = enc.transform(pd.Series([2.0, np.nan, 4.0]))
    np.testing.assert_allclose(out, [0.0, 0.0, 2.0 / np.std([1, 2, 3])], rtol=1e-6)
    assert enc.missing_count == 1


def test_encoder_json_roundtrip_gives_identical_codes():
    frame = pd.DataFrame({"c": ["x", "y", "x"], "n": [1.0, 5.0, 3.0], "y": [0, 1, 1]})
    schema = Schema(features=[{"name": "c", "kind": "categorical"},
                              {"name": "n", "kind": "numeric", "transform": "log1p"}],
                    tasks=[{"name": "t", "column": "y"}])
    enc = TabularEncoder(schema).fit(frame)
    back = TabularEncoder.from_dict(enc.to_dict())
    a, b = enc.transform(frame), back.transform(frame)
    assert torch.equal(a["categorical"], b["categorical"])
    assert torch.equal(a["numeric"], b["numeric"])


def test_tensor_store_batches_are_slices_of_one_permutation():
    x = torch.arange(10).unsqueeze(1)
    store = TensorStore({"numeric": x.float()}, {"t": torch.arange(10).float()})
    order = store.permutation(torch.Generator().manual_seed(3))
    batches = list(store.batches(4, order))
    assert [len(b) for b in batches] == [4, 4, 2]
    seen = torch.cat([b.labels["t"] for b in batches])
    assert torch.equal(seen, order.float())  # every row once, in permutation order
    assert torch.equal(torch.cat([b.features["numeric"][:, 0] for b in batches]), seen)
    resumed = list(store.batches(4, order, start=2))
    assert torch.equal(resumed[0].labels["t"], batches[2].labels["t"])


def test_synthetic_weight_vectors_have_requested_cosine():
    for p in (1.0, 0.5, 0.0, -0.3):
        _, _, w = generate_synthetic(10, p, dim=20, seed=1)
        cos = w[0] @ w[1] / np.linalg.norm(w[0]) / np.linalg.norm(w[1])
        assert cos == pytest.approx(p, abs=1e-9)


def test_synthetic_label_correlation_drops_with_p():
    corr = []
    for p in (1.0, 0.5, 0.0):
        _, y, _ = generate_synthetic(20000, p, dim=50, seed=0)
        corr.append(np.corrcoef(y[:, 0], y[:, 1])[0, 1])
    assert corr[0] > 0.95 and corr[0] > corr[1] > corr[2]
    assert abs(corr[2]) < 0.1


def test_census_protocol(census_raw):
    raw = census_raw
    assert len(raw.train) == 199523
    assert len(raw.valid) + len(raw.test) == 99762 and abs(len(raw.valid) - len(raw.test)) <= 1
    features = {f.name for f in raw.schema.features}
    assert not features & {"education", "marital_status", "income", "instance_weight"}
    assert len(features) == 38
    assert raw.schema.task_names == ["income", "marital"]
    from mtlkit.data import prepare

    data = prepare(raw)
    income = data.stores["train"].labels["income"].mean().item()
    never = data.stores["train"].labels["marital"].mean().item()
    assert income == pytest.approx(12382 / 199523)
    assert never == pytest.approx(86485 / 199523)
    # the NA category of hispanic_origin is a real value, not missing
    assert "NA" in data.encoder.categorical[
        [e.name for e in data.encoder.categorical].index("hispanic_origin")].vocabulary


def test_census_group2_education_label(census_raw, data_dir):
    schema = census.census_schema(2)
    assert schema.task_names == ["education", "marital"]
    from mtlkit.data.encoders import encode_label

    y, _ = encode_label(census_raw.train, schema.task("education"))
    expected = census_raw.train["education"].isin(census.COLLEGE).mean()
    assert y.mean().item() == pytest.approx(expected)
    assert 0.15 < expected < 0.25


def test_census_split_is_fixed_by_seed(data_dir):
    from mtlkit.data import load_dataset

    a = load_dataset("census-income", data_dir=str(data_dir), verify=False)
    assert a.test["age"].tolist()[:50] == load_dataset(
        "census-income", data_dir=str(data_dir), verify=False).test["age"].tolist()[:50]


def test_census_checksums_are_verified(tmp_path, data_dir):
    census.verify(data_dir / "census-income" / "census-income.data.gz")
    bad = tmp_path / "census-income.data.gz"
    bad.write_bytes(b"not the census")
    with pytest.raises(Exception, match="SHA-256 does not match.*archive.ics.uci.edu"):
        census.verify(bad)
