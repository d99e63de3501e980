"""The training loop: seeding, data order, :func:`train`, dev evaluation, :func:`predict`, the metrics log,
``last.pt`` / ``best.pt`` checkpoints and :func:`throughput`.

Reproducibility: the data order of epoch e comes from a generator seeded with (seed, e); each sample's
augmentation from (seed, e, index); everything else random (init, modality dropout, dropout) from the global RNGs,
whose states are saved in ``last.pt``. The training batches draw nothing from the global RNGs (:class:`TrainBatches`),
so ``workers`` and ``prefetch`` do not change a run. ``--resume`` therefore continues exactly as the uninterrupted
run (CPU; on GPU up to non-deterministic kernels).
"""
from __future__ import annotations

import csv
import gc
import io
import json
import logging
import math
import os
import queue
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgepad import metrics as M
from edgepad._optional import lazy
from edgepad.blas import keep_freed_memory
from edgepad.config import to_mapping, write_mapping
from edgepad.data.transforms import PADDataset, build_transform
from edgepad.errors import ConfigError, DatasetError, MetricError
from edgepad.models.checkpoint import read_checkpoint
from edgepad.data.sources import build_dataset
from edgepad.training.build import (build_model, build_objective, build_optimizer, input_specs,
                                    train_transform)
from edgepad.training.config import TrainConfig
from edgepad.training.plots import plot_training_curves

torch = lazy("torch")
log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA). DataLoader workers get seeds derived from torch's RNG."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


class EpochSampler:
    """Shuffled (or ordered) indices for one epoch, sharded over DDP ranks, yielding ``(index, epoch)``.

    The permutation depends only on (seed, epoch); ranks take ``perm[rank::world]`` after padding the list to a
    multiple of ``world`` (so every rank runs the same number of steps).
    """

    def __init__(self, n: int, epoch: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1) -> None:
        self.n, self.epoch, self.seed, self.shuffle, self.rank, self.world = n, epoch, seed, shuffle, rank, world

    def indices(self) -> list[int]:
        if self.shuffle:
            idx = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n).tolist()
        else:
            idx = list(range(self.n))
        if self.world > 1:
            pad = (-len(idx)) % self.world
            idx = idx + idx[:pad]
            idx = idx[self.rank::self.world]
        return idx

    def __iter__(self):
        return iter([(i, self.epoch) for i in self.indices()])

    def __len__(self) -> int:
        return math.ceil(self.n / self.world) if self.world > 1 else self.n


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _device(cfg: TrainConfig, local_rank: int):
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available", key="device")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def epoch_batches(n: int, epoch: int, seed: int, batch_size: int, max_steps: int | None = None, rank: int = 0,
                  world: int = 1) -> list[list[tuple[int, int]]]:
    """The training batches of one epoch as ``(index, epoch)`` keys: full batches of the shuffled
    :class:`EpochSampler` order, at most ``max_steps`` of them."""
    idx = EpochSampler(n, epoch, seed, True, rank, world).indices()
    steps = len(idx) // batch_size
    if max_steps:
        steps = min(steps, max_steps)
    return [[(i, epoch) for i in idx[s * batch_size:(s + 1) * batch_size]] for s in range(steps)]


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class TrainBatches:
    """The collated training batches of a whole run, in ``plan`` order, built ahead of the step that takes them.

    ``workers`` = 0: one background thread builds up to ``prefetch`` batches ahead (across epoch ends too, i.e.
    during dev evaluation), overlapping the step where the process has a second core (where other sessions load
    the CPU, Linux's autogroup scheduler splits this session's share instead: docs/PERFORMANCE.md §0g).
    ``prefetch`` = 0: each batch is built when asked for, in the caller's thread. ``workers`` ≥ 1: one DataLoader
    iterator over the whole plan (worker processes start once per run, ``prefetch`` batches each). Nothing here
    draws from the global RNGs. An error building a batch is raised by :meth:`next`; :meth:`close` stops the
    producer.
    """

    def __init__(self, dataset, plan: Sequence[Sequence[tuple[int, int]]], workers: int = 0, prefetch: int = 2,
                 pin: bool = False) -> None:
        self.dataset, self.plan, self.pin = dataset, [list(b) for b in plan], pin
        self._left = len(self.plan)
        self._thread = self._it = None
        if workers > 0:
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=self.plan, num_workers=workers,
                                                 pin_memory=pin, prefetch_factor=max(1, prefetch),
                                                 generator=torch.Generator().manual_seed(0))
            self._it = iter(loader)
        elif prefetch > 0:
            self._stop = threading.Event()
            self._q: queue.Queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._produce, name="edgepad-batches", daemon=True)
            self._thread.start()
        else:
            self._plan_it = iter(self.plan)

    def _build(self, keys: Sequence[tuple[int, int]]) -> dict:
        batch = torch.utils.data.default_collate([self.dataset[k] for k in keys])
        return torch.utils.data._utils.pin_memory.pin_memory(batch) if self.pin else batch

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for keys in self.plan:
                if self._stop.is_set() or not self._put(self._build(keys)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(_Failed(exc))

    def next(self) -> dict:
        """The next batch of the plan (StopIteration after the last)."""
        if self._left <= 0:
            raise StopIteration
        self._left -= 1
        if self._it is not None:
            return next(self._it)
        if self._thread is None:
            return self._build(next(self._plan_it))
        item = self._q.get()
        if isinstance(item, _Failed):
            self._left = 0
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the producer (thread joined, worker processes shut down)."""
        self._left = 0
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self._it = None


def _loader(dataset, sampler, batch_size: int, workers: int, drop_last: bool, pin: bool):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       drop_last=drop_last, pin_memory=pin, persistent_workers=False)


def _to_device(batch: Mapping[str, Any], device) -> tuple[dict, Any]:
    feed = {m: t.to(device, non_blocking=True) for m, t in batch["inputs"].items()}
    return feed, batch["target"].to(device, non_blocking=True)


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: Mapping[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def selection_value(scores: np.ndarray, is_bonafide: np.ndarray, species: Sequence[str], criterion: str) -> float:
    """The dev figure minimised to pick ``best.pt``: the error rate a criterion constrains the other of.

    ``bpcerN`` → dev BPCER at τ_A(1/N); ``apcerN`` → dev APCER at τ_B(1/N); ``eer`` → EER; ``min-hter`` → HTER
    at the min-HTER threshold; ``acer`` → ACER at the EER threshold. Thresholds come from
    ``edgepad.metrics.fit_threshold`` on the same dev scores.
    """
    if criterion == "acer":
        tau = M.fit_threshold(scores, is_bonafide, species, "eer")
        return float(M.pad_metrics(scores, is_bonafide, species, tau)["acer"])
    crit = M.parse_criterion(criterion)
    tau = M.fit_threshold(scores, is_bonafide, species, crit)
    m = M.pad_metrics(scores, is_bonafide, species, tau)
    if crit.kind == "bpcer":
        return float(m["bpcer"])
    if crit.kind == "apcer":
        return float(m["apcer"])
    return float(m["hter"])


# ------------------------------------------------------------------------------------------------ scoring

def predict(model, dataset, *, batch_size: int = 64, device=None, workers: int = 0) -> dict[str, np.ndarray]:
    """Scores ``σ(logit)`` (and ``score_<m>`` per head) for every sample of a :class:`PADDataset`, in order."""
    device = device or torch.device("cpu")
    loader = _loader(dataset, EpochSampler(len(dataset), 0, 0, shuffle=False), batch_size, workers, False, False)
    was = model.training
    model.eval()
    outs: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for batch in loader:
            feed, _ = _to_device(batch, device)
            out = model(feed)
            for k, v in out.items():
                if k == "logit" or k.startswith("logit_"):
                    outs.setdefault("score" + k[len("logit"):], []).append(torch.sigmoid(v.float()).cpu().numpy())
    model.train(was)
    return {k: np.concatenate(v) for k, v in outs.items()}


def recalibrate_bn(model, dataset, batches: int, batch_size: int, seed: int, epoch: int, device,
                   workers: int = 0) -> int:
    """Re-estimate every BatchNorm's running statistics as the plain mean over ``batches`` training batches (train
    mode, no gradients; momentum ``None``), leaving the RNG streams untouched. Returns the batches used.

    After few optimiser steps the exponential running averages still hold their init (var 1) and in eval mode a
    small-variance layer (a 1-channel stem) is then scaled down by the ratio, which the following layers turn into
    near-constant scores (docs/MODELS.md, "Why multilayer did not train").
    """
    net = getattr(model, "module", model)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or batches <= 0:
        return 0
    momenta = [m.momentum for m in bns]
    was = net.training
    used = 0
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        net.train()
        loader = _loader(dataset, EpochSampler(len(dataset), epoch, seed + 7919), batch_size, workers, True, False)
        for batch in loader:
            feed, _ = _to_device(batch, device)
            net(feed)
            used += 1
            if used >= batches:
                break
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    net.train(was)
    return used


def _evaluate(model, objective, dataset, cfg: TrainConfig, device, amp: bool) -> dict[str, Any]:
    loader = _loader(dataset, EpochSampler(len(dataset), 0, 0, shuffle=False), cfg.eval_batch_size, cfg.workers,
                     False, device.type == "cuda")
    model.eval()
    objective.eval()
    scores, losses, n = [], 0.0, 0
    with torch.no_grad():
        for batch in loader:
            feed, target = _to_device(batch, device)
            with torch.autocast(device.type, enabled=amp):
                out = model(feed)
            loss, _ = objective(out, target)
            losses += float(loss) * target.shape[0]
            n += target.shape[0]
            scores.append(torch.sigmoid(out["logit"].float()).cpu().numpy())
    model.train()
    objective.train()
    s = np.concatenate(scores)
    res: dict[str, Any] = {"dev_loss": losses / max(n, 1)}
    base = dataset.base
    if cfg.select != "loss":
        try:
            res["select_value"] = selection_value(s, base.is_bonafide, base.species, cfg.select)
            res["select"] = cfg.select
        except MetricError as exc:
            log.warning("dev criterion %s undefined (%s); selecting on dev loss this epoch", cfg.select, exc)
    if "select_value" not in res:
        res["select_value"], res["select"] = res["dev_loss"], "loss"
    return res


# ------------------------------------------------------------------------------------------------ train

class _Logger:
    """Per-epoch metrics log of the main rank: ``metrics.jsonl``, ``metrics.csv`` and ``tb/`` (TensorBoard).

    The CSV has the same rows as the JSONL; its header is the union of the record keys in first-seen order (the
    file is rewritten when a later record brings a new key; earlier rows leave that cell empty). Dicts/lists are
    JSON-encoded in a cell. On resume (``start_epoch`` > 0) rows with ``epoch >= start_epoch`` are dropped from
    both files before logging continues, so a log written past the checkpoint never duplicates an epoch; on a
    fresh run (``start_epoch`` = 0) old logs and event files are removed. TensorBoard scalars (step = epoch) are
    written when ``torch.utils.tensorboard`` imports (package ``tensorboard``), with ``purge_step=start_epoch``;
    otherwise skipped with one log line.
    """

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, start_epoch: int = 0) -> None:
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.csv_path = out / "metrics.csv"
        self.columns: list[str] = []
        self.tb = None
        if not enabled:
            return
        kept = self._trim_jsonl(start_epoch)
        self._trim_csv(start_epoch, kept)
        tb_dir = out / "tb"
        if start_epoch == 0 and tb_dir.is_dir():
            for p in tb_dir.glob("events.out.tfevents.*"):
                p.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            except ImportError as exc:
                log.info("TensorBoard not available (%s; pip install tensorboard): skipping tb/, logging "
                         "metrics.jsonl and metrics.csv only", exc)
            else:
                try:
                    self.tb = SummaryWriter(str(tb_dir), purge_step=start_epoch)
                except Exception as exc:  # noqa: BLE001 - a broken optional install must not stop training
                    log.warning("TensorBoard writer failed (%s): skipping tb/", exc)

    @staticmethod
    def _epoch(value: Any) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    def _trim_jsonl(self, start_epoch: int) -> list[dict]:
        """Keep the records of epochs < ``start_epoch`` (unreadable lines dropped); returns them."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept, keep_lines = [], []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                log.warning("%s: dropping an unreadable line", self.path)
                continue
            e = self._epoch(rec.get("epoch")) if isinstance(rec, dict) else None
            if e is not None and e < start_epoch:
                kept.append(rec)
                keep_lines.append(line)
        if len(keep_lines) != len(lines):
            if start_epoch > 0:
                log.info("%s: dropped %d record(s) of epochs >= %d (resuming)", self.path,
                         len(lines) - len(keep_lines), start_epoch)
            self._replace(self.path, "".join(x + "\n" for x in keep_lines))
        return kept

    def _trim_csv(self, start_epoch: int, jsonl_rows: list[dict]) -> None:
        """Keep the CSV rows of epochs < ``start_epoch``; rebuild it from the JSONL when it is missing."""
        if not self.csv_path.is_file():
            if jsonl_rows:
                for rec in jsonl_rows:
                    self._add_columns(rec)
                self._write_csv([self._row(r) for r in jsonl_rows])
            return
        with self.csv_path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            self.columns = list(reader.fieldnames or [])
            rows = list(reader)
        kept = [r for r in rows if (e := self._epoch(r.get("epoch"))) is not None and e < start_epoch]
        if len(kept) != len(rows) or not self.columns:
            self._write_csv(kept)

    def _add_columns(self, rec: Mapping[str, Any]) -> bool:
        new = [k for k in rec if k not in self.columns]
        self.columns.extend(new)
        return bool(new)

    @staticmethod
    def _cell(v: Any) -> Any:
        if v is None:
            return ""
        if isinstance(v, (Mapping, list, tuple)):
            return json.dumps(v, default=float)
        if hasattr(v, "item"):      # numpy / torch scalars
            return v.item()
        return v

    def _row(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        return {k: self._cell(v) for k, v in rec.items()}

    def _write_csv(self, rows: Sequence[Mapping[str, Any]]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, restval="", lineterminator="\n")
        if self.columns:
            w.writeheader()
        w.writerows(rows)
        self._replace(self.csv_path, buf.getvalue())

    @staticmethod
    def _replace(path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    def write(self, rec: Mapping[str, Any]) -> None:
        """Append one epoch record to the JSONL, the CSV and TensorBoard (numeric values, step = ``epoch``)."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=float) + "\n")
        if self._add_columns(rec) or not self.csv_path.is_file():
            rows: list[dict[str, Any]] = []
            if self.csv_path.is_file():
                with self.csv_path.open(newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
            self._write_csv([*rows, self._row(rec)])
        else:
            with self.csv_path.open("a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self.columns, restval="", lineterminator="\n").writerow(self._row(rec))
        if self.tb is not None:
            step = int(rec.get("epoch", 0))
            for k, v in rec.items():
                v = self._cell(v)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _checkpoint(model, objective, opt, sch, scaler, epoch: int, best: Mapping[str, Any], cfg: TrainConfig,
                inputs: Mapping[str, Any]) -> dict:
    spec = getattr(model, "edgepad_spec", {})
    return {"model": spec.get("model", cfg.model.name), "model_kwargs": spec.get("model_kwargs", {}),
            "state_dict": model.state_dict(), "inputs": {k: to_mapping(v) for k, v in inputs.items()},
            "objective": objective.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sch.state_dict() if sch is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch,
            "epoch_1based": epoch + 1, "best": dict(best),
            "rng": _rng_state(), "config": to_mapping(cfg)}


def _save(obj: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: TrainConfig, *, resume: bool = False,
          progress: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train per ``cfg``; returns a summary (epochs run, best epoch and value, run folder, samples/s).

    Epoch numbering: ``epoch`` in files (metrics rows, checkpoints, ``best``) is the 0-based index that
    ``--resume`` uses; every human-facing number is 1-based and the files carry it too (``epoch_1based``,
    ``best_epoch_1based``), so what the CLI prints is found verbatim in the files (docs/MODELS.md).

    Args:
        cfg: the run configuration.
        resume: continue from ``<out>/last.pt`` (error if absent).
        progress: called with ``{"epoch", "epoch_1based", "epochs", "step", "steps", "loss", "samples_per_s"}``
            during training and ``{"done": True, "epochs", ...epoch record}`` after each epoch (the CLI prints
            one line per finished epoch).

    Raises:
        ConfigError: bad configuration; DatasetError: unreadable data.
    """

    rank, world, local_rank = _dist_info()
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if (torch.cuda.is_available() and cfg.device != "cpu") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    main = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    keep_freed_memory()  # augmentation / normalise temporaries from the heap (docs/PERFORMANCE.md)
    device = _device(cfg, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    amp = bool(cfg.amp and device.type == "cuda")
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if resume and not last_path.is_file():
        raise ConfigError(f"--resume: {last_path} does not exist", key="out")
    if not resume and main:
        for p in (out_dir / "metrics.jsonl", out_dir / "metrics.csv"):
            if p.exists():
                p.unlink()
    if main:
        write_mapping(cfg, out_dir / "config.yaml")

    seed_everything(cfg.seed)
    inputs = input_specs(cfg)
    train_base = build_dataset(cfg.data, cfg.data.train_split, cfg.data.frames_per_video)
    dev_base = build_dataset(cfg.data, cfg.data.dev_split, cfg.data.dev_frames_per_video or cfg.data.frames_per_video)
    train_ds = PADDataset(train_base, inputs, train_transform(cfg), seed=cfg.seed)
    dev_ds = PADDataset(dev_base, inputs, build_transform(cfg.inputs.size_px, train=False), seed=cfg.seed)
    if len(train_ds) < cfg.batch_size * world:
        raise DatasetError(f"{len(train_ds)} training samples < batch_size × world ({cfg.batch_size} × {world})")

    model = build_model(cfg, inputs).to(device)
    objective = build_objective(cfg, model).to(device)
    opt, sch = build_optimizer(cfg, model, objective)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    start_epoch, best = 0, {"epoch": -1, "value": math.inf, "select": cfg.select}
    if resume:
        ck = read_checkpoint(last_path, map_location=device)
        model.load_state_dict(ck["state_dict"])
        objective.load_state_dict(ck["objective"])
        opt.load_state_dict(ck["optimizer"])
        if sch is not None and ck.get("scheduler") is not None:
            sch.load_state_dict(ck["scheduler"])
        if scaler is not None and ck.get("scaler") is not None:
            scaler.load_state_dict(ck["scaler"])
        start_epoch, best = int(ck["epoch"]) + 1, dict(ck["best"])
        if int(best.get("epoch", -1)) >= 0:
            best.setdefault("epoch_1based", int(best["epoch"]) + 1)     # checkpoints written before the field
        _set_rng_state(ck["rng"])
        log.info("resumed from %s: continuing with epoch %d of %d", last_path, start_epoch + 1, cfg.epochs)
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    plans = [epoch_batches(len(train_ds), e, cfg.seed, cfg.batch_size, cfg.max_steps_per_epoch, rank, world)
             for e in range(start_epoch, cfg.epochs)]
    batches = TrainBatches(train_ds, [b for p in plans for b in p], cfg.workers, cfg.prefetch, device.type == "cuda")
    logger = _Logger(out_dir, main, cfg.tensorboard, start_epoch)
    summary: dict[str, Any] = {"out": str(out_dir), "world_size": world, "epochs": cfg.epochs, "epochs_run": 0,
                               "start_epoch_1based": start_epoch + 1}
    try:
        for epoch, plan in zip(range(start_epoch, cfg.epochs), plans):
            steps = len(plan)
            net.train()
            objective.train()
            t0 = time.perf_counter()
            tot, parts_sum, seen, data_s = 0.0, {}, 0, 0.0
            for step in range(steps):
                t_data = time.perf_counter()
                batch = batches.next()
                data_s += time.perf_counter() - t_data
                feed, target = _to_device(batch, device)
                with torch.autocast(device.type, enabled=amp):
                    out = net(feed)
                loss, parts = objective(out, target)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise ConfigError(f"loss became {lv} at epoch {epoch + 1} step {step + 1}; lower optim.lr",
                                      key="optim.lr")
                b = int(target.shape[0])
                tot += lv * b
                seen += b
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v * b
                if progress is not None and main and (step % max(1, cfg.log_every) == 0 or step == steps - 1):
                    el = time.perf_counter() - t0
                    progress({"epoch": epoch, "epoch_1based": epoch + 1, "epochs": cfg.epochs, "step": step + 1,
                              "steps": steps, "loss": tot / seen, "samples_per_s": seen * world / max(el, 1e-9)})
            lr_used = opt.param_groups[0]["lr"]
            if sch is not None:
                sch.step()
            train_s = time.perf_counter() - t0
            rec: dict[str, Any] = {"epoch": epoch, "epoch_1based": epoch + 1, "train_loss": tot / max(seen, 1),
                                   **{f"train_{k}": v / max(seen, 1) for k, v in parts_sum.items()},
                                   "lr": lr_used, "samples": seen * world,
                                   "samples_per_s": seen * world / max(train_s, 1e-9),
                                   "data_wait_fraction": data_s / max(train_s, 1e-9), "world_size": world}
            if main:
                if cfg.bn_recalibrate > 0:
                    recalibrate_bn(model, train_ds, cfg.bn_recalibrate, cfg.batch_size, cfg.seed, epoch, device,
                                   cfg.workers)
                ev = _evaluate(model, objective, dev_ds, cfg, device, amp)
                rec.update(ev)
                # a tie on the criterion (e.g. dev BPCER20 = 0 for many epochs) goes to the lower dev loss
                improved = best["epoch"] < 0 or ev["select_value"] < best["value"] or (
                    ev["select_value"] == best["value"] and ev["dev_loss"] < best.get("dev_loss", math.inf))
                if improved:
                    best = {"epoch": epoch, "epoch_1based": epoch + 1, "value": float(ev["select_value"]),
                            "select": ev["select"], "dev_loss": float(ev["dev_loss"])}
                rec["best_epoch"] = best["epoch"]
                rec["best_epoch_1based"] = best["epoch"] + 1
                ck = _checkpoint(model, objective, opt, sch, scaler, epoch, best, cfg, inputs)
                _save(ck, last_path)
                if improved:
                    _save(ck, best_path)
                rec["time_s"] = time.perf_counter() - t0
                logger.write(rec)
                if progress is not None:
                    progress({**rec, "done": True, "epochs": cfg.epochs})
            if distributed:
                torch.distributed.barrier()
            summary["epochs_run"] += 1
            summary["samples_per_s"] = rec["samples_per_s"]
            summary["last_epoch_1based"] = epoch + 1
    finally:
        batches.close()
        logger.close()
        if distributed and torch.distributed.is_initialized():
            # drop the DDP wrapper (its reducer holds the process group and gloo work objects) before the group
            # is destroyed: left to interpreter exit, gloo threads were torn down unjoined (rare SIGABRT,
            # "terminate called without an active exception")
            net = None
            gc.collect()
            torch.distributed.destroy_process_group()
    summary["best"] = best
    if main and logger.enabled and logger.path.is_file():
        curves = plot_training_curves(logger.path)
        summary["curves"] = None if curves is None else str(curves)      # None without matplotlib
    return summary


def throughput(cfg: TrainConfig, steps: int = 20, warmup: int = 3) -> dict[str, float]:
    """Samples/s of (a) the data pipeline alone, (b) forward+backward+step alone on one fixed batch, (c) both.

    The data pipeline is not the bottleneck when (a) ≥ (b); (c) is what training achieves.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    seed_everything(cfg.seed)
    inputs = input_specs(cfg)
    base = build_dataset(cfg.data, cfg.data.train_split, cfg.data.frames_per_video)
    ds = PADDataset(base, inputs, train_transform(cfg), seed=cfg.seed)
    device = _device(cfg, 0)
    amp = bool(cfg.amp and device.type == "cuda")
    model = build_model(cfg, inputs).to(device).train()
    objective = build_objective(cfg, model).to(device)
    opt, _ = build_optimizer(cfg, model, objective)
    bs = cfg.batch_size
    if len(ds) < bs:
        raise DatasetError(f"{len(ds)} training samples < batch_size {bs}")

    def batches(epoch: int, k: int) -> TrainBatches:
        """``k`` batches of the training order from ``epoch`` on, built as :func:`train` builds them."""
        plan: list = []
        while len(plan) < k:
            plan += epoch_batches(len(ds), epoch, cfg.seed, bs)
            epoch += 1
        return TrainBatches(ds, plan[:k], cfg.workers, cfg.prefetch, False)

    def step(feed, target):
        with torch.autocast(device.type, enabled=amp):
            out = model(feed)
        loss, _ = objective(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(it: TrainBatches, k: int, train_step: bool) -> float:
        t, n = time.perf_counter(), 0
        try:
            for _ in range(k):
                b = it.next()
                n += b["target"].shape[0]
                if train_step:
                    step(*_to_device(b, device))
        finally:
            it.close()
        return n / (time.perf_counter() - t)

    # (a) data only (cached samples after the first epoch if cache is on: warm it up first)
    timed(batches(0, warmup), warmup, False)
    data_sps = timed(batches(1, steps), steps, False)
    # (b) compute only
    it = batches(2, 1)
    feed, target = _to_device(it.next(), device)
    it.close()
    for _ in range(warmup):
        step(feed, target)
    t = time.perf_counter()
    for _ in range(steps):
        step(feed, target)
    compute_sps = steps * bs / (time.perf_counter() - t)
    # (c) both
    full_sps = timed(batches(3, steps), steps, True)
    return {"data_samples_per_s": data_sps, "compute_samples_per_s": compute_sps,
            "train_samples_per_s": full_sps, "batch_size": bs, "workers": cfg.workers, "prefetch": cfg.prefetch,
            "steps": steps,
            "device": str(device), "threads": torch.get_num_threads()}
