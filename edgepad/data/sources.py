"""The ``data`` section of a config (training YAML or ``edgepad evaluate --data``) -> a dataset loader.

One class for training (``edgepad.training.DataConfig`` is this class) and evaluation: the source kind and its
folders, ``eval_split`` / ``eval_list`` (the fold scored as eval), ``depth_encoding`` (``mm16`` | ``uint8_normalised``; unset = detected from the data, see
:func:`edgepad.data.datasets.detect_depth_encoding`), and ``flat_videos`` / ``video_map`` (video ids of CASIA-SURF
flat Val/Testing names). Formats: docs/EVALUATION.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from edgepad.config import from_mapping, read_mapping
from edgepad.data.datasets import (CasiaSurfDataset, CefaDataset, FrameDataset, SynthBenchDataset, WMCADataset,
                                   check_depth_encoding)
from edgepad.errors import ConfigError

#: ``kind`` spellings accepted besides the canonical ones.
KIND_ALIASES = {"synthetic": "synthbench", "casia-surf": "casia_surf", "casiasurf": "casia_surf"}


@dataclass(frozen=True)
class DataSourceConfig:
    """Where samples come from (one ``data`` section).

    ``kind``: ``synthbench`` (alias ``synthetic``; root, protocol), ``wmca`` (cdit_root, rgb_root, protocol,
    protocol_dir), ``casia_surf`` / ``cefa`` (root, train_list, dev_list, eval_list). Folds: ``train_split``,
    ``dev_split``, ``eval_split``; list kinds read ``<fold>_list`` for them.
    """

    kind: Literal["synthbench", "synthetic", "wmca", "casia_surf", "cefa"] = "synthbench"
    root: Path | None = None
    protocol: str = "grandtest"
    protocol_dir: Path | None = None
    train_split: str = "train"
    dev_split: str = "dev"
    eval_split: str = "eval"
    frames_per_video: int | None = None
    dev_frames_per_video: int | None = None
    bonafide_label: int | None = None
    columns: tuple[str, ...] | None = None
    cache: bool = True
    cdit_root: Path | None = None
    rgb_root: Path | None = None
    train_list: str | None = None
    dev_list: str | None = None
    eval_list: str | None = None
    depth_scale_m: float | None = None
    depth_encoding: str | None = None
    flat_videos: str | None = None
    video_map: Path | None = None


def data_config(data: Mapping[str, Any], *, base: Path | None = None) -> DataSourceConfig:
    """A :class:`DataSourceConfig` from a mapping: a whole training config (its ``data`` section is used) or a
    data section alone. Relative paths resolve against ``base``.

    Raises:
        ConfigError: unknown keys, wrong types, an unknown depth encoding.
    """
    section = data.get("data", data) if isinstance(data, Mapping) else data
    if not isinstance(section, Mapping):
        raise ConfigError("the data section must be a mapping", key="data")
    section = dict(section)
    if "kind" in section:
        section["kind"] = KIND_ALIASES.get(str(section["kind"]).lower(), section["kind"])
    cfg = from_mapping(DataSourceConfig, section, base=base, where="data")
    try:
        check_depth_encoding(cfg.depth_encoding)
    except ValueError as exc:
        raise ConfigError(str(exc), key="data.depth_encoding") from None
    return cfg


def read_data_config(path: Path | str) -> DataSourceConfig:
    """:func:`data_config` of a YAML / JSON file (relative paths resolve against its folder)."""
    path = Path(path)
    return data_config(read_mapping(path), base=path.resolve().parent)


def build_dataset(cfg: DataSourceConfig, split: str, frames_per_video: int | None = None) -> FrameDataset:
    """The loader of ``cfg`` for fold ``split`` (list kinds: the list of the fold named ``split``).

    Raises:
        ConfigError: a required field is missing. DatasetError: unreadable or inconsistent data.
    """
    kind = KIND_ALIASES.get(cfg.kind, cfg.kind)
    kw: dict[str, Any] = {}
    if cfg.bonafide_label is not None:
        kw["bonafide_label"] = cfg.bonafide_label
    if kind in ("synthbench", "wmca") and cfg.columns is not None:
        kw["columns"] = cfg.columns
    if kind == "synthbench":
        if cfg.root is None:
            raise ConfigError("data.root is required (the synthetic benchmark folder)", key="data.root")
        return SynthBenchDataset(cfg.root, cfg.protocol, split, frames_per_video, cache=cfg.cache,
                                 protocol_dir=cfg.protocol_dir, depth_encoding=cfg.depth_encoding, **kw)
    if cfg.depth_scale_m is not None:
        kw["depth_scale_m"] = cfg.depth_scale_m
    if kind == "wmca":
        if cfg.cdit_root is None or cfg.rgb_root is None or cfg.protocol_dir is None:
            raise ConfigError("wmca needs data.cdit_root, data.rgb_root and data.protocol_dir", key="data")
        return WMCADataset(cfg.cdit_root, cfg.rgb_root, cfg.protocol, cfg.protocol_dir, split, frames_per_video,
                           depth_encoding=cfg.depth_encoding, **kw)
    lists = {cfg.train_split: cfg.train_list, cfg.dev_split: cfg.dev_list, cfg.eval_split: cfg.eval_list}
    lst = lists.get(split)
    if cfg.root is None or lst is None:
        field = {cfg.train_split: "train_list", cfg.dev_split: "dev_list"}.get(split, "eval_list")
        raise ConfigError(f"{kind} needs data.root and data.{field} for fold {split!r}", key=f"data.{field}")
    if kind == "casia_surf":
        return CasiaSurfDataset(cfg.root, lst, split, depth_encoding=cfg.depth_encoding,
                                flat_videos=cfg.flat_videos, video_map=cfg.video_map, **kw)
    if cfg.flat_videos is not None or cfg.video_map is not None:
        raise ConfigError("flat_videos / video_map apply to casia_surf only", key="data.flat_videos")
    return CefaDataset(cfg.root, lst, split, depth_encoding=cfg.depth_encoding, **kw)
