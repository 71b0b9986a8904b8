"""Read CSV / Parquet files (or take a DataFrame) into pandas, with errors that name the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from mtlkit.errors import DataError


class ReadOptions(BaseModel):
    """How to parse a file. ``format='auto'`` picks Parquet for ``.parquet``/``.pq``, else CSV
    (gzip-compressed CSV included). CSV options are ignored for Parquet files."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "csv", "parquet"] = "auto"
    delimiter: str = ","
    header: bool = True
    names: list[str] | None = None
    skipinitialspace: bool = False
    #: strings read as missing (CSV); empty list = nothing is missing (keeps a category spelled NA)
    na_values: list[str] | None = None


def _format(path: Path, options: ReadOptions) -> str:
    if options.format != "auto":
        return options.format
    return "parquet" if path.suffix.lower() in {".parquet", ".pq"} else "csv"


def _csv_kwargs(options: ReadOptions) -> dict:
    kwargs: dict = {
        "sep": options.delimiter,
        "header": 0 if options.header else None,
        "skipinitialspace": options.skipinitialspace,
        "dtype": str,
    }
    if options.names is not None:
        kwargs["names"] = options.names
    if options.na_values is not None:
        kwargs["keep_default_na"] = False
        kwargs["na_values"] = options.na_values
    return kwargs


def read_table(path: str | Path, options: ReadOptions | None = None) -> pd.DataFrame:
    """Read one file. CSV columns are read as strings and typed later against the schema."""
    path = Path(path)
    options = options or ReadOptions()
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    fmt = _format(path, options)
    try:
        if fmt == "parquet":
            frame = pq.read_table(path).to_pandas()
        else:
            frame = pd.read_csv(path, **_csv_kwargs(options))
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataError(f"{path}: could not be read as {fmt}: {exc}") from exc
    if fmt == "csv" and options.names is not None and frame.shape[1] != len(options.names):
        raise DataError(f"{path}: expected {len(options.names)} columns, found {frame.shape[1]}")
    if len(frame) == 0:
        raise DataError(f"{path}: the file has no data rows")
    frame.attrs["source"] = str(path)
    return frame


def iter_table(
    path: str | Path, options: ReadOptions | None = None, chunk_rows: int = 65536
) -> Iterator[pd.DataFrame]:
    """Stream a file in chunks of about ``chunk_rows`` rows with constant memory."""
    path = Path(path)
    options = options or ReadOptions()
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if _format(path, options) == "parquet":
        # constant memory: no threaded read-ahead, and no pre-buffering (with pre_buffer the
        # reader kept its coalesced reads and RSS grew with every row group read)
        reader = pq.ParquetFile(path, pre_buffer=False)
        batches = reader.iter_batches(batch_size=chunk_rows, use_threads=False)
        chunks = (b.to_pandas() for b in batches)
    else:
        try:
            chunks = pd.read_csv(path, chunksize=chunk_rows, **_csv_kwargs(options))
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty") from None
    start = 0
    for frame in chunks:  # errors name the file; row numbers count from the file's first row
        frame.index = pd.RangeIndex(start, start + len(frame))
        frame.attrs["source"] = str(path)
        start += len(frame)
        yield frame


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write CSV or Parquet, chosen by the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
