"""Exact resume: a `mtlkit train` process SIGKILLed mid-epoch and resumed with ``--resume``
ends with the same parameters, results and metrics as an uninterrupted run (CPU, 1 thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml
from tests.conftest import assert_same_parameters, interrupt_and_resume, tiny_config, tiny_table

#: results.json keys that measure time, not the model
TIMING = {"train_seconds", "wall_seconds"}
EPOCHS, BATCH, ROWS = 2, 16, 1000


def _train(config, out, resume: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mtlkit", "train", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(cmd + (["--resume"] if resume else []), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:] + out[-2000:]


def _results(run) -> dict:
    results = json.loads((run / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in TIMING}


@pytest.mark.parametrize("balancer", ["pcgrad"])
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path, balancer):
    csv = tmp_path / "train.csv"
    tiny_table(ROWS).to_csv(csv, index=False)
    cfg = tiny_config(str(csv), epochs=EPOCHS, batch_size=BATCH, patience=None,
                      checkpoint_every_steps=5)
    cfg["model"]["params"]["dropout"] = 0.2  # the global RNG must be restored too
    cfg["balancer"] = {"name": balancer}  # pcgrad: a balancer with its own generator
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg))

    full, killed = tmp_path / "full", tmp_path / "killed"
    _finish(_train(config, full))

    proc = _train(config, killed)
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():  # the first checkpoint (step 5) is written mid-epoch 1
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(ckpt, weights_only=False)["fit"]
    steps_per_epoch = -(-round(ROWS * 0.9) // BATCH)
    assert not state["finished"] and state["step"] < EPOCHS * steps_per_epoch
    assert state["batch"] > 0, "the kill should land mid-epoch"
    assert not (killed / "results.json").exists()

    _finish(_train(config, killed, resume=True))
    a = torch.load(full / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(killed / "model.pt", weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _results(full) == _results(killed)
    metrics = [pd.read_csv(r / "metrics.csv").drop(columns="seconds") for r in (full, killed)]
    pd.testing.assert_frame_equal(*metrics)


def test_kill_after_the_last_step_of_an_epoch_resumes_exactly(tmp_path, monkeypatch):
    """The in-loop checkpoint of an epoch's last batch precedes the epoch-end bookkeeping."""
    from mtlkit import api

    csv = tmp_path / "train.csv"
    tiny_table(320).to_csv(csv, index=False)
    steps_per_epoch = -(-round(320 * 0.9) // 32)  # 9
    cfg = tiny_config(str(csv), epochs=2, patience=None, checkpoint_every_steps=steps_per_epoch)
    full = api.train(cfg, out=tmp_path / "full")
    # killed right after the epoch's last batch, before the epoch-end evaluation
    resumed = interrupt_and_resume(monkeypatch, cfg, tmp_path / "killed",
                                   lambda saved: saved["fit"]["batch"] == steps_per_epoch)
    assert_same_parameters(full.model, resumed.model)
    metrics = [pd.read_csv(r / "metrics.csv").drop(columns="seconds")
               for r in (tmp_path / "full", tmp_path / "killed")]
    pd.testing.assert_frame_equal(*metrics)
