"""Checkpoint -> FP32 ONNX with its manifest: operating points fitted on dev (:func:`export_checkpoint`) or taken
from the flags / the checkpoint's own manifest (:func:`export_checkpoint_onnx`, behind ``edgepad export``).

Absent modalities are filled with their ``missing_fill`` exactly as ``preprocess.normalise`` does at run time, so
a per-subset threshold is fitted on the scores the runtime will see.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgepad import metrics as M
from edgepad.config import to_mapping
from edgepad.data.transforms import PADDataset, build_transform
from edgepad.engines.export import export_onnx
from edgepad.engines.manifest import ModelManifest, manifest_path, read_manifest, subset_key
from edgepad.errors import ConfigError
from edgepad.models.checkpoint import load_checkpoint
from edgepad.preprocess import crop_face_depth_m
from edgepad.specs import DEFAULT_MARGIN
from edgepad.data.sources import build_dataset
from edgepad.training.config import DEFAULT_SUBSETS, TrainConfig, load_train_config
from edgepad.training.loop import predict

log = logging.getLogger(__name__)


def fit_operating_points(model, inputs: Mapping[str, Any], dev_base, criterion: str = "bpcer20",
                         subsets: Sequence[Sequence[str]] = DEFAULT_SUBSETS, batch_size: int = 64,
                         workers: int = 0, rule: str = M.DEFAULT_THRESHOLD_RULE) -> dict[str, float]:
    """Dev thresholds per modality subset: absent modalities are filled with their ``missing_fill`` exactly as
    ``preprocess.normalise`` does at run time; each placed by ``rule`` (:func:`edgepad.metrics.place_threshold`).
    Returns ``{subset_key: threshold}`` (subsets the model lacks skipped).
    """
    scores = _subset_scores(model, inputs, dev_base, subsets, batch_size, workers)
    return {k: M.place_threshold(s, dev_base.is_bonafide, dev_base.species, criterion, rule).threshold
            for k, s in scores.items()}


def _subset_scores(model, inputs: Mapping[str, Any], dev_base, subsets: Sequence[Sequence[str]], batch_size: int,
                   workers: int) -> dict[str, np.ndarray]:
    """Dev scores per modality subset (absent modalities filled as at run time), keyed by ``subset_key``."""
    size = int(next(iter(inputs.values())).shape[-1])
    out: dict[str, np.ndarray] = {}
    for subset in subsets:
        if not set(subset) <= set(inputs) or subset_key(subset) in out:
            continue
        ds = PADDataset(WithoutModalities(dev_base, set(inputs) - set(subset)), dict(inputs),
                        build_transform(size, train=False))
        out[subset_key(subset)] = predict(model, ds, batch_size=batch_size, workers=workers)["score"]
    return out


class WithoutModalities:
    """A FrameDataset view whose samples lack some modalities (the runtime's missing-stream case)."""

    def __init__(self, base, drop: set[str]) -> None:
        self.base, self.drop = base, drop

    @property
    def crop_align(self) -> str:
        """The base's crop alignment (stored crops: ``"none"``)."""
        return getattr(self.base, "crop_align", "none")

    @property
    def crop_margin(self) -> float:
        """The base's crop margin (``FrameDataset.crop_margin``; undeclared: 0.25)."""
        return getattr(self.base, "crop_margin", DEFAULT_MARGIN)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        s = self.base[i]
        z = s.face_depth_m
        if z is None and "depth" in self.drop and "depth" in s.modalities:
            z = crop_face_depth_m(s.modalities["depth"], s.depth_scale_m)  # the runtime's box-size estimate
        return replace(s, modalities={m: x for m, x in s.modalities.items() if m not in self.drop}, face_depth_m=z)


def _portable(obj: Any, base: Path | None = None) -> Any:
    """Provenance for a manifest: absolute paths under ``base`` (default: the working directory) become relative,
    so a committed manifest does not record the machine it was trained on."""
    base = (base or Path.cwd()).resolve()
    if isinstance(obj, Mapping):
        return {k: _portable(v, base) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v, base) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj):
        try:
            return Path(os.path.normpath(obj)).relative_to(base).as_posix()
        except ValueError:
            return obj
    return obj


def export_checkpoint(checkpoint: Path | str, path: Path | str, cfg: TrainConfig) -> ModelManifest:
    """Export ``checkpoint`` to ONNX with dev thresholds: the default at ``cfg.export.criterion`` on all
    modalities, and per-subset operating points (``cfg.export.subsets``) fitted on dev with the fill value, for
    ``cfg.export.criterion`` and each of ``cfg.export.extra_criteria`` (dev scores are computed once per subset).

    Returns the written :class:`~edgepad.engines.manifest.ModelManifest`.
    """
    model, inputs, ck = load_checkpoint(checkpoint)
    dev_base = build_dataset(cfg.data, cfg.data.dev_split, cfg.data.dev_frames_per_video or cfg.data.frames_per_video)
    crit = cfg.export.criterion
    full = subset_key(inputs)
    scores = _subset_scores(model, inputs, dev_base, [*cfg.export.subsets, tuple(inputs)], cfg.eval_batch_size, 0)
    rule = cfg.export.threshold_rule
    points: dict[str, dict[str, float]] = {}
    placed: dict[str, str] = {}
    for c in dict.fromkeys([crit, *cfg.export.extra_criteria]):
        points[c] = {}
        for k, s in scores.items():
            fit = M.place_threshold(s, dev_base.is_bonafide, dev_base.species, c, rule)
            points[c][k] = fit.threshold
            if c == crit and k == full:
                placed = {"placed": fit.placed, "criterion_threshold": fit.criterion_threshold}
    ops = points[crit]
    training = {"config": _portable(to_mapping(cfg)), "epoch": ck.get("epoch"), "best": ck.get("best"),
                "dev_split": cfg.data.dev_split, "protocol": cfg.data.protocol, "dataset": cfg.data.kind,
                "threshold_rule": rule, "threshold_placement": placed}
    meta_path = Path(cfg.data.root) / "meta.json" if cfg.data.root is not None else None
    if cfg.data.kind == "synthbench" and meta_path is not None and meta_path.is_file():
        try:   # the generator and its settings: enough to regenerate the benchmark
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            training["dataset_meta"] = {k: meta.get(k) for k in ("generator", "generator_version", "config")}
        except (OSError, ValueError):
            log.warning("cannot read %s; provenance without the generator settings", meta_path)
    return export_onnx(model, path, inputs=inputs, threshold=ops[full], threshold_criterion=crit,
                       operating_points=points, opset=cfg.export.opset, model_name=ck["model"],
                       model_kwargs=ck["model_kwargs"], training=training)


def export_checkpoint_onnx(checkpoint: Path | str, out: Path | str, *, threshold: float | None = None,
                           criterion: str | None = None, config: Path | str | None = None, opset: int = 17,
                           dynamic_batch: bool = False) -> ModelManifest:
    """FP32 ONNX of a training checkpoint (``out`` and ``out.json``); returns its manifest.

    Thresholds, first that applies: ``config`` (a training config: :func:`export_checkpoint` fits them on its dev
    split, every modality subset, with ``opset``); ``threshold`` + ``criterion`` (fitted elsewhere on dev); the
    checkpoint's own manifest ``CHECKPOINT.json`` (threshold, criterion, operating points, provenance).

    Raises:
        ConfigError: no threshold source, or ``threshold`` without ``criterion``; CheckpointError: unreadable or
            unsafe checkpoint.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if config is not None:
        return export_checkpoint(checkpoint, out, load_train_config(config, {"export.opset": opset}))
    ops: Mapping[str, Any] = {}
    training: Mapping[str, Any] = {}
    if threshold is None:
        mp = manifest_path(checkpoint)
        if not mp.exists():
            raise ConfigError("no threshold: pass --threshold and --criterion (fitted on dev), --config TRAIN.yaml, "
                              f"or put a manifest at {mp.name}", key="threshold")
        ck_manifest = read_manifest(checkpoint)
        threshold, criterion = ck_manifest.threshold, ck_manifest.threshold_criterion
        ops, training = ck_manifest.operating_points, ck_manifest.training
    if criterion is None:
        raise ConfigError("--threshold needs --criterion (the dev criterion it was fitted with, e.g. bpcer20)",
                          key="criterion")
    model, inputs, ck = load_checkpoint(checkpoint)
    return export_onnx(model, out, inputs=inputs, threshold=threshold, threshold_criterion=criterion,
                       operating_points=ops, opset=opset, dynamic_batch=dynamic_batch, model_name=ck["model"],
                       model_kwargs=ck["model_kwargs"], training=dict(training) or {"epoch": ck.get("epoch")})
