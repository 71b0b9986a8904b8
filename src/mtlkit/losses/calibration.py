"""Re-calibration of predictions made by a model trained on negative-down-sampled data.

Keeping every positive and a fraction ``w`` of the negatives multiplies the odds by ``1/w``;
the full-data probability is ``q = p / (p + (1 − p) / w)``, i.e. a logit shift by ``log w``
(He et al., "Practical lessons from predicting clicks on ads at Facebook", ADKDD 2014).
"""

from __future__ import annotations

import torch

from mtlkit.errors import ConfigError


def recalibrate(p: torch.Tensor, rate: float) -> torch.Tensor:
    """``q = p / (p + (1 − p) / rate)``, written as ``p·w / (p·w + 1 − p)`` (exact at 0 and 1)."""
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"negative sampling rate must be in (0, 1], got {rate}")
    pw = p * rate
    return pw / (pw + (1.0 - p))


class NegativeSamplingCalibration:
    """``calibrate(predictions) -> predictions``: re-calibrates each sampled task.

    ``rates`` maps task name → kept fraction of its negatives. Other tasks pass through.
    """

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = dict(rates)
        for task, rate in self.rates.items():
            if not 0.0 < rate <= 1.0:
                raise ConfigError(f"task {task!r}: negative sampling rate must be in (0, 1], "
                                  f"got {rate}")

    def __call__(self, predictions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        missing = sorted(set(self.rates) - set(predictions))
        if missing:
            raise KeyError(f"calibration for task(s) {missing} but predictions hold "
                           f"{sorted(predictions)}")
        return {name: recalibrate(p, self.rates[name]) if name in self.rates else p
                for name, p in predictions.items()}

    def __repr__(self) -> str:
        return f"NegativeSamplingCalibration({self.rates})"


def chain(*steps):
    """Compose calibrations left to right, skipping ``None``; None when there is none."""
    steps = [s for s in steps if s is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def calibrate(predictions: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for step in steps:
            predictions = step(predictions)
        return predictions

    return calibrate
