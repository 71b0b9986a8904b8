"""Non-tabular inputs: Multi-Fashion images, review texts, their input modules and benchmarks."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import DATA_DIR
from torch import nn

from mtlkit import api
from mtlkit.bench import _common as bench_common
from mtlkit.data.datasets import multi_fashion as mf
from mtlkit.data.text import OOV_ID, PAD_ID, WordTokenizer, tokenize
from mtlkit.errors import DataError
from mtlkit.models.text_input import CNNTextEncoder, TransformerTextEncoder


def _need(subdir: str) -> str:
    if not (DATA_DIR / subdir).exists():
        pytest.skip(f"real data {subdir!r} not found at {DATA_DIR}; set MTLKIT_DATA_DIR")
    return str(DATA_DIR)


# ---------------------------------------------------------------- Multi-Fashion construction
def test_overlay_places_items_top_left_and_bottom_right():
    left = np.zeros((1, 28, 28), np.uint8)
    right = np.zeros((1, 28, 28), np.uint8)
    left[0, 3, 5] = 10        # only left covers canvas (3, 5)
    right[0, 0, 0] = 20       # right's origin lands at canvas (8, 8)
    right[0, 27, 27] = 25     # ... and its corner at (35, 35)
    left[0, 20, 20], right[0, 12, 12] = 30, 40  # both cover canvas (20, 20): max wins
    left[0, 10, 10], right[0, 2, 2] = 60, 50    # both cover canvas (10, 10): max wins
    out = mf.overlay(left, right)
    assert out.shape == (1, 36, 36) and out.dtype == np.uint8
    expected = np.zeros((36, 36), np.uint8)
    expected[3, 5], expected[8, 8], expected[35, 35] = 10, 20, 25
    expected[20, 20], expected[10, 10] = 40, 60
    np.testing.assert_array_equal(out[0], expected)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(root: Path, n_train: int = 40, n_test: int = 12) -> Path:
    """IDX files whose item i has pixel (0, 0) = i + 1 and (27, 27) = 100 + i; label i % 10."""
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 0, 0] = np.arange(n) + 1
        images[:, 27, 27] = np.arange(n) + 100
        images_file, labels_file = mf.FILES[split]
        _write_idx(folder / images_file, images)
        _write_idx(folder / labels_file, np.arange(n) % 10)
    return root


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(mf.read_idx(tmp_path / "x.gz"), array)
    with gzip.open(tmp_path / "bad.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + np.array([5], ">i4").tobytes() + b"abc")
    with pytest.raises(DataError, match="shape \\(5,\\) but holds 3 bytes"):
        mf.read_idx(tmp_path / "bad.gz")


def test_multi_fashion_pairs_pixels_and_labels_agree(tmp_path):
    root = _fake_fashion(tmp_path)
    raw = mf.multi_fashion(data_dir=str(root), n_valid=10, seed=3, verify=False)
    seen = set()
    for split in ("train", "valid", "test"):
        frame = getattr(raw, split)
        image = raw.inputs.features[split]["image"]
        assert image.shape == (len(frame), 1, 36, 36) and image.dtype == torch.uint8
        # the top-left corner shows only the left item, the bottom-right only the right one
        np.testing.assert_array_equal(image[:, 0, 0, 0].numpy() - 1, frame["left_item"])
        np.testing.assert_array_equal(image[:, 0, 35, 35].numpy() - 100, frame["right_item"])
        np.testing.assert_array_equal(frame["left"], frame["left_item"] % 10)
        np.testing.assert_array_equal(frame["right"], frame["right_item"] % 10)
        # every item of the split is a left item once; partners come from the same split
        assert sorted(frame["left_item"]) == sorted(frame["right_item"])
        if split != "test":
            items = set(frame["left_item"])
            assert not items & seen  # no training item is reused for validation
            seen |= items
    assert len(raw.train) == 30 and len(raw.valid) == 10 and len(raw.test) == 12
    again = mf.multi_fashion(data_dir=str(root), n_valid=10, seed=3, verify=False)
    pd.testing.assert_frame_equal(again.train, raw.train)  # fixed seed → same pairs


def test_checksum_mismatch_names_file_and_download_url(tmp_path):
    root = _fake_fashion(tmp_path)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: SHA-256 .* does not match"
                       r".*fashion-mnist\.s3-website.*/train-images-idx3-ubyte\.gz"):
        mf.multi_fashion(data_dir=str(root))


def test_reviews_checksum_mismatch_names_its_source(tmp_path):
    from mtlkit.data.datasets.reviews import reviews

    (tmp_path / "womens-clothing-reviews").mkdir()
    (tmp_path / "womens-clothing-reviews" / "reviews.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"reviews\.parquet: SHA-256 .* does not match.*kaggle"):
        reviews(data_dir=str(tmp_path))


def test_missing_files_say_where_mtlkit_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("MTLKIT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data or ../shared/data from here
    with pytest.raises(FileNotFoundError, match=r"not found; looked in: .*fashion-mnist"):
        mf.find_file("train-images-idx3-ubyte.gz", str(tmp_path))


def test_real_fashion_files_pass_their_checksums():
    data_dir = _need("fashion-mnist")
    images, labels = mf.load_fashion("test", data_dir)  # verifies SHA-256
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


# ---------------------------------------------------------------- tokenizer
def test_tokenize_known_output():
    assert tokenize("Don't LOVE it... 5 stars!  'Great'") == [
        "don't", "love", "it", "5", "stars", "great"]


def test_vocabulary_min_count_oov_padding_and_truncation():
    tok = WordTokenizer(min_count=2).fit(["a b b c", "b c d", "A"])
    # counts: b 3, a 2, c 2, d 1 → d is below min_count; ties alphabetical
    assert tok.vocabulary == ["b", "a", "c"] and tok.vocab_size == 5
    ids = tok.transform(["b a c", "d zebra b", "", "c c c c c"], max_len=4)
    assert ids.dtype == torch.long
    assert ids.tolist() == [
        [2, 3, 4, PAD_ID],
        [OOV_ID, OOV_ID, 2, PAD_ID],  # below min_count and unseen both map to OOV
        [PAD_ID] * 4,
        [4, 4, 4, 4],  # truncated to max_len
    ]
    assert WordTokenizer.from_dict(tok.to_dict()).transform(["a"], 2).tolist() == [[3, 0]]


# ---------------------------------------------------------------- text encoders
@pytest.mark.parametrize("make", [
    lambda: CNNTextEncoder(20, embedding_dim=8, channels=4, kernel_sizes=(3, 4)),
    lambda: TransformerTextEncoder(20, max_len=12, dim=8, heads=2, layers=2, ff_dim=16),
])
def test_text_encoders_ignore_padding(make):
    enc = make().eval()
    short = torch.tensor([[5, 6, 7, 8, 0, 0, 0]])
    long = torch.tensor([[5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0]])
    out_short, out_long = enc(short, short != 0), enc(long, long != 0)
    assert out_short.shape == (1, enc.output_dim)
    torch.testing.assert_close(out_short, out_long, rtol=0, atol=1e-5)
    empty = torch.zeros(2, 7, dtype=torch.long)  # a row without tokens stays finite
    assert torch.isfinite(enc(empty, empty != 0)).all()


class MeanBag(nn.Module):
    """A user-supplied encoder: any nn.Module taking (ids, mask) with an output_dim."""

    def __init__(self, vocab_size: int, dim: int = 6) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=0)
        self.output_dim = dim

    def forward(self, ids, mask):
        return self.bag(ids)


def test_text_input_accepts_any_module():
    from mtlkit.data.prepare import InputSpec
    from mtlkit.data.schema import TaskSpec
    from mtlkit.models import create_model

    spec = InputSpec("text", extra={"vocab_size": 30, "max_len": 5, "pad_id": 0})
    tasks = [TaskSpec(name="a", column="a"), TaskSpec(name="b", column="b")]
    user = MeanBag(30)
    model = create_model("single_task", spec, tasks, input={"encoder": user},
                         bottom_units=[4], tower_units=[])
    encoders = [model.inputs[t].encoder for t in ("a", "b")]
    assert all(isinstance(e, MeanBag) and e is not user for e in encoders)  # one copy per task
    out = model({"tokens": torch.tensor([[1, 2, 3, 0, 0]])})
    assert set(out) == {"a", "b"} and out["a"].shape == (1,)
    with pytest.raises(TypeError, match="output_dim"):
        create_model("shared_bottom", spec, tasks, input={"encoder": nn.Linear(2, 2)})


# ---------------------------------------------------------------- end to end
def _train(config: str, tmp_path, params: dict, **model_params):
    overrides = [f"data.data_dir={DATA_DIR}", "train.epochs=1", "train.progress=false",
                 "train.tensorboard=false"]
    overrides += [f"data.params.{k}={v}" for k, v in params.items()]
    overrides += [f"model.params.{k}={v}" for k, v in model_params.items()]
    return api.train(config, out=tmp_path, overrides=overrides)


REPO = Path(__file__).resolve().parents[1]


def test_multi_fashion_smoke_train_and_evaluate(tmp_path):
    _need("fashion-mnist")
    result = _train(REPO / "configs/multi-fashion/shared-bottom.yaml", tmp_path,
                    {"n_train": 512, "n_valid": 256, "n_test": 256})
    test = result.results["test"]
    assert set(test) == {"left", "right"}
    assert all(0.0 <= test[t]["accuracy"] <= 1.0 for t in test)
    assert result.data.input_spec.kind == "image"
    again = api.evaluate(tmp_path)  # reloads the dataset; images are not table rows
    assert again["test"]["left"]["accuracy"] == pytest.approx(test["left"]["accuracy"])
    with pytest.raises(ValueError, match="pre-encoded 'image' inputs"):
        api.load(tmp_path).predict(result.data.raw.test)


def test_reviews_smoke_train(tmp_path):
    _need("womens-clothing-reviews")
    result = _train(REPO / "configs/reviews/mmoe.yaml", tmp_path, {"n_train": 800})
    test = result.results["test"]
    assert set(test) == {"rating", "recommended", "department"}
    assert 0 <= test["rating"]["accuracy"] <= 1 and 0 <= test["recommended"]["auc"] <= 1
    assert result.data.raw.schema.task("rating").num_classes == 5
    raw = result.data.raw
    n_missing = 0
    for split, store in result.data.stores.items():  # no department: masked, not dropped
        known = getattr(raw, split)["department_id"].notna().to_numpy()
        mask = store.masks["department"]
        np.testing.assert_array_equal(known, np.ones_like(known) if mask is None else mask)
        n_missing += int((~known).sum())
    assert n_missing > 0
    tokens = raw.inputs.features["train"]["tokens"]
    assert tokens.shape == (800, 100) and tokens.max() < raw.inputs.extra["vocab_size"]


# ---------------------------------------------------------------- benchmark summary
def test_summary_delta_m_known_values():
    metrics = {"left": "accuracy", "right": "accuracy"}
    runs = pd.DataFrame([
        {"model": "single_task", "balancer": "—", "seed": 0, "left/accuracy": 0.8,
         "right/accuracy": 0.4, "train_seconds": 1.0, "error": ""},
        {"model": "single_task", "balancer": "—", "seed": 1, "left/accuracy": 0.8,
         "right/accuracy": 0.6, "train_seconds": 1.0, "error": ""},
        # vs the seed-mean reference (0.8, 0.5): (+10 % + 10 %) / 2 = +10, (−10 % + 0 %) / 2 = −5
        {"model": "shared_bottom", "balancer": "equal", "seed": 0, "left/accuracy": 0.88,
         "right/accuracy": 0.55, "train_seconds": 1.0, "error": ""},
        {"model": "shared_bottom", "balancer": "equal", "seed": 1, "left/accuracy": 0.72,
         "right/accuracy": 0.5, "train_seconds": 1.0, "error": ""},
        {"model": "shared_bottom", "balancer": "broken", "seed": 0, "left/accuracy": math.nan,
         "right/accuracy": math.nan, "train_seconds": math.nan, "error": "ValueError: x"},
    ])
    summary = bench_common.summarize(runs, metrics).set_index("balancer")
    assert summary.loc["equal", "delta_m_mean"] == pytest.approx(2.5)
    assert summary.loc["equal", "delta_m_std"] == pytest.approx(np.std([10, -5], ddof=1))
    assert summary.loc["—", "delta_m_mean"] == pytest.approx(0.0)
    assert summary.loc["broken", "failed"] == 1 and summary.loc["broken", "seeds"] == 0
    table = bench_common.markdown_table(summary.reset_index(), metrics)
    assert "| shared_bottom | equal | 0.8000 ± 0.1131 | 0.5250 ± 0.0354 | 2.50 ± 10.61 |" in table
    assert "0 (1 failed)" in table


def test_multi_fashion_bench_writes_table_and_plot(tmp_path, monkeypatch):
    from mtlkit.bench import _multi_fashion as bench_mf

    data_dir = _need("fashion-mnist")
    monkeypatch.setitem(bench_mf.MODES, "quick", {
        "n_train": 256, "n_valid": 128, "n_test": 128, "epochs": 1, "batch_size": 64})
    summary = bench_mf.multi_fashion(tmp_path, quick=True, balancers=["equal"],
                                     data_dir=data_dir, log=lambda msg: None)
    assert list(summary["model"]) == ["single_task", "shared_bottom"]
    for name in ("runs.csv", "summary.csv", "results.md", "multi_fashion.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| shared_bottom | equal |" in (tmp_path / "results.md").read_text()
