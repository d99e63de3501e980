"""Samples and dataset loaders: synthetic benchmark, WMCA, CASIA-SURF, CeFA (numpy; h5py / cv2 when reading).

Every loader lists lightweight :class:`SampleRef` records at construction (reading protocol files and frame keys,
not pixels) and reads one :class:`Sample` per ``dataset[i]``. Labels are converted at load time: the polarity of
each source is an explicit parameter (``bonafide_label``), the species of an attack is ``pai``; bona fide samples
have ``pai == "bonafide"``. Modalities are addressed by name (``rgb``, ``depth``, ``ir``, ``thermal``), in raw units:
rgb ``uint8 H×W×3`` (RGB order), depth ``uint16 H×W`` (0 = invalid, metres = value · ``depth_scale_m``),
ir ``uint8 H×W``.

Layouts (EVALUATION.md §6, §7.4):

- synthetic benchmark / WMCA-style: ``<root>/videos/<id>.hdf5`` with ``Frame_<i>/array`` uint16 (5, S, S) =
  [R, G, B, depth_mm, NIR]; ``<root>/protocols/PROTOCOL-<name>.csv`` (no header, ``path,label,attack_type,fold``,
  label 0 = bona fide); ``<root>/meta.json``.
- WMCA preprocessed: ``<cdit_root>/<path>.hdf5`` with ``Frame_<i>/array`` (4, H, W) = [grey, depth, infrared,
  thermal] and ``<rgb_root>/<path>.hdf5`` with (3, H, W); frame keys are intersected.
- CASIA-SURF lists: ``color depth ir label`` per line (space separated, 1 = bona fide); the modality of a path
  comes from the path (``/depth/``, ``/ir/``, ``/color/`` folders or ``-depth`` / ``-ir`` / ``-color`` suffixes).
- CeFA lists: ``<video_dir>/profile/0001.jpg label``; depth / IR by replacing ``profile`` with ``depth`` / ``ir``.
"""
from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from edgepad._optional import require
from edgepad.errors import DatasetError

log = logging.getLogger(__name__)

BONAFIDE = "bonafide"
WMCA_COLUMNS = ("path", "label", "attack_type", "fold")


@dataclass(frozen=True)
class Sample:
    """One training / evaluation sample (one frame of one video).

    Attributes:
        modalities: raw-unit images by modality name (absent modality = absent key).
        is_bonafide: True for a bona fide presentation.
        pai: PAI species of an attack (``"bonafide"`` for bona fide).
        video_id: video the frame belongs to (per-video aggregation key).
        frame_idx: frame index within the video.
        subject, group: identity and group (ethnicity / skin tone) when known.
        split: fold (``train`` / ``dev`` / ``eval`` …). dataset, protocol: provenance.
        depth_scale_m: metres per raw depth unit.
        face_depth_m: face distance (m) when known apart from a depth crop (e.g. the depth stream was dropped
            for a missing-modality test: the runtime then has its box-size estimate); None = from the depth crop.
    """

    modalities: Mapping[str, np.ndarray]
    is_bonafide: bool
    pai: str
    video_id: str
    frame_idx: int = 0
    subject: str | None = None
    group: str | None = None
    split: str = ""
    dataset: str = ""
    protocol: str = ""
    depth_scale_m: float = 0.001
    face_depth_m: float | None = None


@dataclass(frozen=True)
class SampleRef:
    """A listed sample before its pixels are read (``paths`` / ``frame_key`` say where they are)."""

    video_id: str
    frame_idx: int
    is_bonafide: bool
    pai: str
    split: str
    paths: Mapping[str, str] = field(default_factory=dict)
    frame_key: str | None = None
    subject: str | None = None
    group: str | None = None
    attack_type: str = ""


@dataclass(frozen=True)
class ProtocolRow:
    """One row of a WMCA-style protocol CSV, polarity already converted."""

    path: str
    is_bonafide: bool
    attack_type: str
    pai: str
    family: str
    fold: str


def parse_label(value: str, bonafide_label: int | str, where: str) -> bool:
    """``True`` iff ``value`` equals the source's bona fide label (EVALUATION.md §6.1 polarities)."""
    v = str(value).strip()
    try:
        return int(float(v)) == int(bonafide_label)
    except ValueError:
        raise DatasetError(f"{where}: label {value!r} is not a number; check the column order") from None


def read_protocol_csv(path: Path | str, columns: Sequence[str] = WMCA_COLUMNS, bonafide_label: int = 0,
                      header: bool = False) -> list[ProtocolRow]:
    """Read a WMCA-style protocol CSV.

    Args:
        path: the CSV file.
        columns: column names in file order; must include ``path``, ``label``, ``attack_type`` and ``fold``.
        bonafide_label: label value meaning bona fide (WMCA: 0).
        header: skip the first line.

    Returns:
        rows; ``pai`` is the last ``/`` component of ``attack_type`` (``"bonafide"`` for bona fide) and
        ``family`` the middle one (``2D`` / ``3D``) when present.

    Raises:
        DatasetError: missing file, wrong column count, or a label/attack type that contradicts the polarity.
    """
    path = Path(path)
    need = {"path", "label", "attack_type", "fold"}
    if not need <= set(columns):
        raise DatasetError(f"protocol columns {list(columns)} must include {sorted(need)}")
    if not path.is_file():
        raise DatasetError(f"protocol file {path} not found; generate the benchmark or check dataset.root")
    rows: list[ProtocolRow] = []
    with path.open(newline="", encoding="utf-8") as f:
        for n, rec in enumerate(csv.reader(f)):
            if (header and n == 0) or not rec or not "".join(rec).strip():
                continue
            if len(rec) != len(columns):
                raise DatasetError(f"{path}:{n + 1}: expected {len(columns)} columns {list(columns)}, got {rec}")
            d = dict(zip(columns, (c.strip() for c in rec)))
            bona = parse_label(d["label"], bonafide_label, f"{path}:{n + 1}")
            at = d["attack_type"]
            parts = at.split("/")
            is_bona_type = at == BONAFIDE or parts[-1] == BONAFIDE
            if bona != is_bona_type:
                raise DatasetError(f"{path}:{n + 1}: label {d['label']} contradicts attack_type {at!r}; check "
                                   f"bonafide_label (={bonafide_label}) and the column order")
            rows.append(ProtocolRow(d["path"], bona, at, BONAFIDE if bona else parts[-1],
                                    parts[1] if len(parts) >= 3 else "", d["fold"]))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def protocol_path(root: Path | str, protocol: str, protocol_dir: Path | str | None = None) -> Path:
    """``protocol`` as a CSV path: a file path if it ends in ``.csv``, else ``<dir>/PROTOCOL-<name>.csv``."""
    if protocol.endswith(".csv"):
        p = Path(protocol)
        return p if p.is_absolute() else Path(root) / p
    return Path(protocol_dir or Path(root) / "protocols") / f"PROTOCOL-{protocol}.csv"


def _frame_number(key: str) -> int:
    m = re.search(r"(\d+)$", key)
    return int(m.group(1)) if m else 0


def select_frames(keys: Sequence[str], frames_per_video: int | None) -> list[str]:
    """Frame keys sorted by index; ``frames_per_video`` evenly spread ones (all when None or ≥ available)."""
    keys = sorted(keys, key=_frame_number)
    if not frames_per_video or frames_per_video >= len(keys):
        return list(keys)
    idx = np.linspace(0, len(keys) - 1, int(frames_per_video)).round().astype(int)
    return [keys[i] for i in sorted(set(idx.tolist()))]


class FrameDataset:
    """Base class: ``records`` (list of :class:`SampleRef`), ``len``, ``dataset[i] -> Sample``."""

    name = "dataset"

    def __init__(self) -> None:
        self.records: list[SampleRef] = []
        self.protocol = ""
        self.depth_scale_m = 0.001

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        ref = self.records[i]
        mods = self.read(ref)
        return Sample(mods, ref.is_bonafide, ref.pai, ref.video_id, ref.frame_idx, ref.subject, ref.group,
                      ref.split, self.name, self.protocol, self.depth_scale_m)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    # metadata arrays for scoring / thresholds
    @property
    def is_bonafide(self) -> np.ndarray:
        return np.array([r.is_bonafide for r in self.records], dtype=bool)

    @property
    def species(self) -> list[str]:
        return [r.pai for r in self.records]

    @property
    def video_ids(self) -> list[str]:
        return [r.video_id for r in self.records]


def _split_list(split: str | Sequence[str]) -> tuple[str, ...]:
    return (split,) if isinstance(split, str) else tuple(split)


# ------------------------------------------------------------------------------------ synthetic (WMCA-style)

class SynthBenchDataset(FrameDataset):
    """The synthetic benchmark (interface D): 5-channel WMCA-style HDF5 per video + protocol CSVs + meta.json.

    Args:
        root: benchmark folder (``videos/``, ``protocols/``, ``meta.json``).
        protocol: protocol name (``grandtest``, ``LOO_<species>`` …) or a CSV path.
        split: fold name(s) to keep (``train`` / ``dev`` / ``eval``).
        frames_per_video: evenly spread frames per video (None = all).
        columns, bonafide_label: CSV column order and polarity (WMCA: 0 = bona fide).
        channels: channel of each modality in the (5, S, S) array.
        cache: keep decoded frames in memory after the first read (small benchmarks, many epochs).
    """

    name = "synthbench"
    CHANNELS = {"rgb": (0, 1, 2), "depth": (3,), "ir": (4,)}

    def __init__(self, root: Path | str, protocol: str = "grandtest", split: str | Sequence[str] = "train",
                 frames_per_video: int | None = None, columns: Sequence[str] = WMCA_COLUMNS,
                 bonafide_label: int = 0, channels: Mapping[str, Sequence[int]] | None = None,
                 cache: bool = False, protocol_dir: Path | str | None = None) -> None:
        super().__init__()
        h5py = require("h5py")
        self.root = Path(root)
        self.protocol = protocol
        self.channels = dict(channels or self.CHANNELS)
        self.cache = {} if cache else None
        meta_path = self.root / "meta.json"
        self.meta: dict[str, Any] = {}
        if meta_path.is_file():
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.depth_scale_m = float(self.meta.get("depth_scale_m", 0.001))
        videos_meta = self.meta.get("videos", {})
        splits = _split_list(split)
        for row in read_protocol_csv(protocol_path(self.root, protocol, protocol_dir), columns, bonafide_label):
            if row.fold not in splits:
                continue
            file = self.root / f"{row.path}.hdf5"
            if not file.is_file():
                raise DatasetError(f"{file} listed in protocol {protocol!r} does not exist")
            with h5py.File(file, "r") as h:
                keys = [k for k in h.keys() if k.startswith("Frame_")]
            vid = Path(row.path).name
            vm = videos_meta.get(vid, videos_meta.get(row.path, {})) if isinstance(videos_meta, Mapping) else {}
            subject = vm.get("subject")
            group = vm.get("group")
            for key in select_frames(keys, frames_per_video):
                self.records.append(SampleRef(vid, _frame_number(key), row.is_bonafide, row.pai, row.fold,
                                              {"all": str(file)}, key, None if subject is None else str(subject),
                                              None if group is None else str(group), row.attack_type))
        if not self.records:
            raise DatasetError(f"protocol {protocol!r} has no samples in split(s) {list(splits)} under {self.root}")

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:
        key = (ref.paths["all"], ref.frame_key)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        h5py = require("h5py")
        with h5py.File(ref.paths["all"], "r") as h:
            arr = np.asarray(h[ref.frame_key]["array"])
        if arr.ndim != 3 or arr.shape[0] < 1 + max(max(c) for c in self.channels.values()):
            raise DatasetError(f"{ref.paths['all']}:{ref.frame_key}: expected (5, S, S), got {arr.shape}")
        out = _split_channels(arr, self.channels)
        if self.cache is not None:
            self.cache[key] = out
        return out


def _split_channels(arr: np.ndarray, channels: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for m, chans in channels.items():
        if m == "rgb":
            out[m] = np.clip(arr[list(chans)], 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()
        elif m == "depth":
            out[m] = arr[chans[0]].astype(np.uint16)
        else:
            x = arr[chans[0]]
            out[m] = (np.clip(x, 0, 255) if x.dtype != np.uint8 else x).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------------- WMCA

class WMCADataset(FrameDataset):
    """WMCA preprocessed release: CDIT (4, H, W) = [grey, depth, infrared, thermal] + RGB (3, H, W) HDF5 per video.

    Args:
        cdit_root: folder of the CDIT files (``<cdit_root>/<path>.hdf5``).
        rgb_root: folder of the RGB files (``<rgb_root>/<path>.hdf5``).
        protocol: ``grandtest``, ``LOO_<X>``, ``UNKNOWN_2D|3D`` (``PROTOCOL-<name>.csv`` in ``protocol_dir``) or
            a CSV path.
        protocol_dir: folder of the protocol CSVs.
        split: fold(s) to keep. frames_per_video: evenly spread frames (None = all common frames).
        columns, bonafide_label: CSV layout and polarity (WMCA: 0 = bona fide).
        thermal: also return ``thermal``.
        depth_scale_m: metres per stored depth unit (the preprocessed release stores normalised 8-bit-range
            values: use ``depth_norm: none`` / ``mad`` preprocessing, or re-check against the release notes).

    Frames are the intersection of the CDIT and RGB frame keys (some frames are missing in one stream).
    """

    name = "wmca"

    def __init__(self, cdit_root: Path | str, rgb_root: Path | str, protocol: str, protocol_dir: Path | str,
                 split: str | Sequence[str] = "train", frames_per_video: int | None = None,
                 columns: Sequence[str] = WMCA_COLUMNS, bonafide_label: int = 0, thermal: bool = False,
                 depth_scale_m: float = 0.001) -> None:
        super().__init__()
        h5py = require("h5py")
        self.cdit_root, self.rgb_root = Path(cdit_root), Path(rgb_root)
        self.protocol = protocol
        self.thermal = thermal
        self.depth_scale_m = depth_scale_m
        splits = _split_list(split)
        csv_path = protocol_path(protocol_dir, protocol, protocol_dir)
        skipped = 0
        for row in read_protocol_csv(csv_path, columns, bonafide_label):
            if row.fold not in splits:
                continue
            fc, fr = self.cdit_root / f"{row.path}.hdf5", self.rgb_root / f"{row.path}.hdf5"
            if not fc.is_file() or not fr.is_file():
                skipped += 1
                continue
            with h5py.File(fc, "r") as a, h5py.File(fr, "r") as b:
                keys = sorted(set(k for k in a.keys() if k.startswith("Frame_")) &
                              set(k for k in b.keys() if k.startswith("Frame_")))
            name = Path(row.path).name
            for key in select_frames(keys, frames_per_video):
                self.records.append(SampleRef(row.path, _frame_number(key), row.is_bonafide, row.pai, row.fold,
                                              {"cdit": str(fc), "rgb": str(fr)}, key, name.split("_")[0], None,
                                              row.attack_type))
        if skipped:
            log.warning("WMCA protocol %s: %d listed videos are missing on disk and were skipped", protocol, skipped)
        if not self.records:
            raise DatasetError(f"WMCA protocol {protocol!r}: no samples for split(s) {list(splits)}; check "
                               f"cdit_root={self.cdit_root} and rgb_root={self.rgb_root}")

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:
        h5py = require("h5py")
        with h5py.File(ref.paths["cdit"], "r") as a, h5py.File(ref.paths["rgb"], "r") as b:
            cdit = np.asarray(a[ref.frame_key]["array"])
            rgb = np.asarray(b[ref.frame_key]["array"])
        if cdit.ndim != 3 or cdit.shape[0] != 4 or rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DatasetError(f"{ref.video_id}:{ref.frame_key}: expected CDIT (4,H,W) and RGB (3,H,W), got "
                               f"{cdit.shape} and {rgb.shape}")
        out = {"rgb": np.clip(rgb, 0, 255).astype(np.uint8).transpose(1, 2, 0).copy(),
               "depth": cdit[1].astype(np.uint16),
               "ir": np.clip(cdit[2], 0, 255).astype(np.uint8)}
        if self.thermal:
            out["thermal"] = np.clip(cdit[3], 0, 255).astype(np.uint8)
        return out


# ------------------------------------------------------------------------------------------ image lists

_MOD_FOLDERS = {"color": "rgb", "rgb": "rgb", "profile": "rgb", "depth": "depth", "ir": "ir", "nir": "ir"}


def modality_from_path(path: str) -> str:
    """Modality of an image path: a ``/color|depth|ir/`` folder or a ``-color|-depth|-ir`` file-name suffix.

    Raises:
        DatasetError: neither is present (the column position is never trusted).
    """
    p = path.replace("\\", "/").lower()
    parts = p.split("/")
    for part in reversed(parts[:-1]):
        if part in _MOD_FOLDERS:
            return _MOD_FOLDERS[part]
    stem = parts[-1].rsplit(".", 1)[0]
    m = re.search(r"[-_](color|rgb|depth|ir|nir)$", stem)
    if m:
        return _MOD_FOLDERS[m.group(1)]
    raise DatasetError(f"cannot tell the modality of {path!r}: expected a /color/, /depth/ or /ir/ folder or a "
                       f"-color/-depth/-ir file-name suffix")


def read_image(path: Path | str, modality: str) -> np.ndarray:
    """Read an image file as edgepad raw units (rgb uint8 H×W×3 RGB order; depth uint16; ir uint8)."""
    cv2 = require("cv2")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    if modality == "rgb":
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        return img.astype(np.uint8) if img.dtype == np.uint8 else np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 3:
        img = img[..., 0]
    if modality == "depth":
        return img.astype(np.uint16)
    return img.astype(np.uint8) if img.dtype == np.uint8 else np.clip(img // 257, 0, 255).astype(np.uint8)


class _ListDataset(FrameDataset):
    def _open_list(self, root: Path | str, list_file: Path | str, depth_scale_m: float) -> Path:
        """Set ``root``, ``depth_scale_m`` and ``protocol`` (the list's stem); the list path (relative = to root)."""
        self.root = Path(root)
        self.depth_scale_m = depth_scale_m
        lf = Path(list_file)
        lf = lf if lf.is_absolute() else self.root / lf
        self.protocol = lf.stem
        return lf

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:
        out = {}
        for m, p in ref.paths.items():
            out[m] = read_image(p, m)
        return out


def _read_lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DatasetError(f"list file {path} not found")
    return [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


class CasiaSurfDataset(_ListDataset):
    """CASIA-SURF list files (``color depth ir label``, 1 = bona fide).

    Args:
        root: folder the list paths are relative to.
        list_file: ``train_list.txt`` / ``val_private_list.txt`` / ``test_private_list.txt`` (relative to root or
            absolute).
        split: fold name recorded on the samples.
        bonafide_label: label meaning bona fide (1 in the challenge lists).
        label_column: index of the label column (-1 = last); every other column is an image path whose modality
            is derived from the path (:func:`modality_from_path`).
        depth_scale_m: metres per stored depth unit (CASIA-SURF depth images are 8-bit processed maps).
    """

    name = "casia_surf"

    def __init__(self, root: Path | str, list_file: Path | str, split: str = "train", bonafide_label: int = 1,
                 label_column: int = -1, depth_scale_m: float = 0.001) -> None:
        super().__init__()
        lf = self._open_list(root, list_file, depth_scale_m)
        for n, cols in enumerate(_read_lines(lf)):
            if len(cols) < 2:
                raise DatasetError(f"{lf}:{n + 1}: expected image paths and a label, got {cols}")
            li = label_column % len(cols)
            bona = parse_label(cols[li], bonafide_label, f"{lf}:{n + 1}")
            paths: dict[str, str] = {}
            for i, c in enumerate(cols):
                if i == li:
                    continue
                m = modality_from_path(c)
                if m in paths:
                    raise DatasetError(f"{lf}:{n + 1}: two {m} paths in one line: {cols}")
                paths[m] = str(self.root / c)
            rel = cols[[i for i in range(len(cols)) if i != li][0]].replace("\\", "/")
            video, pai, subject = self._parse_path(rel, bona)
            self.records.append(SampleRef(video, _frame_number(Path(rel).stem), bona, pai, split, paths,
                                          None, subject))
        if not self.records:
            raise DatasetError(f"{lf}: no samples")

    @staticmethod
    def _parse_path(rel: str, bona: bool) -> tuple[str, str, str | None]:
        parts = rel.split("/")
        rss = [i for i, p in enumerate(parts) if p.endswith(".rssdk")]
        if rss:
            i = rss[0]
            video = "/".join(parts[:i + 1])
            subject = parts[i - 1] if i >= 1 else None
            code = parts[i][: -len(".rssdk")].split("_")[0]
            return video, (BONAFIDE if bona else f"print_{code}"), subject
        video = "/".join(parts[:-2]) if len(parts) > 2 else "/".join(parts[:-1])
        return video, (BONAFIDE if bona else "print"), None


class CefaDataset(_ListDataset):
    """CASIA-SURF CeFA protocol lists (``<video_dir>/profile/0001.jpg label``).

    Depth and IR paths replace the ``profile`` folder with ``depth`` / ``ir``. The video folder name
    ``Race_ID_Device_Session_PAI`` gives the PAI (1 real, 2 cloth, 3 picture, 4 screen; masks from a ``3D-Mask``
    or ``Silicone-Mask`` folder) and ``group`` = race (AF / CA / EA).

    Args:
        root: folder the list paths are relative to. list_file: e.g. ``4@1_train.txt``.
        split: fold name recorded on the samples.
        bonafide_label: label meaning bona fide (check the release README; the challenge lists use 1).
        label_column: index of the label column (-1 = last).
        modalities: which modalities to read.
    """

    name = "cefa"
    PAI = {"1": BONAFIDE, "2": "cloth", "3": "picture", "4": "screen"}

    def __init__(self, root: Path | str, list_file: Path | str, split: str = "train", bonafide_label: int = 1,
                 label_column: int = -1, modalities: Sequence[str] = ("rgb", "depth", "ir"),
                 depth_scale_m: float = 0.001) -> None:
        super().__init__()
        lf = self._open_list(root, list_file, depth_scale_m)
        folder = {"rgb": "profile", "depth": "depth", "ir": "ir"}
        for n, cols in enumerate(_read_lines(lf)):
            if len(cols) < 2:
                raise DatasetError(f"{lf}:{n + 1}: expected `path label`, got {cols}")
            li = label_column % len(cols)
            bona = parse_label(cols[li], bonafide_label, f"{lf}:{n + 1}")
            rel = cols[0 if li != 0 else 1].replace("\\", "/")
            parts = rel.split("/")
            if "profile" not in parts:
                raise DatasetError(f"{lf}:{n + 1}: CeFA path {rel!r} has no `profile` folder")
            pi = parts.index("profile")
            paths = {m: str(self.root / "/".join(parts[:pi] + [folder[m]] + parts[pi + 1:])) for m in modalities}
            video = "/".join(parts[:pi])
            code = parts[pi - 1].split("_") if pi >= 1 else []
            pai = self.PAI.get(code[-1], "attack") if len(code) >= 5 else ("bonafide" if bona else "attack")
            low = rel.lower()
            if "3d-mask" in low:
                pai = "mask_3d"
            elif "silicone-mask" in low:
                pai = "mask_silicone"
            if bona != (pai == BONAFIDE):
                raise DatasetError(f"{lf}:{n + 1}: label {cols[li]} contradicts the PAI code of {rel!r}; check "
                                   f"bonafide_label (={bonafide_label})")
            race = code[0] if code else None
            group = {"1": "AF", "2": "CA", "3": "EA"}.get(race, race) if race else None
            subject = f"{group}-{code[1]}" if len(code) >= 2 else None
            self.records.append(SampleRef(video, _frame_number(Path(rel).stem), bona, pai, split, paths, None,
                                          subject, group))
        if not self.records:
            raise DatasetError(f"{lf}: no samples")
