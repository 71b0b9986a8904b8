"""Training data larger than memory: Parquet/CSV (a file or a folder of files) streamed through
PyArrow record batches, encoded on the fly, shuffled through a bounded buffer.

Memory is bounded by ``batch_rows`` (one decoded record batch) plus ``shuffle_buffer`` encoded
rows, whatever the file size. ``StreamingStore.batches`` yields the same ``Batch`` objects as
``TensorStore.batches``, so the ``Trainer`` is unchanged:

* ``permutation(generator)`` draws one seed per epoch from the trainer's generator (the epoch's
  "order"); ``batches(batch_size, order, start)`` replays the epoch's stream from that seed and
  skips ``start`` batches, so a resumed run sees exactly the batches it would have seen;
* with ``order=None``, or ``shuffle_buffer=0`` and ``shuffle_files=False``, rows come in file
  order (files sorted by path) and the batches equal ``TensorStore.batches(order=None)`` on the
  concatenated table.

Shuffling: the list of Parquet row groups (or files) is permuted, then rows pass through a
buffer of ``shuffle_buffer`` rows that is permuted as each record batch arrives (one
``index_select``; never per-sample Python). A buffer at least the size of the data is a full
shuffle.

Encoders are fitted in a first streaming pass (``fit_encoder``: category counts and Chan's
parallel mean/variance, the same vocabulary order and statistics as ``TabularEncoder.fit``) or
loaded from a trained run (``data.streaming.encoder``). Validation and test files are small
and read into memory as usual.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import torch

from mtlkit.config import DataConfig
from mtlkit.data.datasets import RawSplits
from mtlkit.data.encoders import TabularEncoder, _factorize, require_columns
from mtlkit.data.prepare import InputSpec, PreparedData, encode_frame
from mtlkit.data.readers import ReadOptions
from mtlkit.data.schema import Schema
from mtlkit.data.store import Batch
from mtlkit.errors import ConfigError, DataError

PARQUET_SUFFIXES = {".parquet", ".pq"}


def _format(path: Path, options: ReadOptions) -> str:
    if options.format != "auto":
        return options.format
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise DataError(f"{path}: no data files found")
    return "parquet" if files[0].suffix.lower() in PARQUET_SUFFIXES else "csv"


def schema_columns(schema: Schema) -> list[str]:
    """Every column a schema reads: features, labels, sample spaces and sample weights."""
    cols = [f.name for f in schema.features]
    for t in schema.tasks:
        cols += [c for c in (t.column, t.sample_space, t.sample_weight) if c is not None]
    return list(dict.fromkeys(cols))


def open_dataset(path: str | Path, options: ReadOptions, columns: list[str]) -> ds.Dataset:
    """A ``pyarrow.dataset`` over one file or a folder of files. CSV columns are read as
    strings (as ``read_table`` does) and typed later against the schema."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file or folder not found: {path}")
    if _format(path, options) == "parquet":
        return ds.dataset(str(path), format="parquet")
    if not options.header and not options.names:
        raise DataError(f"{path}: a CSV without a header row needs read.names")
    if options.names:  # a header row, if any, is skipped: the names given win
        read = pacsv.ReadOptions(column_names=options.names, skip_rows=int(options.header))
    else:
        read = pacsv.ReadOptions()
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns}, strings_can_be_null=True,
        **({"null_values": options.na_values} if options.na_values is not None else {}),
    )
    fmt = ds.CsvFileFormat(read_options=read, convert_options=convert,
                           parse_options=pacsv.ParseOptions(delimiter=options.delimiter))
    return ds.dataset(str(path), format=fmt)


class StreamingStore:
    """Rows streamed from files; batches as in ``TensorStore`` (see the module docstring)."""

    def __init__(
        self, path: str | Path, encoder: TabularEncoder, options: ReadOptions | None = None,
        batch_rows: int = 65536, shuffle_buffer: int = 262144, shuffle_files: bool = True,
        num_rows: int | None = None, prefetch: int = 2,
    ) -> None:
        if batch_rows < 1 or shuffle_buffer < 0:
            raise ValueError(f"streaming needs batch_rows >= 1 and shuffle_buffer >= 0, got "
                             f"{batch_rows} and {shuffle_buffer}")
        self.path, self.encoder = Path(path), encoder
        self.options = options or ReadOptions()
        self.batch_rows, self.shuffle_buffer = batch_rows, shuffle_buffer
        self.shuffle_files = shuffle_files
        #: encoded record batches prepared ahead by a background thread (0 = none)
        self.prefetch = prefetch
        self.columns = schema_columns(encoder.schema)
        self.dataset = open_dataset(self.path, self.options, self.columns)
        missing = [c for c in self.columns if c not in self.dataset.schema.names]
        if missing:
            frame = pd.DataFrame(columns=self.dataset.schema.names)
            frame.attrs["source"] = str(self.path)
            require_columns(frame, missing)
        self._num_rows = num_rows
        self.task_names = [t.name for t in encoder.schema.tasks]
        #: (rank, world): this process reads only its share of every global batch
        self.shard_of: tuple[int, int] = (0, 1)

    # ---------------------------------------------------------------- reading
    def _fragments(self, generator: torch.Generator | None) -> list:
        frags = sorted(self.dataset.get_fragments(), key=lambda f: f.path)
        if generator is None or not self.shuffle_files:
            return frags
        if isinstance(self.dataset.format, ds.ParquetFileFormat):  # row groups: finer units
            frags = [rg for f in frags for rg in f.split_by_row_group()]
        perm = torch.randperm(len(frags), generator=generator).tolist()
        return [frags[i] for i in perm]

    def frames(self, generator: torch.Generator | None = None) -> Iterator[pd.DataFrame]:
        """The raw rows as pandas chunks of at most ``batch_rows`` rows."""
        for frag in self._fragments(generator):
            # bounded read-ahead, one thread: PyArrow's threaded default scan buffered ~0.5 GB
            # ahead on the census file (RSS grew with the file); this keeps it flat
            for rb in frag.to_batches(columns=self.columns, batch_size=self.batch_rows,
                                      batch_readahead=1, fragment_readahead=1,
                                      use_threads=False):
                if rb.num_rows == 0:
                    continue
                frame = rb.to_pandas()
                if self.options.skipinitialspace:
                    for c in frame.columns:
                        if frame[c].dtype == object:
                            frame[c] = frame[c].str.lstrip()
                frame.attrs["source"] = str(frag.path)
                yield frame

    def _encode(self, frame: pd.DataFrame) -> dict[str, torch.Tensor]:
        out = {f"f:{k}": v for k, v in self.encoder.transform(frame).items()}
        labels, masks = self.encoder.encode_labels(frame)
        weights = self.encoder.encode_weights(frame)
        for k in self.task_names:
            out[f"y:{k}"] = labels[k]
            m = masks[k]
            out[f"m:{k}"] = torch.ones(len(frame), dtype=torch.bool) if m is None else m
            if weights[k] is not None:
                out[f"w:{k}"] = weights[k]
        return out

    def _encoded(self, generator: torch.Generator | None) -> Iterator[dict[str, torch.Tensor]]:
        """Encoded record batches, read and encoded one ahead in a background thread (Arrow
        decoding and pandas/numpy encoding overlap the training step; order is preserved)."""
        frames = self.frames(generator)  # the file order is drawn here, in this thread
        done = object()
        queue: Queue = Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for frame in frames:
                    if stop.is_set():
                        return
                    queue.put(self._encode(frame))
                queue.put(done)
            except BaseException as exc:  # re-raised in the consumer
                queue.put(exc)

        if self.prefetch == 0:
            yield from (self._encode(f) for f in frames)
            return
        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            while (item := queue.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                with contextlib.suppress(Empty):
                    queue.get(timeout=0.1)

    def _batch(self, t: dict[str, torch.Tensor], lo: int, hi: int) -> Batch:
        masks: dict[str, torch.Tensor | None] = {}
        for k in self.task_names:
            m = t[f"m:{k}"][lo:hi]
            masks[k] = None if bool(m.all()) else m
        feats = {k[2:]: v[lo:hi] for k, v in t.items() if k.startswith("f:")}
        return Batch(
            features=feats, labels={k: t[f"y:{k}"][lo:hi] for k in self.task_names},
            masks=masks,
            weights={k: t[f"w:{k}"][lo:hi] if f"w:{k}" in t else None for k in self.task_names},
        )

    # ---------------------------------------------------------------- TensorStore interface
    def __len__(self) -> int:
        if self._num_rows is None:
            self._num_rows = self.dataset.count_rows()
        return self._num_rows

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        """The epoch's shuffle seed (drawn from the trainer's generator)."""
        return torch.randint(0, 2**62, (1,), generator=generator)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        world = self.shard_of[1]
        global_batch = batch_size * world
        n = len(self)
        if drop_last or world > 1:
            return n // global_batch
        return -(-n // global_batch)

    def batches(
        self, batch_size: int, order: torch.Tensor | None = None, start: int = 0,
        drop_last: bool = False,
    ) -> Iterator[Batch]:
        """Batches of ``batch_size`` rows in the stream order seeded by ``order``, from batch
        ``start``. Sharded (``shard_of = (rank, world)``): the stream is cut into global
        batches of ``batch_size·world`` rows and this rank gets rows ``[rank·b, (rank+1)·b)``
        of each; an incomplete last global batch is dropped so every rank steps equally."""
        rank, world = self.shard_of
        gen = None
        if order is not None and (self.shuffle_files or self.shuffle_buffer > 0):
            gen = torch.Generator().manual_seed(int(order.reshape(-1)[0]))
        step = batch_size * world
        drop_last = drop_last or world > 1
        keep = self.shuffle_buffer if gen is not None else 0
        pending: dict[str, torch.Tensor] | None = None
        index = 0
        for chunk in self._encoded(gen):
            pending = chunk if pending is None else {
                k: torch.cat([pending[k], v]) for k, v in chunk.items()}
            n = len(pending["y:" + self.task_names[0]])
            if gen is not None and self.shuffle_buffer > 0:
                perm = torch.randperm(n, generator=gen)
                pending = {k: v.index_select(0, perm) for k, v in pending.items()}
            emit = max(n - keep, 0) // step * step
            for lo in range(0, emit, step):
                if index >= start:
                    yield self._batch(pending, lo + rank * batch_size,
                                      lo + (rank + 1) * batch_size)
                index += 1
            pending = {k: v[emit:] for k, v in pending.items()}
        if pending is None:
            return
        n = len(pending["y:" + self.task_names[0]])
        stop = n - n % step if drop_last else n
        for lo in range(0, stop, step):
            if index >= start:
                hi = min(lo + step, n)
                yield self._batch(pending, lo + rank * batch_size,
                                  min(lo + (rank + 1) * batch_size, hi))
            index += 1


def fit_encoder(encoder: TabularEncoder, frames: Iterator[pd.DataFrame]) -> int:
    """Fit ``encoder`` in one streaming pass; returns the number of rows seen.

    Categorical vocabularies: summed value counts, ordered like ``CategoricalEncoder.fit``
    (by count, then value). Numeric: Chan et al.'s pairwise merge of per-chunk (count, mean,
    M2) in float64 over finite values — ``NumericEncoder.fit``'s mean and population std.
    """
    counts: list[dict[str, int]] = [{} for _ in encoder.categorical]
    stats = [(0, 0.0, 0.0) for _ in encoder.numeric]  # (n, mean, M2)
    rows = 0
    for frame in frames:
        require_columns(frame, [f.name for f in encoder.schema.features])
        rows += len(frame)
        for j, enc in enumerate(encoder.categorical):
            codes, names = _factorize(frame[enc.name])
            for name, c in zip(names, np.bincount(codes, minlength=len(names)), strict=True):
                counts[j][name] = counts[j].get(name, 0) + int(c)
        for j, enc in enumerate(encoder.numeric):
            x = enc._raw(frame[enc.name], frame.attrs.get("source", "the data"))
            x = x[np.isfinite(x)]
            if x.size == 0:
                continue
            n_b, mean_b = x.size, float(x.mean())
            m2_b = float(((x - mean_b) ** 2).sum())
            n_a, mean_a, m2_a = stats[j]
            n = n_a + n_b
            delta = mean_b - mean_a
            stats[j] = (n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n)
    if rows == 0:
        raise DataError("streaming: the training data has no rows")
    for enc, total in zip(encoder.categorical, counts, strict=True):
        enc.vocabulary = sorted(total, key=lambda v: (-total[v], v))
    for enc, (n, mean, m2) in zip(encoder.numeric, stats, strict=True):
        if n == 0:
            raise DataError(f"streaming: numeric column {enc.name!r} has no values")
        std = (m2 / n) ** 0.5
        enc.mean, enc.std = mean, std if std > 0 else 1.0
    encoder.fitted = True
    return rows


def prepare_streaming(data: DataConfig) -> PreparedData:
    """``PreparedData`` whose train store streams ``data.params.train`` (dataset ``table``);
    valid/test are read into memory. The data checks run on the first record batch."""
    from mtlkit.data.datasets.table import _load
    from mtlkit.train import checkpoint as ckpt

    cfg = data.streaming
    assert cfg is not None
    if data.dataset != "table":
        raise ConfigError(f"data.streaming reads files described by dataset 'table', not "
                          f"{data.dataset!r}")
    rules = {"tasks": data.tasks, "drop_features": data.drop_features, "derive": data.derive,
             "add_tasks": data.add_tasks, "negative_sampling": data.negative_sampling}
    used = [k for k, v in rules.items() if v]
    if used:
        raise ConfigError(f"data.streaming does not support data.{used[0]} (the rules need "
                          "the whole table); describe the tasks in data.params instead")
    params = dict(data.params)
    if params.get("valid") is None:
        raise ConfigError("data.streaming needs data.params.valid (a validation file): a "
                          "streamed train file is never held in memory to split it")
    options = ReadOptions.model_validate(params.get("read") or {})
    schema = Schema(features=params["features"], tasks=params["tasks"])
    kwargs = {"batch_rows": cfg.batch_rows, "shuffle_buffer": cfg.shuffle_buffer,
              "shuffle_files": cfg.shuffle_files}
    if cfg.encoder is not None:
        path = Path(cfg.encoder)
        bundle = ckpt.load(path / "model.pt" if path.is_dir() else path)
        encoder = TabularEncoder.from_dict(bundle["encoder"])
        if encoder.schema != schema:
            raise ConfigError(f"data.streaming.encoder {cfg.encoder}: its schema differs from "
                              "data.params features/tasks")
        store = StreamingStore(params["train"], encoder, options, **kwargs)
    else:
        encoder = TabularEncoder(schema)
        store = StreamingStore(params["train"], encoder, options, **kwargs)
        store._num_rows = fit_encoder(encoder, store.frames())
    sample = next(store.frames())
    valid = _load(params["valid"], options)
    test = None if params.get("test") is None else _load(params["test"], options)
    stores = {"train": store, "valid": encode_frame(encoder, valid)}
    if test is not None:
        stores["test"] = encode_frame(encoder, test)
    spec = InputSpec("tabular", encoder.cardinalities, len(encoder.numeric),
                     categorical_names=[e.name for e in encoder.categorical],
                     numeric_names=[e.name for e in encoder.numeric])
    raw = RawSplits(schema, sample, valid, test, options,
                    f"{params['train']} (streamed; checks on its first {len(sample)} rows)")
    return PreparedData(encoder, stores, spec, raw)
