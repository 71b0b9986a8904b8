"""Each bad input gives a clear error naming the file / column / task; nothing is coerced."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import tiny_config, tiny_table

from mtlkit import api
from mtlkit.data.datasets import census
from mtlkit.data.schema import TaskSpec
from mtlkit.errors import ConfigError, DataError, DatasetNotFoundError
from mtlkit.losses import TaskLosses


def _write(tmp_path, frame, name="train.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def test_missing_census_file_names_path_and_download_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MTLKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        census.find_file("train", str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "census-income.data.gz" in msg and str(tmp_path / "nowhere") in msg
    assert "https://archive.ics.uci.edu/" in msg


def test_missing_table_file(tmp_path):
    cfg = tiny_config(str(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="absent.csv"):
        api.train(cfg)


def test_unknown_column_is_named_with_a_suggestion(tmp_path):
    frame = tiny_table()
    cfg = tiny_config(_write(tmp_path, frame))
    cfg["data"]["params"]["features"][0]["name"] = "colour"
    with pytest.raises(DataError, match=r"'colour' \(did you mean 'color'\?\)"):
        api.train(cfg)


def test_binary_label_outside_01(tmp_path):
    frame = tiny_table()
    frame.loc[7, "like"] = 2
    with pytest.raises(DataError, match=r"task 'like'.*column 'like' row 7.*'2'.*\{0, 1\}"):
        api.train(tiny_config(_write(tmp_path, frame)))


def test_nan_label_is_an_error_unless_allowed(tmp_path):
    frame = tiny_table()
    frame["click"] = frame["click"].astype(float)
    frame.loc[5, "click"] = np.nan
    path = _write(tmp_path, frame)
    with pytest.raises(DataError, match=r"task 'click'.*1 missing value\(s\), first at row 5"):
        api.train(tiny_config(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        api.train(tiny_config(str(path)))
    path.write_text("color,shape,size,age,click,like\n")
    with pytest.raises(DataError, match="empty.csv: the file has no data rows"):
        api.train(tiny_config(str(path)))


def test_feature_identical_to_label_is_refused(tmp_path):
    frame = tiny_table()
    frame["clicked_copy"] = frame["click"].map({0: "no", 1: "yes"})
    cfg = tiny_config(_write(tmp_path, frame))
    cfg["data"]["params"]["features"].append({"name": "clicked_copy", "kind": "categorical"})
    with pytest.raises(DataError, match="'clicked_copy' is identical or near-identical.*'click'"):
        api.train(cfg)


def test_label_column_listed_as_feature_is_refused(tmp_path):
    cfg = tiny_config(_write(tmp_path, tiny_table()))
    cfg["data"]["params"]["features"].append({"name": "like", "kind": "numeric"})
    with pytest.raises(Exception, match="label column.*'like'.*leakage"):
        api.train(cfg)


def test_prediction_label_shape_mismatch_names_task():
    losses = TaskLosses([TaskSpec(name="ctr", column="c")])
    with pytest.raises(DataError, match=r"task 'ctr': prediction shape \(4, 2\).*\(4,\)"):
        losses({"ctr": torch.zeros(4, 2)}, {"ctr": torch.zeros(4)}, {"ctr": None})


def test_non_numeric_value_in_numeric_column(tmp_path):
    frame = tiny_table()
    frame["size"] = frame["size"].astype(object)
    frame.loc[3, "size"] = "big"
    with pytest.raises(DataError, match=r"column 'size' row 3: value 'big' is not a number"):
        api.train(tiny_config(_write(tmp_path, frame)))


def test_unknown_model_and_bad_override():
    with pytest.raises(KeyError, match=r"unknown model 'mmeo'.*Did you mean 'mmoe'"):
        from mtlkit.models import MODELS

        MODELS.get("mmeo")
    with pytest.raises(ConfigError, match="key=value"):
        api.train("configs/synthetic/mmoe.yaml", overrides=["train.epochs"])
    with pytest.raises(ConfigError, match="epochs"):
        api.train("configs/synthetic/mmoe.yaml", overrides=["train.epochs=0"])


def test_leakage_is_not_judged_on_a_handful_of_positives():
    """Ali-CCP sample: 1 purchase among 7 clicks; a 2-valued feature isolates it by chance."""
    import pandas as pd

    from mtlkit.data.checks import MIN_CLASS_COUNT, leakage_score

    y = np.zeros(7)
    y[0] = 1
    by_chance = pd.Series([0.46, 0, 0, 0, 0, 0, 0])
    assert np.isinf(leakage_score(by_chance, y))
    y = np.zeros(400)
    y[:MIN_CLASS_COUNT] = 1
    copy = pd.Series(np.where(y == 1, "yes", "no"))
    assert leakage_score(copy, y) == 0.0


def test_streamed_predict_errors_name_the_file(tmp_path):
    """Found by a fresh-clone run: chunked predict said 'the data' instead of the file."""
    import pandas as pd

    path = tmp_path / "train.csv"
    tiny_table().to_csv(path, index=False)
    api.train(tiny_config(str(path)), out=tmp_path / "run")
    bad = tmp_path / "wrong_columns.parquet"
    pd.DataFrame({"0": [1.0], "1": [2.0]}).to_parquet(bad)
    with pytest.raises(DataError, match=r"wrong_columns.parquet: column\(s\) 'color'"):
        api.predict(tmp_path / "run", bad, tmp_path / "p.csv")


@pytest.mark.parametrize(("override", "message"), [
    ("model.params.num_expert=4",
     r"model 'mmoe' has no parameter 'num_expert'\. Did you mean 'num_experts'\?"),
    ("balancer.name=pcgard", r"unknown balancer 'pcgard'.*Did you mean 'pcgrad'"),
    ("balancer.params.weight=1", r"balancer 'fixed' has no parameter 'weight'\. "
                                 r"Did you mean 'weights'\?"),
    ("data.params.corelation=0.5",
     r"dataset 'synthetic' has no parameter 'corelation'\. Did you mean 'correlation'\?"),
    ("train.epoch=2", r"train\.epoch \(from --set\): unknown key; did you mean 'train\.epochs'\?"),
    ("train.optimizer.lrr=0.1", r"did you mean 'train\.optimizer\.lr'\?"),
])
def test_config_typos_fail_before_any_data_is_read(monkeypatch, override, message):
    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the configuration was checked")

    monkeypatch.setattr(api, "load_dataset", no_data)
    monkeypatch.setattr(api, "load_data", no_data)
    with pytest.raises(ConfigError, match=message) as info:
        api.train("configs/synthetic/mmoe.yaml", overrides=[override])
    assert "\n" not in str(info.value).split(":", 1)[0]  # no raw pydantic dump header


def test_unknown_names_print_without_keyerror_quotes():
    from mtlkit.errors import UnknownNameError
    from mtlkit.models import MODELS

    with pytest.raises(UnknownNameError) as info:
        MODELS.get("mmeo")
    assert str(info.value).startswith("unknown model 'mmeo'")
