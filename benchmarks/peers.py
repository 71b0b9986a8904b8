"""Peer libraries' MMoE on the real Census-Income data, timed in their own virtual environment.

The peers (torch-rechub, DeepCTR-Torch, LibMTL) are installed from PyPI into a separate, clean
virtual environment (default ``.venv-peers`` at the repository root, git-ignored) with
``pip install --no-deps`` and their real runtime needs added by hand, under a constraint that
keeps torch at 2.13.0 (their declared requirements would otherwise let pip swap torch).

Every measurement runs in a fresh child process of that environment (this very file, in child
mode: it imports nothing of mtlkit), so peak RSS (``VmHWM``) is per configuration.  The data
are mtlkit's own encoded census arrays (:func:`export_census`), so every library sees the same
rows, ids and standardised numerics:

* census MMoE sizes: embedding dim 4 for each of the 31 categorical fields, the 7 numeric fields as
  dense inputs (input width 131), 8 experts x 16 units, towers of 8, batch 1024, Adam lr 1e-3,
  BCE on both tasks (income > 50K, never married);
* :func:`run_peers` -> training samples/s (full epochs after a warm-up), peak RSS and test AUC, for
  each peer's own MMoE class, driven (a) by a plain loop over shuffled tensor slices and (b) by the
  peer's documented trainer (rechub ``MTLTrainer``, DeepCTR ``model.fit``), at 1 and 2 threads;
* :func:`run_libmtl_step_times` -> per-step time of LibMTL's EW / PCGrad / MGDA / CAGrad on its own
  MMoE architecture with the census sizes.

CLI: ``python benchmarks/peers.py [--epochs 1] [--threads 1 2] [--libmtl]`` prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".venv-peers"
DEFAULT_CONFIG = ROOT / "configs" / "census-income" / "mmoe.yaml"
TORCH_SPEC = "torch==2.13.0"
#: pinned peer releases, installed with --no-deps
PEER_SPECS = ["torch-rechub==0.9.0", "deepctr-torch==0.3.0", "LibMTL==1.1.5"]
#: what the peers really import at run time (found by importing them); none of it needs torch
RUNTIME_DEPS = ["numpy", "pandas", "scikit-learn", "scipy", "tqdm"]
#: the census MMoE configuration shared by every library
SIZES = {
    "embedding_dim": 4,
    "num_experts": 8,
    "expert_units": 16,
    "tower_units": 8,
    "batch_size": 1024,
    "lr": 1e-3,
}
TASKS = ("income", "marital")
WARMUP_STEPS = 20
LIBMTL_METHODS = ("ew", "pcgrad", "mgda", "cagrad", "nash_mtl")
#: how each peer's MMoE can be driven (see run_peers)
PEER_MODES = {"torch-rechub": ("loop", "trainer"), "deepctr-torch": ("loop", "trainer"),
              "LibMTL": ("trainer",)}
_MARKER = "mtlkit-peers.json"
_RESULT_TAG = "PEER-RESULT "


# --------------------------------------------------------------------------- parent side


def ensure_venv(venv: str | Path = DEFAULT_VENV, quiet: bool = True) -> Path:
    """Create (once) the peers' virtual environment; return its python executable.

    A marker file records what was installed; a venv whose marker matches is reused as is.
    """
    venv = Path(venv)
    python = venv / "bin" / "python"
    spec = {"torch": TORCH_SPEC, "peers": PEER_SPECS, "deps": RUNTIME_DEPS}
    marker = venv / _MARKER
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == spec:
        return python
    q = ["-q"] if quiet else []
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text(TORCH_SPEC + "\n")
    pip = [str(python), "-m", "pip", "install", *q, "-c", str(constraints)]
    subprocess.run([*pip, TORCH_SPEC], check=True)
    subprocess.run([*pip, "--no-deps", *PEER_SPECS], check=True)
    subprocess.run([*pip, *RUNTIME_DEPS], check=True)
    version = subprocess.run(
        [str(python), "-c", "import torch; print(torch.__version__)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if not version.startswith(TORCH_SPEC.split("==")[1]):
        raise RuntimeError(f"peer venv {venv} ended up with torch {version}, expected {TORCH_SPEC}")
    marker.write_text(json.dumps(spec))
    return python


def export_census(npz_path: str | Path, config: str | Path = DEFAULT_CONFIG,
                  train_rows: int | None = None) -> Path:
    """Save mtlkit's encoded census train/test arrays for the peer processes (``train_rows``:
    keep only the first N training rows, for smoke tests).

    Keys: ``{train,test}_cat`` int64 [N, 31] (per-field ids, 0 = out of vocabulary),
    ``{train,test}_num`` float32 [N, 7] (standardised), ``{train,test}_y`` float32 [N, 2]
    (income, marital), ``{train,test}_education`` float32 [N] (education >= college, the third
    census label, used only for 3-task balancer timings), ``cardinalities`` int64 [31].
    """
    import numpy as np

    from mtlkit.api import load_data
    from mtlkit.config import load_config
    from mtlkit.data.datasets.census import TASKS as CENSUS_TASKS

    data = load_data(load_config(config))
    if data.input_spec.num_numeric != 7 or len(data.input_spec.cardinalities) != 31:
        raise ValueError(f"{config}: expected 31 categorical + 7 numeric census inputs, got "
                         f"{data.input_spec}")
    arrays = {"cardinalities": np.asarray(data.input_spec.cardinalities, dtype=np.int64)}
    education = CENSUS_TASKS["education"]
    for split in ("train", "test"):
        store = data.stores[split]
        missing = [t for t in TASKS if t not in store.labels]
        if missing:
            raise ValueError(f"{config}: {split} split lacks task(s) {missing}")
        arrays[f"{split}_cat"] = store.features["categorical"].numpy().astype(np.int64)
        arrays[f"{split}_num"] = store.features["numeric"].numpy().astype(np.float32)
        arrays[f"{split}_y"] = np.stack([store.labels[t].numpy() for t in TASKS], 1).astype(
            np.float32)
        frame = getattr(data.raw, split)
        arrays[f"{split}_education"] = (
            frame[education.column].isin(education.positive_values).to_numpy(np.float32))
    if train_rows is not None:
        for key in [k for k in arrays if k.startswith("train_")]:
            arrays[key] = arrays[key][:train_rows]
    npz_path = Path(npz_path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(npz_path, **arrays)
    return npz_path


def _run_child(python: Path, job: dict, threads: int, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    job = {**job, "threads": threads}
    try:
        proc = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "_child", json.dumps(job)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {**job, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def _mark_fastest(rows: list[dict], key: tuple[str, ...], metric: str, higher: bool) -> None:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row.get(metric) is not None:
            groups.setdefault(tuple(row.get(k) for k in key), []).append(row)
    for group in groups.values():
        best = (max if higher else min)(group, key=lambda r: r[metric])
        for row in group:
            row["fastest"] = row is best


def run_peers(
    npz_path: str | Path,
    epochs: int = 1,
    threads: Sequence[int] = (1, 2),
    venv: str | Path = DEFAULT_VENV,
    peers: Sequence[str] = tuple(PEER_MODES),
    modes: Sequence[str] = ("loop", "trainer"),
    seed: int = 0,
    timeout: float = 1800,
) -> list[dict]:
    """Train each peer's MMoE for ``epochs`` full epochs per (peer, mode, threads); one row each.

    Row keys: library, version, mode ("loop": plain loop over shuffled tensor slices; "trainer":
    the peer's documented trainer; LibMTL has only "trainer", the loop body of its ``Trainer``
    with equal weights), threads, epochs, samples, epoch_seconds (list),
    samples_per_s (all timed epochs), peak_rss_mb, rss_before_train_mb, test_auc {task: auc},
    fastest (True on the faster thread count of each library+mode), or error.
    """
    python = ensure_venv(venv)
    rows = []
    for peer in peers:
        for mode in (m for m in modes if m in PEER_MODES[peer]):
            for t in threads:
                job = {"kind": "mmoe", "library": peer, "mode": mode, "npz": str(npz_path),
                       "epochs": epochs, "seed": seed}
                rows.append(_run_child(python, job, t, timeout))
    _mark_fastest(rows, ("library", "mode"), "samples_per_s", higher=True)
    return rows


def run_libmtl_step_times(
    npz_path: str | Path,
    methods: Sequence[str] = LIBMTL_METHODS,
    num_tasks: Sequence[int] = (2, 3),
    threads: Sequence[int] = (1, 2),
    steps: int = 50,
    venv: str | Path = DEFAULT_VENV,
    seed: int = 0,
    timeout: float = 900,
) -> list[dict]:
    """Per-step time of LibMTL weighting methods on LibMTL's MMoE with the census sizes.

    One step = LibMTL ``Trainer.train``'s loop body (forward, per-task BCE, ``model.backward``
    of the weighting, Adam step) on pre-sliced batches of 1024 (no data-loader cost).
    ``num_tasks`` 2 = income + marital; 3 adds education >= college. Row keys: library, method,
    num_tasks, threads, steps, ms_per_step (median), ms_per_step_mean, peak_rss_mb, note,
    fastest, or error (e.g. a method LibMTL 1.1.5 lacks or crashes on).
    """
    python = ensure_venv(venv)
    rows = []
    for method in methods:
        for n in num_tasks:
            for t in threads:
                job = {"kind": "libmtl", "library": "LibMTL", "method": method, "num_tasks": n,
                       "npz": str(npz_path), "steps": steps, "seed": seed}
                rows.append(_run_child(python, job, t, timeout))
    _mark_fastest(rows, ("method", "num_tasks"), "ms_per_step", higher=False)
    return rows


def format_peer_table(rows: list[dict]) -> str:
    head = (f"{'library':<14} {'mode':<8} {'thr':>3} {'samples/s':>10} {'peak RSS MB':>11} "
            + " ".join(f"{'AUC ' + t:>12}" for t in TASKS))
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['library']:<14} {r['mode']:<8} {r['threads']:>3}  ERROR {r['error']}")
            continue
        aucs = " ".join(f"{r['test_auc'][t]:>12.4f}" for t in TASKS)
        star = "*" if r.get("fastest") else " "
        lines.append(f"{r['library']:<14} {r['mode']:<8} {r['threads']:>3} "
                     f"{r['samples_per_s']:>10,.0f}{star}{r['peak_rss_mb']:>11.0f} {aucs}")
    lines.append("* = faster thread count for that library+mode")
    return "\n".join(lines)


def format_libmtl_table(rows: list[dict]) -> str:
    head = f"{'LibMTL method':<14} {'tasks':>5} {'thr':>3} {'ms/step':>9} {'peak RSS MB':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['method']:<14} {r['num_tasks']:>5} {r['threads']:>3}  "
                         f"ERROR {r['error']}")
            continue
        star = "*" if r.get("fastest") else " "
        note = f"  ({r['note']})" if r.get("note") else ""
        lines.append(f"{r['method']:<14} {r['num_tasks']:>5} {r['threads']:>3} "
                     f"{r['ms_per_step']:>9.2f}{star}{r['peak_rss_mb']:>11.0f}{note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", help="census arrays (default: exported now into a temp dir)")
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--venv", default=str(DEFAULT_VENV))
    ap.add_argument("--peers", nargs="+", default=list(PEER_MODES), choices=list(PEER_MODES))
    ap.add_argument("--modes", nargs="+", default=["loop", "trainer"])
    ap.add_argument("--libmtl", action="store_true", help="also time LibMTL weighting steps")
    ap.add_argument("--libmtl-only", action="store_true")
    ap.add_argument("--steps", type=int, default=50, help="timed LibMTL steps per method")
    ap.add_argument("--json", help="write all rows to this file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(args.npz) if args.npz else export_census(Path(tmp) / "census.npz", args.config)
        if args.npz and not npz.exists():
            export_census(npz, args.config)
        out: dict[str, list[dict]] = {}
        if not args.libmtl_only:
            out["peers"] = run_peers(npz, args.epochs, args.threads, args.venv, args.peers,
                                     args.modes)
            print(format_peer_table(out["peers"]))
        if args.libmtl or args.libmtl_only:
            out["libmtl"] = run_libmtl_step_times(npz, threads=args.threads, steps=args.steps,
                                                  venv=args.venv)
            print(format_libmtl_table(out["libmtl"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


# --------------------------------------------------------------------------- child side
# Runs inside the peers' venv: numpy, torch and the peers only, never mtlkit.


def _install_stubs() -> None:
    """Stand-ins for modules the peers import but must not use here.

    * ``requests``: DeepCTR-Torch imports it (undeclared) and, at import, starts a thread that asks
      PyPI for newer releases. The stub answers "not OK" at once: no network, no message.
    * ``torchvision.models.utils``: LibMTL's ResNet module imports ``load_state_dict_from_url``
      from there; that module no longer exists in torchvision (and torchvision is not installed).
    """
    import types

    import torch

    requests = types.ModuleType("requests")
    requests.codes = types.SimpleNamespace(ok=200)
    requests.get = lambda *a, **k: types.SimpleNamespace(status_code=599, text="{}")
    sys.modules["requests"] = requests
    tv = types.ModuleType("torchvision")
    tv_models = types.ModuleType("torchvision.models")
    tv_utils = types.ModuleType("torchvision.models.utils")
    tv_utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url
    tv.models, tv_models.utils = tv_models, tv_utils
    sys.modules.update({"torchvision": tv, "torchvision.models": tv_models,
                        "torchvision.models.utils": tv_utils})


def _rss_mb() -> float:
    """Peak RSS of this process (MB): ``VmHWM``, the high-water mark of its own memory map.
    Not ``ru_maxrss``: Linux folds the parent's RSS at fork into a child's ``ru_maxrss`` at
    exec, so every child reported at least its parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0  # kB
    return float("nan")


def _auc(y, p) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    return {t: float(roc_auc_score(y[:, i], p[:, i])) for i, t in enumerate(TASKS)}


def _snapshot(model, optimizer):
    import copy

    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def _restore(model, optimizer, snap) -> None:
    model.load_state_dict(snap[0])
    optimizer.load_state_dict(snap[1])


def _slice_loop(step, tensors: dict, n: int, batch: int, gen, max_steps: int | None = None) -> int:
    """One shuffled pass: gather every tensor once with one permutation, then step on slices."""
    import torch

    perm = torch.randperm(n, generator=gen)
    shuffled = {k: v.index_select(0, perm) for k, v in tensors.items()}
    steps = 0
    for lo in range(0, n, batch):
        step({k: v[lo:lo + batch] for k, v in shuffled.items()})
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    return steps


def _mmoe_rechub(d, job):
    import numpy as np
    import torch
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    cards, n_num = d["cardinalities"], d["train_num"].shape[1]
    cat_names = [f"c{i}" for i in range(len(cards))]
    num_names = [f"n{j}" for j in range(n_num)]
    features = [SparseFeature(c, int(k), embed_dim=SIZES["embedding_dim"])
                for c, k in zip(cat_names, cards, strict=True)]
    features += [DenseFeature(c) for c in num_names]
    model = MMOE(features, ["classification"] * len(TASKS), n_expert=SIZES["num_experts"],
                 expert_params={"dims": [SIZES["expert_units"]]},
                 tower_params_list=[{"dims": [SIZES["tower_units"]]}] * len(TASKS))

    def columns(split):  # rechub's input: a dict of per-feature 1-D arrays
        cols = {c: d[f"{split}_cat"][:, i] for i, c in enumerate(cat_names)}
        cols |= {c: d[f"{split}_num"][:, j] for j, c in enumerate(num_names)}
        return {k: np.ascontiguousarray(v) for k, v in cols.items()}

    x_train, y_train = columns("train"), d["train_y"]
    x_test = {k: torch.from_numpy(v) for k, v in columns("test").items()}

    def predict():
        model.eval()
        with torch.no_grad():
            out = [model({k: v[lo:lo + 16384] for k, v in x_test.items()})
                   for lo in range(0, len(d["test_y"]), 16384)]
        model.train()
        return torch.cat(out).numpy()

    if job["mode"] == "loop":
        opt = torch.optim.Adam(model.parameters(), lr=SIZES["lr"])
        bce = torch.nn.BCELoss()
        tensors = {k: torch.from_numpy(v) for k, v in x_train.items()}
        tensors["__y"] = torch.from_numpy(y_train)

        def step(b):
            y = b.pop("__y")
            pred = model(b)
            loss = sum(bce(pred[:, i], y[:, i]) for i in range(len(TASKS))) / len(TASKS)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def epoch(gen, max_steps=None):
            return _slice_loop(step, tensors, len(y_train), SIZES["batch_size"], gen, max_steps)
    else:  # the documented path: DataGenerator -> DataLoader, MTLTrainer
        tmp = tempfile.mkdtemp()
        trainer = MTLTrainer(model, ["classification"] * len(TASKS),
                             optimizer_params={"lr": SIZES["lr"], "weight_decay": 0.0},
                             n_epoch=job["epochs"], device="cpu", model_path=tmp)
        opt = trainer.optimizer
        x_np_test = columns("test")
        loader = DataGenerator(x_train, y_train).generate_dataloader(
            x_val=x_np_test, y_val=d["test_y"], x_test=x_np_test, y_test=d["test_y"],
            batch_size=SIZES["batch_size"])[0]
        warm = DataGenerator({k: v[:WARMUP_STEPS * SIZES["batch_size"]] for k, v in
                              x_train.items()}, y_train[:WARMUP_STEPS * SIZES["batch_size"]])
        warm_loader = warm.generate_dataloader(x_val=x_np_test, y_val=d["test_y"],
                                               x_test=x_np_test, y_test=d["test_y"],
                                               batch_size=SIZES["batch_size"])[0]

        def epoch(gen, max_steps=None):
            trainer.train_one_epoch(warm_loader if max_steps else loader)
            return 0

    return model, opt, epoch, predict, version("torch-rechub")


def _mmoe_deepctr(d, job):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE

    cards, n_num = d["cardinalities"], d["train_num"].shape[1]
    cat_names = [f"c{i}" for i in range(len(cards))]
    num_names = [f"n{j}" for j in range(n_num)]
    columns = [SparseFeat(c, int(k), embedding_dim=SIZES["embedding_dim"])
               for c, k in zip(cat_names, cards, strict=True)]
    columns += [DenseFeat(c, 1) for c in num_names]
    model = MMOE(columns, num_experts=SIZES["num_experts"],
                 expert_dnn_hidden_units=(SIZES["expert_units"],), gate_dnn_hidden_units=(),
                 tower_dnn_hidden_units=(SIZES["tower_units"],),
                 task_types=("binary",) * len(TASKS), task_names=TASKS, device="cpu")
    order = [model.feature_index[c] for c in cat_names + num_names]
    if order != [(i, i + 1) for i in range(len(order))]:
        raise RuntimeError(f"unexpected DeepCTR feature_index {model.feature_index}")
    opt = torch.optim.Adam(model.parameters(), lr=SIZES["lr"])
    model.compile(opt, loss=["binary_crossentropy"] * len(TASKS))
    # DeepCTR's model input: one float matrix, columns in feature_index order
    x_train = torch.from_numpy(np.concatenate([d["train_cat"].astype(np.float32),
                                               d["train_num"]], 1))
    x_test = torch.from_numpy(np.concatenate([d["test_cat"].astype(np.float32),
                                              d["test_num"]], 1))
    y_train = d["train_y"]

    def predict():
        model.eval()
        with torch.no_grad():
            out = [model(x_test[lo:lo + 16384]) for lo in range(0, len(x_test), 16384)]
        model.train()
        return torch.cat(out).numpy()

    if job["mode"] == "loop":
        tensors = {"x": x_train, "y": torch.from_numpy(y_train)}

        def step(b):
            pred = model(b["x"])
            loss = sum(F.binary_cross_entropy(pred[:, i], b["y"][:, i])
                       for i in range(len(TASKS)))
            opt.zero_grad()
            loss.backward()
            opt.step()

        def epoch(gen, max_steps=None):
            return _slice_loop(step, tensors, len(y_train), SIZES["batch_size"], gen, max_steps)
    else:  # the documented path: model.fit on a dict of per-feature arrays
        x_dict = {c: d["train_cat"][:, i] for i, c in enumerate(cat_names)}
        x_dict |= {c: d["train_num"][:, j] for j, c in enumerate(num_names)}
        n_warm = WARMUP_STEPS * SIZES["batch_size"]

        def epoch(gen, max_steps=None):
            if max_steps:
                model.fit({k: v[:n_warm] for k, v in x_dict.items()}, y_train[:n_warm],
                          batch_size=SIZES["batch_size"], epochs=1, verbose=0)
            else:
                model.fit(dict(x_dict), y_train, batch_size=SIZES["batch_size"], epochs=1,
                          verbose=0)
            return 0

    return model, opt, epoch, predict, version("deepctr-torch")


def _child_mmoe(job: dict) -> dict:
    import time

    import numpy as np
    import torch

    d = dict(np.load(job["npz"]))
    torch.manual_seed(job["seed"])
    build = {"torch-rechub": _mmoe_rechub, "deepctr-torch": _mmoe_deepctr,
             "LibMTL": _mmoe_libmtl}[job["library"]]
    model, opt, epoch, predict, version = build(d, job)
    gen = torch.Generator().manual_seed(job["seed"])
    snap = _snapshot(model, opt)
    epoch(gen, max_steps=WARMUP_STEPS)  # warm-up, then back to the initial weights
    _restore(model, opt, snap)
    rss_before = _rss_mb()
    seconds = []
    for _ in range(job["epochs"]):
        t0 = time.perf_counter()
        epoch(gen)
        seconds.append(time.perf_counter() - t0)
    n = len(d["train_y"])
    return {**job, "version": version, "samples": n * job["epochs"], "epoch_seconds": seconds,
            "samples_per_s": n * job["epochs"] / sum(seconds), "peak_rss_mb": _rss_mb(),
            "rss_before_train_mb": rss_before, "test_auc": _auc(d["test_y"], predict()),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def _libmtl_trainer(d: dict, names: Sequence[str], method: str, seed: int,
                    cagrad_any_t: bool = False):
    """LibMTL 1.1.5's ``Trainer`` with its ``MMoE`` at the census sizes, adapted (never edited)
    to run here. ``trainer.train_step(loader)`` is one step of its training loop.
    ``cagrad_any_t``: CAGrad with the task count in place of upstream's hard-coded 3."""
    import contextlib
    import io
    import random

    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from LibMTL import Trainer
    from LibMTL import weighting as W
    from LibMTL._record import _PerformanceMeter
    from LibMTL.architecture import MMoE
    from LibMTL.loss import AbsLoss
    from LibMTL.metrics import AbsMetric

    class CAGradAnyT(W.CAGrad):
        """LibMTL 1.1.5's CAGrad, whose objective hard-codes 3 tasks (``x.reshape(1,3)``),
        with ``3`` replaced by the task count; everything else as upstream."""

        def backward(self, losses, **kwargs):
            from scipy.optimize import minimize

            calpha, rescale = kwargs["calpha"], kwargs["rescale"]
            self._compute_grad_dim()
            grads = self._compute_grad(losses, mode="backward")
            GG = torch.matmul(grads, grads.t()).cpu()
            g0_norm = (GG.mean() + 1e-8).sqrt()
            x_start = np.ones(self.task_num) / self.task_num
            bnds = tuple((0, 1) for _ in x_start)
            cons = {"type": "eq", "fun": lambda x: 1 - sum(x)}
            A, b = GG.numpy(), x_start.copy()
            c = (calpha * g0_norm + 1e-8).item()
            T = self.task_num

            def objfn(x):
                return (x.reshape(1, T).dot(A).dot(b.reshape(T, 1))
                        + c * np.sqrt(x.reshape(1, T).dot(A).dot(x.reshape(T, 1)) + 1e-8)).sum()

            w_cpu = minimize(objfn, x_start, bounds=bnds, constraints=cons).x
            ww = torch.Tensor(w_cpu).to(self.device)
            gw = (grads * ww.view(-1, 1)).sum(0)
            lmbda = c / (gw.norm() + 1e-8)
            g = grads.mean(0) + lmbda * gw
            new_grads = {0: g, 1: g / (1 + calpha**2), 2: g / (1 + calpha)}[rescale]
            self._reset_grad(new_grads)
            return w_cpu

    weightings = {"ew": (W.EW, {}), "pcgrad": (W.PCGrad, {}),
                  "mgda": (W.MGDA, {"mgda_gn": "none"}),
                  "cagrad": (W.CAGrad, {"calpha": 0.5, "rescale": 1})}
    if method == "nash_mtl":
        raise NotImplementedError("LibMTL 1.1.5 (the latest release on PyPI) has no Nash-MTL; "
                                  "it exists only in LibMTL's unreleased repository code")
    weighting, weight_args = weightings[method]
    if method == "cagrad" and cagrad_any_t:
        weighting = CAGradAnyT
    cards = torch.as_tensor(d["cardinalities"])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), cards.cumsum(0)[:-1]])
    emb_dim, n_num = SIZES["embedding_dim"], d["train_num"].shape[1]
    in_dim = len(cards) * emb_dim + n_num

    class CensusMMoE(MMoE):
        """LibMTL's MMoE (dense inputs) behind one shared embedding table for the 31 fields;
        the embedding counts as a shared parameter for the gradient methods."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.embedding = nn.Embedding(int(cards.sum()), emb_dim)
            self.register_buffer("offsets", offsets)

        def forward(self, inputs, task_name=None):
            cat, num = inputs
            x = torch.cat([self.embedding(cat + self.offsets).flatten(1), num], 1)
            return super().forward(x, task_name)

        def get_share_params(self):
            return [*self.embedding.parameters(), *self.experts_shared.parameters()]

        def zero_grad_share_params(self):
            # upstream relies on pre-2.0 torch, where zero_grad() zeroed .grad in place; since
            # torch 2.0 it sets .grad to None and LibMTL's _reset_grad then fails on .grad.data
            self.embedding.zero_grad(set_to_none=False)
            self.experts_shared.zero_grad(set_to_none=False)

    class Expert(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(in_dim, SIZES["expert_units"]), nn.ReLU())

        def forward(self, x):
            return self.net(x)

    class BCELoss(AbsLoss):
        def compute_loss(self, pred, gt):
            return F.binary_cross_entropy_with_logits(pred.squeeze(-1), gt)

    class NoMetric(AbsMetric):
        def update_fun(self, pred, gt):
            pass

        def score_fun(self):
            return [0.0]

    class CpuTrainer(Trainer):
        """LibMTL's Trainer with a CPU device (upstream hard-codes ``cuda:0``) and Python 3's
        ``next(iterator)`` (upstream calls ``iterator.next()``); ``train_step`` is the body of
        upstream ``Trainer.train``'s batch loop minus the per-batch metric bookkeeping."""

        def __init__(self, task_dict, weighting, architecture, encoder_class, decoders,
                     rep_grad, multi_input, optim_param, scheduler_param, **kwargs):
            nn.Module.__init__(self)
            self.device = torch.device("cpu")
            self.kwargs = kwargs
            self.task_dict = task_dict
            self.task_num = len(task_dict)
            self.task_name = list(task_dict.keys())
            self.rep_grad = rep_grad
            self.multi_input = multi_input
            self._prepare_model(weighting, architecture, encoder_class, decoders)
            self._prepare_optimizer(optim_param, scheduler_param)
            self.meter = _PerformanceMeter(self.task_dict, self.multi_input)

        def _process_data(self, loader):
            try:
                return next(loader[1])
            except StopIteration:
                loader[1] = iter(loader[0])
                return next(loader[1])

        def train_step(self, loader):
            inputs, gts = self._process_data(loader)
            preds = self.process_preds(self.model(inputs))
            losses = self._compute_loss(preds, gts)
            self.optimizer.zero_grad()
            w = self.model.backward(losses, **self.kwargs["weight_args"])
            self.optimizer.step()
            return w

    torch.manual_seed(seed)
    random.seed(seed)  # PCGrad shuffles with the global `random`
    task_dict = {t: {"metrics": ["none"], "metrics_fn": NoMetric(), "loss_fn": BCELoss(),
                     "weight": [1]} for t in names}
    decoders = nn.ModuleDict({t: nn.Sequential(
        nn.Linear(SIZES["expert_units"], SIZES["tower_units"]), nn.ReLU(),
        nn.Linear(SIZES["tower_units"], 1)) for t in names})
    with contextlib.redirect_stdout(io.StringIO()):  # count_parameters prints
        trainer = CpuTrainer(
            task_dict, weighting, CensusMMoE, Expert, decoders, rep_grad=False,
            multi_input=False, optim_param={"optim": "adam", "lr": SIZES["lr"]},
            scheduler_param=None, weight_args=weight_args,
            arch_args={"img_size": [in_dim], "num_experts": [SIZES["num_experts"]]})
    return trainer


def _libmtl_batches(d: dict, y, names: Sequence[str], perm) -> list:
    """LibMTL's batch format over one shuffled pass: ((cat, num), {task: labels})."""
    import torch

    cat = torch.from_numpy(d["train_cat"]).index_select(0, perm)
    num = torch.from_numpy(d["train_num"]).index_select(0, perm)
    y = torch.from_numpy(y).index_select(0, perm)
    bs = SIZES["batch_size"]
    return [((cat[lo:lo + bs], num[lo:lo + bs]), {t: y[lo:lo + bs, i] for i, t in
                                                   enumerate(names)})
            for lo in range(0, len(y), bs)]


def _mmoe_libmtl(d, job):
    """LibMTL's MMoE trained with equal weights by (the loop body of) its own Trainer."""
    import torch

    trainer = _libmtl_trainer(d, TASKS, "ew", job["seed"])
    model = trainer.model
    x_test = (torch.from_numpy(d["test_cat"]), torch.from_numpy(d["test_num"]))

    def predict():
        model.eval()
        with torch.no_grad():
            out = []
            for lo in range(0, len(d["test_y"]), 16384):
                preds = model(tuple(x[lo:lo + 16384] for x in x_test))
                out.append(torch.cat([torch.sigmoid(preds[t]) for t in TASKS], 1))
        model.train()
        return torch.cat(out).numpy()

    def epoch(gen, max_steps=None):
        perm = torch.randperm(len(d["train_y"]), generator=gen)
        batches = _libmtl_batches(d, d["train_y"], TASKS, perm)[:max_steps]
        loader = [batches, iter(batches)]
        for _ in batches:
            trainer.train_step(loader)
        return len(batches)

    return model, trainer.optimizer, epoch, predict, version("LibMTL")


def _child_libmtl(job: dict) -> dict:
    import statistics
    import time

    import numpy as np
    import torch

    method, n_tasks = job["method"], job["num_tasks"]
    d = dict(np.load(job["npz"]))
    names = [*TASKS, "education"][:n_tasks]
    y_train = np.concatenate([d["train_y"], d["train_education"][:, None]], 1)[:, :n_tasks]
    trainer = _libmtl_trainer(d, names, method, job["seed"])
    gen = torch.Generator().manual_seed(job["seed"])
    batches = _libmtl_batches(d, y_train, names, torch.randperm(len(y_train), generator=gen))
    batches = [b for b in batches if len(b[1][names[0]]) == SIZES["batch_size"]]  # full only
    loader = [batches, iter(batches)]
    note = ""
    if method == "cagrad" and n_tasks != 3:
        try:
            trainer.train_step(loader)
        except ValueError as exc:  # x.reshape(1, 3) on a 2-task weight vector
            note = (f"stock CAGrad fails with {n_tasks} tasks ({exc}); timed a subclass with "
                    "the task count in place of its hard-coded 3")
            trainer = _libmtl_trainer(d, names, method, job["seed"], cagrad_any_t=True)
    for _ in range(WARMUP_STEPS):
        trainer.train_step(loader)
    times = []
    for _ in range(job["steps"]):
        t0 = time.perf_counter()
        trainer.train_step(loader)
        times.append(time.perf_counter() - t0)
    return {**job, "version": version("LibMTL"), "ms_per_step": 1e3 * statistics.median(times),
            "ms_per_step_mean": 1e3 * statistics.fmean(times), "peak_rss_mb": _rss_mb(),
            "note": note, "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def _child_main(job: dict) -> None:
    import torch

    torch.set_num_threads(job["threads"])
    _install_stubs()
    try:
        result = (_child_mmoe if job["kind"] == "mmoe" else _child_libmtl)(job)
    except Exception as exc:  # reported as a row, not a crash of the whole benchmark
        result = {**job, "error": f"{type(exc).__name__}: {exc}"}
    print(_RESULT_TAG + json.dumps(result), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        _child_main(json.loads(sys.argv[2]))
    else:
        main()
