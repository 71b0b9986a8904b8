"""Per-epoch metrics to ``metrics.csv`` and TensorBoard event files."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends one row per epoch; the CSV header grows if new keys appear."""

    def __init__(self, run_dir: Path | None, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.rows: list[dict[str, Any]] = []
        self.writer = None
        if run_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.run_dir is None:
            return
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        with open(self.run_dir / "metrics.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.writer is not None:
            step = int(row.get("epoch", len(self.rows)))
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def scalar(self, key: str, value: float, step: int) -> None:
        if self.writer is not None and math.isfinite(value):
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
