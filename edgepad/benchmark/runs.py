"""Data and training of the benchmark matrix: the generated benchmark (reused by data hash), protocol rows, one
training run per (preset, training rows, seed), resumable and cached by its run key."""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from edgepad.benchmark.dataset import generate
from edgepad.benchmark.matrix import PRESET_KEYS, MatrixConfig, dataset_config, data_hash, deep_merge, meta_hash, sha
from edgepad.config import from_mapping
from edgepad.errors import DatasetError

log = logging.getLogger(__name__)


def ensure_data(cfg: MatrixConfig, out: Path, data_dir: Path | None = None,
                progress: Callable[[str], None] | None = None) -> tuple[Path, str, dict]:
    """Generate the benchmark (or reuse a folder with the same data hash).

    Returns:
        ``(root, data hash, meta.json content)``.

    Raises:
        DatasetError: ``data_dir`` holds a benchmark generated with another config.
    """
    h = data_hash(cfg.data)
    root = Path(data_dir) if data_dir is not None else Path(out) / f"data-{h[:12]}"
    meta_path = root / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta_hash(meta) == h:
            log.info("reusing benchmark data %s (data hash %s)", root, h[:12])
            return root, h, meta
        if data_dir is not None:
            raise DatasetError(f"{root} was generated with another config (data hash {meta_hash(meta)[:12]}, the "
                               f"matrix needs {h[:12]}); pass another --data folder or none")
    if progress:
        progress(f"generating benchmark data into {root} (data hash {h[:12]})")
    t0 = time.perf_counter()
    meta = generate(root, dataset_config(cfg.data), workers=cfg.data_workers)
    meta.pop("timing", None)
    log.info("generated %d videos in %.1f s", len(meta["videos"]), time.perf_counter() - t0)
    return root, h, meta


def protocol_rows(root: Path, protocol: str) -> list[list[str]]:
    """Rows of ``PROTOCOL-<protocol>.csv`` (as lists of strings)."""
    path = Path(root) / "protocols" / f"PROTOCOL-{protocol}.csv"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    with path.open(newline="", encoding="utf-8") as f:
        return [r for r in csv.reader(f) if r]


def train_rows_hash(root: Path, protocol: str, folds: Sequence[str] = ("train", "dev")) -> str:
    """Hash of a protocol's training + dev rows: protocols with the same training data share a trained model."""
    rows = [r for r in protocol_rows(root, protocol) if r[-1] in folds]
    return sha(rows)


def train_mapping(cfg: MatrixConfig, preset: str, seed: int, root: Path, protocol: str, run_dir: Path) -> dict:
    """The resolved ``TrainConfig`` mapping of one run (benchmark-only preset keys removed).

    The model's crop margin (``inputs.margin``) is the data's (``data.margin``) unless the matrix names one; a
    named margin that differs from the data's is refused when training starts (ConfigError ``key="margin"``).
    """
    m = deep_merge(cfg.train, {k: v for k, v in cfg.models[preset].items() if k not in PRESET_KEYS})
    m = deep_merge(m, {"data": {"kind": "synthbench", "root": str(root), "protocol": protocol},
                       "seed": int(seed), "out": str(run_dir), "tensorboard": False})
    inputs = m.get("inputs")
    if not (isinstance(inputs, Mapping) and "margin" in inputs):
        m["inputs"] = {**(inputs if isinstance(inputs, Mapping) else {}), "margin": dataset_config(cfg.data).margin}
    return m


def run_key(cfg: MatrixConfig, preset: str, seed: int, dhash: str, rows_hash: str) -> str:
    """Identity of a training run: resolved config (without paths), data hash, training rows."""
    m = deep_merge(cfg.train, {k: v for k, v in cfg.models[preset].items() if k != "train_on"})  # rows_hash has it
    m["seed"] = int(seed)
    for k in ("out", "tensorboard", "threads", "workers", "log_every"):
        m.pop(k, None)
    m.get("data", {}).pop("root", None)
    ident = {"train": m, "data_hash": dhash, "rows": rows_hash}
    if cfg.balance:
        ident["balance"] = True
    return sha(ident)


def balanced_protocol(root: Path, protocol: str, out_dir: Path, *, balance: bool = True,
                      train_with: Sequence[str] = ()) -> tuple[Path, int]:
    """Write ``out_dir/PROTOCOL-<protocol>.csv``: ``protocol``'s rows plus the **train** rows of each protocol in
    ``train_with`` (duplicates dropped), and with ``balance`` every bona fide train row repeated
    ``k = max(1, round(#attack train rows / #bona fide train rows))`` times (dev/eval rows unchanged).

    Returns:
        ``(out_dir, k)`` (k = 1 without ``balance``).
    """
    rows = protocol_rows(root, protocol)
    seen = {tuple(r) for r in rows}
    for other in train_with:
        for r in protocol_rows(root, other):
            if r[-1] == "train" and tuple(r) not in seen:
                seen.add(tuple(r))
                rows.append(r)
    train = [r for r in rows if r[-1] == "train"]
    n_b = sum(1 for r in train if r[1].strip() == "0")
    if n_b == 0:
        raise DatasetError(f"protocol {protocol!r} has no bona fide training rows")
    k = max(1, int(round((len(train) - n_b) / n_b))) if balance else 1
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"PROTOCOL-{protocol}.csv"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")   # concurrent runs (one per seed) write the same file
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        for r in rows:
            for _ in range(k if (r[-1] == "train" and r[1].strip() == "0") else 1):
                w.writerow(r)
    tmp.replace(path)
    return out_dir, k


def ensure_trained(cfg: MatrixConfig, preset: str, seed: int, root: Path, dhash: str, protocol: str, out: Path,
                   threads: int | None = None, progress: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """Train (or reuse / resume) the run of ``preset`` × ``protocol``'s training rows × ``seed``.

    Returns:
        ``(run folder, done.json content)`` — ``best.pt`` in the folder is the dev-selected checkpoint.
    """
    from edgepad.training import TrainConfig, train  # torch side: may need torch at import
    rows = train_rows_hash(root, protocol)
    key = run_key(cfg, preset, seed, dhash, rows)
    run_dir = Path(out) / "runs" / f"{preset}-s{seed}-{key[:10]}"
    done = run_dir / "done.json"
    if done.is_file():
        return run_dir, {**json.loads(done.read_text(encoding="utf-8")), "_reused": True}
    mapping = train_mapping(cfg, preset, seed, root, protocol, run_dir)
    train_with = tuple(cfg.models[preset].get("train_with", ()))
    if cfg.balance or train_with:
        name = "balanced" if not train_with else f"{'balanced-' if cfg.balance else ''}with-{'+'.join(train_with)}"
        pdir, _ = balanced_protocol(root, protocol, Path(out) / f"protocols-{name}-{dhash[:12]}", balance=cfg.balance,
                                    train_with=train_with)
        mapping["data"]["protocol_dir"] = str(pdir)
    if threads:
        mapping["threads"] = int(threads)
    tcfg = from_mapping(TrainConfig, mapping)
    resume = (run_dir / "last.pt").is_file()
    if progress:
        progress(f"train {preset} seed {seed} on {protocol} rows{' (resume)' if resume else ''} -> {run_dir.name}")
    t0 = time.perf_counter()
    summary = train(tcfg, resume=resume)
    info = {"key": key, "preset": preset, "seed": seed, "protocol_trained_on": protocol, "rows_hash": rows,
            "data_hash": dhash, "best": summary.get("best"), "epochs": tcfg.epochs,
            "samples_per_s": summary.get("samples_per_s"), "train_s": time.perf_counter() - t0,
            "train_samples": _count_samples(run_dir)}
    done.write_text(json.dumps(info, indent=1, default=float) + "\n", encoding="utf-8")
    return run_dir, info


def _count_samples(run_dir: Path) -> int | None:
    p = run_dir / "metrics.jsonl"
    if not p.is_file():
        return None
    recs = [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    return int(recs[-1].get("samples", 0)) if recs else None
