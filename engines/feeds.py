"""Calibration and validation feeds from a dataset split, preprocessed exactly as at run time.

Sources: a WMCA-layout benchmark folder (the synthetic benchmark of ``edgepad synth``: ``videos/``,
``protocols/``, ``meta.json``) read with ``edgepad.data.datasets.SynthBenchDataset`` and normalised with
:func:`edgepad.preprocess.normalise`; or an ``.npz`` holding normalised ``rgb``/``depth``/``ir`` arrays
(N×C×S×S) plus optional ``is_bonafide`` and ``species``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from edgepad.data.datasets import SynthBenchDataset
from edgepad.errors import ConfigError, DatasetError
from edgepad.preprocess import normalise


@dataclass(frozen=True)
class FeedSet:
    """Stacked feeds ``{name: N×C×S×S}`` with labels (None when unknown) and sample ids."""

    feeds: Mapping[str, np.ndarray]
    is_bonafide: np.ndarray | None
    species: list[str] | None
    sample_ids: list[str]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def batches(self, batch: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of ``batch`` samples (for calibration)."""
        n = len(self)
        for i in range(0, n, batch):
            yield {k: v[i:i + batch] for k, v in self.feeds.items()}


def load_feeds(source: Path | str, inputs: Mapping, *, protocol: str = "grandtest", split: str = "dev",
               frames_per_video: int | None = None, limit: int | None = None, seed: int = 0) -> FeedSet:
    """Read and preprocess a split into feeds for ``inputs`` (the manifest's input specs).

    Args:
        source: benchmark folder or ``.npz``.
        inputs: ``{name: InputSpec}``.
        protocol / split: protocol name and fold (``dev`` for calibration and threshold re-fit, ``eval`` for the
            accuracy gate).
        frames_per_video: frames per video (None = all).
        limit: keep at most this many samples, drawn evenly with ``seed`` (None = all).
    """
    source = Path(source)
    if source.suffix == ".npz":
        with np.load(source, allow_pickle=False) as z:
            feeds = {n: np.asarray(z[n], np.float32) for n in inputs if n in z}
            missing = [n for n in inputs if n not in feeds]
            if missing:
                raise DatasetError(f"{source}: lacks arrays {missing}")
            lab = np.asarray(z["is_bonafide"], bool) if "is_bonafide" in z else None
            species = [str(s) for s in z["species"]] if "species" in z else None
        n = len(next(iter(feeds.values())))
        ids = [f"{source.name}:{i}" for i in range(n)]
        fs = FeedSet(feeds, lab, species, ids)
        return _subsample(fs, limit, seed)
    if not source.is_dir():
        raise ConfigError(f"feed source {source} is neither a benchmark folder nor an .npz", key="data")
    ds = SynthBenchDataset(source, protocol=protocol, split=split, frames_per_video=frames_per_video)
    idx = np.arange(len(ds))
    if limit is not None and limit < len(ds):
        idx = np.sort(np.random.default_rng(seed).choice(len(ds), int(limit), replace=False))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in inputs}
    lab, species, ids = [], [], []
    for i in idx:
        s = ds[int(i)]
        feed = normalise({m: a for m, a in s.modalities.items() if m in inputs}, inputs, s.depth_scale_m)
        for n in inputs:
            parts[n].append(feed[n])
        lab.append(bool(s.is_bonafide))
        species.append(str(s.pai))
        ids.append(f"{s.video_id}:{s.frame_idx}")
    feeds = {n: np.concatenate(v, 0).astype(np.float32) for n, v in parts.items()}
    return FeedSet(feeds, np.asarray(lab, bool), species, ids)


def _subsample(fs: FeedSet, limit: int | None, seed: int) -> FeedSet:
    if limit is None or limit >= len(fs):
        return fs
    idx = np.sort(np.random.default_rng(seed).choice(len(fs), int(limit), replace=False))
    return FeedSet({k: v[idx] for k, v in fs.feeds.items()},
                   None if fs.is_bonafide is None else fs.is_bonafide[idx],
                   None if fs.species is None else [fs.species[i] for i in idx], [fs.sample_ids[i] for i in idx])
