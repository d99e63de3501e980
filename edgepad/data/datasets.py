"""Samples and dataset loaders: synthetic benchmark, WMCA, CASIA-SURF, CeFA (numpy; h5py / cv2 when reading).

Every loader lists lightweight :class:`SampleRef` records at construction (reading protocol files and frame keys,
not pixels) and reads one :class:`Sample` per ``dataset[i]``. Labels are converted at load time: the polarity of
each source is an explicit parameter (``bonafide_label``), the species of an attack is ``pai``; bona fide samples
have ``pai == "bonafide"``. Modalities are addressed by name (``rgb``, ``depth``, ``ir``, ``thermal``), in raw units:
rgb ``uint8 H×W×3`` (RGB order), ir ``uint8 H×W``, depth by its **encoding** (:data:`DEPTH_ENCODINGS`):

- ``mm16``: ``uint16 H×W``, 0 = invalid, metres = value · ``depth_scale_m`` (RealSense units, the benchmark);
- ``uint8_normalised``: ``uint8 H×W``, a per-frame normalised relief map with no metric scale (CASIA-SURF and
  CeFA JPEGs, WMCA 8-bit CDIT); :func:`edgepad.data.transforms.normalise_sample` maps it to the model input
  without a metric step and says so.

The encoding is detected once per dataset (:func:`detect_depth_encoding`: metadata, dtype, value range, file type)
or declared (``depth_encoding=``); an ambiguous one raises :class:`DepthEncodingError`. Layouts (docs/EVALUATION.md,
"Dataset formats"):

- synthetic benchmark / WMCA-style: ``<root>/videos/<id>.hdf5`` with ``Frame_<i>/array`` uint16 (5, S, S) =
  [R, G, B, depth_mm, NIR]; ``<root>/protocols/PROTOCOL-<name>.csv`` (no header, ``path,label,attack_type,fold``,
  label 0 = bona fide); ``<root>/meta.json``.
- WMCA preprocessed: ``<cdit_root>/<path>.hdf5`` with ``Frame_<i>/array`` (4, H, W) = [grey, depth, infrared,
  thermal] (uint8 or uint16) and ``<rgb_root>/<path>.hdf5`` with (3, H, W); frame keys are intersected.
- CASIA-SURF lists: ``color depth ir label`` per line (space separated, 1 = bona fide); the modality of a path
  comes from the path (``/depth/``, ``/ir/``, ``/color/`` folders or ``-depth`` / ``-ir`` / ``-color`` suffixes).
  Train tree ``Training/{real,fake}_part/<ID>/<code>.rssdk/<modality>/<n>.jpg``; flat Val/Testing names
  ``Val/<folder>/<number>-<modality>.jpg`` carry no video id (see :class:`CasiaSurfDataset`).
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

from edgepad._optional import lazy
from edgepad.errors import DatasetError
from edgepad.specs import DEFAULT_MARGIN

h5py = lazy("h5py")
cv2 = lazy("cv2")

log = logging.getLogger(__name__)

#: Depth encodings a loader can produce (see the module docstring).
MM16 = "mm16"
UINT8_NORMALISED = "uint8_normalised"
DEPTH_ENCODINGS = (MM16, UINT8_NORMALISED)

BONAFIDE = "bonafide"
WMCA_COLUMNS = ("path", "label", "attack_type", "fold")


class DepthEncodingError(DatasetError):
    """The depth encoding of a source is ambiguous or contradicts its declaration (declare ``depth_encoding``)."""


_DECLARE = ("declare it in the data section of the config (loader argument depth_encoding=): "
            "`depth_encoding: mm16` (uint16 device units, metres = value · depth_scale_m) or "
            "`depth_encoding: uint8_normalised` (8-bit normalised relief, no metric scale)")
_EIGHT_BIT_FILES = (".jpg", ".jpeg", ".bmp")


def check_depth_encoding(value: str | None) -> str | None:
    """A declared encoding name (None / ``"auto"`` = detect from the data).

    Raises:
        DepthEncodingError: an unknown name.
    """
    if value is None or value == "auto":
        return None
    if value not in DEPTH_ENCODINGS:
        raise DepthEncodingError(f"unknown depth_encoding {value!r}; expected one of {list(DEPTH_ENCODINGS)} "
                                 f"or auto")
    return value


def detect_depth_encoding(depth: np.ndarray, where: str, *, declared: str | None = None,
                          metadata: str | None = None, file_type: str | None = None) -> str:
    """Encoding of a (probe) depth map, by these rules in order.

    1. ``declared`` (config), then ``metadata`` (a ``depth_encoding`` HDF5 attribute or meta.json key), each
       checked against the data: 8-bit data is never ``mm16``; values above 255 are never ``uint8_normalised``.
    2. 8-bit data (``uint8`` dtype, or an 8-bit-only ``file_type`` such as ``.jpg``) -> ``uint8_normalised``.
    3. Integer data of more than 8 bits with values above 255 -> ``mm16``.
    4. Anything else (a 16-bit or float map whose values all fit 0..255, an all-zero map) -> error.

    Args:
        depth: H×W map (or several stacked), as stored. where: file / source named in errors.
        file_type: suffix of the image file (``.jpg``, ``.png``), None for arrays.

    Raises:
        DepthEncodingError: rule 4, an unknown name, or a declaration the data contradicts.
    """
    depth = np.asarray(depth)
    eight_bit = depth.dtype == np.uint8 or (file_type or "").lower() in _EIGHT_BIT_FILES
    vmax = float(depth.max()) if depth.size else 0.0
    for source, value in (("declared", declared), ("metadata", metadata)):
        enc = check_depth_encoding(value)
        if enc is None:
            continue
        if enc == MM16 and eight_bit:
            raise DepthEncodingError(f"{where}: depth_encoding {source} mm16 but the depth is 8-bit "
                                     f"({depth.dtype}{', ' + file_type if file_type else ''}): 8 bits cannot "
                                     f"hold millimetres at face distance; {_DECLARE}")
        if enc == UINT8_NORMALISED and vmax > 255:
            raise DepthEncodingError(f"{where}: depth_encoding {source} uint8_normalised but depth values reach "
                                     f"{vmax:g} (> 255); {_DECLARE}")
        return enc
    if eight_bit:
        return UINT8_NORMALISED
    if np.issubdtype(depth.dtype, np.integer) and vmax > 255:
        return MM16
    raise DepthEncodingError(f"{where}: cannot tell the depth encoding: {depth.dtype} values in 0..{vmax:g} fit "
                             f"both millimetres and an 8-bit normalised map; {_DECLARE}")


def conform_depth(depth: np.ndarray, encoding: str, where: str) -> np.ndarray:
    """One stored depth map as ``encoding`` (``mm16`` -> uint16, ``uint8_normalised`` -> uint8).

    Raises:
        DepthEncodingError: the frame contradicts the dataset's encoding (8-bit data for ``mm16``, values above
        255 for ``uint8_normalised``, negative or non-finite values).
    """
    d = np.asarray(depth)
    if d.dtype.kind == "f":
        if not np.all(np.isfinite(d)) or (d.size and d.min() < 0):
            raise DepthEncodingError(f"{where}: depth has negative or non-finite values; {_DECLARE}")
        d = np.rint(d)
    if encoding == MM16:
        if d.dtype == np.uint8:
            raise DepthEncodingError(f"{where}: 8-bit depth in a source whose encoding is mm16; {_DECLARE}")
        return d.astype(np.uint16)
    if d.size and d.max() > 255:
        raise DepthEncodingError(f"{where}: depth values reach {float(d.max()):g} (> 255) in a source whose "
                                 f"encoding is uint8_normalised; {_DECLARE}")
    return d.astype(np.uint8)


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
        depth_encoding: ``mm16`` (uint16, metric) or ``uint8_normalised`` (uint8, no metric scale;
            ``depth_scale_m`` is then meaningless).
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
    depth_encoding: str = MM16


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
    """``True`` iff ``value`` equals the source's bona fide label (label polarities: docs/EVALUATION.md, Dataset formats)."""
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


def _frame_keys(h) -> set[str]:
    """``Frame_<i>`` groups of an open HDF5 file that hold an ``array`` (a missing frame has no group or no array)."""
    return {k for k in h.keys() if k.startswith("Frame_") and hasattr(h[k], "keys") and "array" in h[k]}


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
    """Base class: ``records`` (list of :class:`SampleRef`), ``len``, ``dataset[i] -> Sample``.

    ``crop_margin``: the margin the stored crops were cut with (window side ``max(w, h)·(1 + margin)``); a dataset
    that does not declare one is taken as 0.25. Training and evaluation refuse a model of another margin.
    """

    name = "dataset"
    crop_margin: float = DEFAULT_MARGIN

    def __init__(self) -> None:
        self.records: list[SampleRef] = []
        self.protocol = ""
        self.depth_scale_m = 0.001
        self.depth_encoding = MM16

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        ref = self.records[i]
        mods = self.read(ref)
        return Sample(mods, ref.is_bonafide, ref.pai, ref.video_id, ref.frame_idx, ref.subject, ref.group,
                      ref.split, self.name, self.protocol, self.depth_scale_m, None, self.depth_encoding)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def raw_depth(self, ref: SampleRef) -> tuple[np.ndarray, str | None, str | None] | None:
        """``(stored depth, file type, metadata encoding)`` of ``ref`` for encoding detection; None = no depth."""
        return None

    def _detect_encoding(self, declared: str | None, probes: int = 3) -> str:
        """Encoding of this dataset's depth from up to ``probes`` records with valid depth (see
        :func:`detect_depth_encoding`); ``declared`` wins when the data agree with it."""
        declared = check_depth_encoding(declared)
        maps, ftype, meta, where = [], None, None, self.name
        for ref in self.records:
            got = self.raw_depth(ref)
            if got is None:
                return declared or MM16
            d, ftype, meta = got
            where = f"{self.name} {ref.paths.get('depth', ref.paths.get('cdit', ref.paths.get('all', '')))}"
            maps.append(np.asarray(d).ravel())
            if np.any(maps[-1]) and len(maps) >= probes:
                break
            if len(maps) >= 4 * probes:
                break
        if not maps:
            return declared or MM16
        enc = detect_depth_encoding(np.concatenate(maps), where, declared=declared, metadata=meta, file_type=ftype)
        if enc == UINT8_NORMALISED:
            log.info("%s: depth is 8-bit normalised (no metric scale); depth_scale_m is not used", where)
        return enc

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
    """The synthetic benchmark (``edgepad synth``, docs/SYNTHETIC.md): 5-channel WMCA-style HDF5 per video + protocol CSVs + meta.json.

    Args:
        root: benchmark folder (``videos/``, ``protocols/``, ``meta.json``).
        protocol: protocol name (``grandtest``, ``LOO_<species>`` …) or a CSV path.
        split: fold name(s) to keep (``train`` / ``dev`` / ``eval``).
        frames_per_video: evenly spread frames per video (None = all).
        columns, bonafide_label: CSV column order and polarity (WMCA: 0 = bona fide).
        channels: channel of each modality in the (5, S, S) array.
        cache: keep decoded frames in memory after the first read (small benchmarks, many epochs).
        depth_encoding: ``mm16`` / ``uint8_normalised`` / None = meta.json ``depth_encoding`` or detected.
    """

    name = "synthbench"
    CHANNELS = {"rgb": (0, 1, 2), "depth": (3,), "ir": (4,)}

    def __init__(self, root: Path | str, protocol: str = "grandtest", split: str | Sequence[str] = "train",
                 frames_per_video: int | None = None, columns: Sequence[str] = WMCA_COLUMNS,
                 bonafide_label: int = 0, channels: Mapping[str, Sequence[int]] | None = None,
                 cache: bool = False, protocol_dir: Path | str | None = None,
                 depth_encoding: str | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.protocol = protocol
        self.channels = dict(channels or self.CHANNELS)
        self.cache = {} if cache else None
        meta_path = self.root / "meta.json"
        self.meta: dict[str, Any] = {}
        if meta_path.is_file():
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.depth_scale_m = float(self.meta.get("depth_scale_m", 0.001))
        gen = self.meta.get("config")
        margin = gen.get("margin", DEFAULT_MARGIN) if isinstance(gen, Mapping) else DEFAULT_MARGIN
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise DatasetError(f"{meta_path}: config.margin must be a number (the crop margin), got {margin!r}")
        self.crop_margin = float(margin)   # the generator's crop margin (edgepad synth --margin)
        videos_meta = self.meta.get("videos", {})
        splits = _split_list(split)
        for row in read_protocol_csv(protocol_path(self.root, protocol, protocol_dir), columns, bonafide_label):
            if row.fold not in splits:
                continue
            file = self.root / f"{row.path}.hdf5"
            if not file.is_file():
                raise DatasetError(f"{file} listed in protocol {protocol!r} does not exist (this loader reads the "
                                   f"benchmark layout <root>/videos/<id>.hdf5; for the WMCA release use a data "
                                   f"config with kind: wmca, see docs/EVALUATION.md)")
            with h5py.File(file, "r") as h:
                keys = sorted(_frame_keys(h))
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
        self.depth_encoding = self._detect_encoding(depth_encoding)

    def _array(self, ref: SampleRef) -> np.ndarray:
        with h5py.File(ref.paths["all"], "r") as h:
            arr = np.asarray(h[ref.frame_key]["array"])
        if arr.ndim != 3 or arr.shape[0] < 1 + max(max(c) for c in self.channels.values()):
            raise DatasetError(f"{ref.paths['all']}:{ref.frame_key}: expected (5, S, S) = [R, G, B, depth, NIR], "
                               f"got {arr.shape} (a WMCA CDIT/RGB file? use kind: wmca)")
        return arr

    def raw_depth(self, ref: SampleRef) -> tuple[np.ndarray, str | None, str | None] | None:
        if "depth" not in self.channels:
            return None
        meta = self.meta.get("depth_encoding")
        return self._array(ref)[self.channels["depth"][0]], None, None if meta is None else str(meta)

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:
        key = (ref.paths["all"], ref.frame_key)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        arr = self._array(ref)
        out = _split_channels(arr, self.channels, self.depth_encoding, f"{ref.paths['all']}:{ref.frame_key}")
        if self.cache is not None:
            self.cache[key] = out
        return out


def _split_channels(arr: np.ndarray, channels: Mapping[str, Sequence[int]], encoding: str = MM16,
                    where: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for m, chans in channels.items():
        if m == "rgb":
            out[m] = np.clip(arr[list(chans)], 0, 255).astype(np.uint8).transpose(1, 2, 0).copy()
        elif m == "depth":
            out[m] = conform_depth(arr[chans[0]], encoding, where)
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
        depth_scale_m: metres per stored depth unit (``mm16`` only).
        depth_encoding: ``mm16`` / ``uint8_normalised`` / None = detected: a ``depth_encoding`` attribute of the
            CDIT file, else uint8 CDIT -> ``uint8_normalised``, uint16 with depth above 255 -> ``mm16``, uint16
            whose depth fits 0..255 -> :class:`DepthEncodingError` (declare it).

    Frames are the intersection of the CDIT and RGB frame keys that hold an ``array`` (frames are missing in one
    stream or the other); listed videos missing on disk are skipped with a warning.
    """

    name = "wmca"

    def __init__(self, cdit_root: Path | str, rgb_root: Path | str, protocol: str, protocol_dir: Path | str,
                 split: str | Sequence[str] = "train", frames_per_video: int | None = None,
                 columns: Sequence[str] = WMCA_COLUMNS, bonafide_label: int = 0, thermal: bool = False,
                 depth_scale_m: float = 0.001, depth_encoding: str | None = None) -> None:
        super().__init__()
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
                keys = sorted(_frame_keys(a) & _frame_keys(b))
            if not keys:
                log.warning("WMCA %s: no frame present in both the CDIT and the RGB file; skipped", row.path)
                skipped += 1
                continue
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
        self.depth_encoding = self._detect_encoding(depth_encoding)

    def raw_depth(self, ref: SampleRef) -> tuple[np.ndarray, str | None, str | None] | None:
        with h5py.File(ref.paths["cdit"], "r") as a:
            cdit = np.asarray(a[ref.frame_key]["array"])
            meta = a.attrs.get("depth_encoding")
        if cdit.ndim != 3 or cdit.shape[0] != 4:
            raise DatasetError(f"{ref.paths['cdit']}:{ref.frame_key}: expected CDIT (4,H,W), got {cdit.shape}")
        if isinstance(meta, bytes):
            meta = meta.decode()
        return cdit[1], None, None if meta is None else str(meta)

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:
        with h5py.File(ref.paths["cdit"], "r") as a, h5py.File(ref.paths["rgb"], "r") as b:
            cdit = np.asarray(a[ref.frame_key]["array"])
            rgb = np.asarray(b[ref.frame_key]["array"])
        if cdit.ndim != 3 or cdit.shape[0] != 4 or rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DatasetError(f"{ref.video_id}:{ref.frame_key}: expected CDIT (4,H,W) and RGB (3,H,W), got "
                               f"{cdit.shape} and {rgb.shape}")
        where = f"{ref.paths['cdit']}:{ref.frame_key}"
        out = {"rgb": _to_8bit(rgb, f"{ref.paths['rgb']}:{ref.frame_key}").transpose(1, 2, 0).copy(),
               "depth": conform_depth(cdit[1], self.depth_encoding, where),
               "ir": _to_8bit(cdit[2], where)}
        if self.thermal:
            out["thermal"] = _to_8bit(cdit[3], where)
        return out


_WARNED_16: set[str] = set()


def _to_8bit(x: np.ndarray, where: str) -> np.ndarray:
    """An intensity channel as uint8: 8-bit-range values as they are; 16-bit values above 255 scaled by ``>> 8``
    (said once per source folder), never clipped silently."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if x.size and (x.max() > 255 or x.min() < 0):
        if x.min() < 0 or x.max() > 65535:
            raise DatasetError(f"{where}: intensity values in {x.min()}..{x.max()} fit neither 8 nor 16 bits")
        key = str(Path(where.split(":")[0]).parent)
        if key not in _WARNED_16:
            _WARNED_16.add(key)
            log.warning("%s: 16-bit intensities (max %s) scaled to 8 bits by >> 8", where, x.max())
        return (x.astype(np.uint32) >> 8).astype(np.uint8)
    return x.astype(np.uint8)


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
    """Read an image file: rgb uint8 H×W×3 (RGB order); ir uint8 H×W; depth H×W **as stored** (uint8 for an
    8-bit file, uint16 for a 16-bit PNG): :func:`conform_depth` gives it the dataset's encoding."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    if modality == "rgb":
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
        return img.astype(np.uint8) if img.dtype == np.uint8 else np.clip(img // 257, 0, 255).astype(np.uint8)
    if img.ndim == 3:
        img = img[..., 0]
    if modality == "depth":
        return img
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

    def raw_depth(self, ref: SampleRef) -> tuple[np.ndarray, str | None, str | None] | None:
        if "depth" not in ref.paths:
            return None
        return read_image(ref.paths["depth"], "depth"), Path(ref.paths["depth"]).suffix, None

    def read(self, ref: SampleRef) -> dict[str, np.ndarray]:
        out = {}
        for m, p in ref.paths.items():
            out[m] = read_image(p, m)
            if m == "depth":
                out[m] = conform_depth(out[m], self.depth_encoding, p)
        return out


def _read_lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DatasetError(f"list file {path} not found")
    return [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


#: CASIA-SURF's six print attacks (Zhang et al., CVPR 2019, section 3): number -> (paper shape, cut regions).
#: The train tree's ``.rssdk`` folder codes spell the same thing: ``04_en_b`` = attack 4, eyes + nose cut, bent.
CASIA_SURF_ATTACKS = {1: ("flat", "e"), 2: ("curved", "e"), 3: ("flat", "en"), 4: ("curved", "en"),
                      5: ("flat", "enm"), 6: ("curved", "enm")}
_CUT = {"e": "eyes", "n": "nose", "m": "mouth"}
_SHAPE = {"f": "flat", "b": "curved", "c": "curved"}
#: Species of CASIA-SURF attacks whose variant no file gives (flat Val/Testing names: lists carry only labels).
CASIA_UNLISTED = "print_variant_unlisted"


def casia_surf_attack(code: str) -> tuple[str, str]:
    """``(species, attack_type)`` of a CASIA-SURF ``.rssdk`` folder code (``04_en_b`` -> ``print_cut_eyes_nose``,
    ``CASIA-SURF attack 4: curved print, eyes+nose cut out``).

    The species names the cut regions (eyes / eyes+nose / eyes+nose+mouth); the attack type also keeps the paper
    shape (flat / curved) and number.

    Raises:
        DatasetError: an unknown code, or a number whose letters contradict the paper's table.
    """
    fields = code.lower().split("_")
    num = int(fields[0]) if fields[0].isdigit() else None
    regions = next((f for f in fields[1:] if f and set(f) <= set(_CUT)), None)
    shape = next((_SHAPE[f] for f in fields[1:] if f in _SHAPE), None)
    if num is not None and num in CASIA_SURF_ATTACKS:
        p_shape, p_regions = CASIA_SURF_ATTACKS[num]
        if (regions is not None and regions != p_regions) or (shape is not None and shape != p_shape):
            raise DatasetError(f"CASIA-SURF attack code {code!r}: number {num} is a {p_shape} print with "
                               f"{p_regions!r} cut out, but the letters say {shape} / {regions!r}")
        shape, regions = p_shape, p_regions
    if regions is None or shape is None:
        raise DatasetError(f"unknown CASIA-SURF attack code {code!r}: expected <n>_<cut regions e/n/m>_<b|f> "
                           f"(e.g. 04_en_b) or a number 1..6")
    cut = [_CUT[c] for c in regions]
    species = "print_cut_" + "_".join(cut)
    n = next((k for k, v in CASIA_SURF_ATTACKS.items() if v == (shape, regions)), "?")
    return species, f"CASIA-SURF attack {n}: {shape} print, {'+'.join(cut)} cut out"


def read_video_map(path: Path | str) -> dict[str, tuple[str, int | None, str | None]]:
    """A video map for flat names: lines ``<key> <video_id> [<frame_idx> [<species>]]`` (space or comma separated).

    ``key`` is the image path without the modality suffix and extension (``Val/0007/007243``). Returns
    ``{key: (video_id, frame_idx or None, species or None)}``.

    Raises:
        DatasetError: missing file, a line with fewer than 2 fields, duplicate keys.
    """
    path = Path(path)
    out: dict[str, tuple[str, int | None, str | None]] = {}
    for n, cols in enumerate(_read_lines(path)):
        cols = [c for part in cols for c in part.split(",") if c]
        if len(cols) < 2 or (len(cols) >= 3 and not cols[2].isdigit()):
            raise DatasetError(f"{path}:{n + 1}: expected `<key> <video_id> [<frame_idx> [<species>]]`, got {cols}")
        key = _flat_key(cols[0])
        if key in out:
            raise DatasetError(f"{path}:{n + 1}: {key!r} listed twice")
        out[key] = (cols[1], int(cols[2]) if len(cols) >= 3 else None, cols[3] if len(cols) >= 4 else None)
    return out


def _flat_key(rel: str) -> str:
    rel = rel.replace("\\", "/")
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    return re.sub(r"[-_](color|rgb|depth|ir|nir)$", "", stem, flags=re.IGNORECASE)


class CasiaSurfDataset(_ListDataset):
    """CASIA-SURF list files (``color depth ir label``, 1 = bona fide), train tree and flat Val/Testing names.

    - Train tree ``Training/{real,fake}_part/<ID>/<code>.rssdk/<modality>/<n>.jpg``: video = the ``.rssdk``
      folder, subject = ``<ID>``, frame = ``<n>``, species from the code (:func:`casia_surf_attack`).
    - Flat names ``Val/<folder>/<number>-<modality>.jpg`` (val/test lists): the name carries no video id and no
      attack variant. Video ids come from ``video_map`` (:func:`read_video_map`) or from the declaration
      ``flat_videos="folder"`` (each folder is one video; frame index = rank of ``<number>`` in the folder);
      neither -> :class:`DatasetError`. Attacks get species :data:`CASIA_UNLISTED` (the lists give only the label)
      unless the video map names one.
    - Depth: the release's 8-bit JPEGs are ``uint8_normalised`` (detected; see :func:`detect_depth_encoding`).

    Args:
        root: folder the list paths are relative to.
        list_file: ``train_list.txt`` / ``val_private_list.txt`` / ``test_private_list.txt`` (relative to root or
            absolute). ``test_public_list.txt`` has no labels and is refused.
        split: fold name recorded on the samples.
        bonafide_label: label meaning bona fide (1 in the challenge lists).
        label_column: index of the label column (-1 = last); every other column is an image path whose modality
            is derived from the path (:func:`modality_from_path`).
        depth_scale_m: metres per stored depth unit (``mm16`` only).
        depth_encoding: ``mm16`` / ``uint8_normalised`` / None = detected.
        flat_videos: ``"folder"`` to declare that each flat-name folder is one video.
        video_map: video map file for flat names (relative = to root).
    """

    name = "casia_surf"

    def __init__(self, root: Path | str, list_file: Path | str, split: str = "train", bonafide_label: int = 1,
                 label_column: int = -1, depth_scale_m: float = 0.001, depth_encoding: str | None = None,
                 flat_videos: str | None = None, video_map: Path | str | None = None) -> None:
        super().__init__()
        lf = self._open_list(root, list_file, depth_scale_m)
        if flat_videos not in (None, "folder"):
            raise DatasetError(f"flat_videos must be 'folder' or unset, got {flat_videos!r}")
        vmap = None
        if video_map is not None:
            vm = Path(video_map)
            vmap = read_video_map(vm if vm.is_absolute() else self.root / vm)
        flat: list[tuple[int, str, bool, dict[str, str]]] = []
        for n, cols in enumerate(_read_lines(lf)):
            if len(cols) < 2:
                raise DatasetError(f"{lf}:{n + 1}: expected image paths and a label, got {cols}")
            li = label_column % len(cols)
            if not re.fullmatch(r"-?\d+(\.\d*)?", cols[li]):
                raise DatasetError(f"{lf}:{n + 1}: no label column (got {cols[li]!r}); a list without labels such "
                                   f"as test_public_list.txt cannot be evaluated: use test_private_list.txt")
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
            parts = rel.split("/")
            rss = [i for i, q in enumerate(parts) if q.endswith(".rssdk")]
            if rss:
                i = rss[0]
                code = parts[i][: -len(".rssdk")]
                if bona != (code.lower() == "real"):
                    raise DatasetError(f"{lf}:{n + 1}: label {cols[li]} contradicts the folder {parts[i]!r}; check "
                                       f"bonafide_label (={bonafide_label})")
                pai, at = (BONAFIDE, BONAFIDE) if bona else casia_surf_attack(code)
                self.records.append(SampleRef("/".join(parts[:i + 1]), _frame_number(Path(rel).stem), bona, pai,
                                              split, paths, None, parts[i - 1] if i >= 1 else None, None, at))
            else:
                flat.append((n, rel, bona, paths))
        if flat:
            self._add_flat(flat, lf, split, flat_videos, vmap)
        if not self.records:
            raise DatasetError(f"{lf}: no samples")
        self.depth_encoding = self._detect_encoding(depth_encoding)

    def _add_flat(self, flat, lf: Path, split: str, flat_videos: str | None, vmap) -> None:
        """Records of flat-named lines: video ids from ``vmap`` or the folder declaration, else an error."""
        if vmap is None and flat_videos is None:
            n, rel = flat[0][0], flat[0][1]
            raise DatasetError(f"{lf}:{n + 1}: {rel!r} is a flat anonymised name with no video id; give a video map "
                               f"(data.video_map: lines `<path without -modality.jpg> <video_id> [<frame_idx>]`) or "
                               f"declare `flat_videos: folder` (each folder is one video); see docs/EVALUATION.md")
        by_video: dict[str, list[tuple[int, str]]] = {}
        rows = []
        for n, rel, bona, paths in flat:
            key = _flat_key(rel)
            species = None
            if vmap is not None:
                if key not in vmap:
                    raise DatasetError(f"{lf}:{n + 1}: {key!r} is not in the video map")
                video, fidx, species = vmap[key]
            else:
                video, fidx = "/".join(key.split("/")[:-1]), None
                if not video:
                    raise DatasetError(f"{lf}:{n + 1}: {rel!r} has no folder to take as the video")
            num = re.search(r"(\d+)$", key)
            if fidx is None and num is None:
                raise DatasetError(f"{lf}:{n + 1}: {rel!r}: no frame number in the name and none in the video map")
            rows.append((n, rel, bona, paths, video, fidx, species))
            by_video.setdefault(video, []).append((int(num.group(1)) if num else 0, key))
        rank = {key: r for v in by_video.values() for r, (_, key) in enumerate(sorted(v))}
        labels: dict[str, bool] = {}
        unlisted = 0
        for n, rel, bona, paths, video, fidx, species in rows:
            if labels.setdefault(video, bona) != bona:
                raise DatasetError(f"{lf}:{n + 1}: video {video!r} has frames labelled both bona fide and attack; "
                                   f"the video map or the flat_videos declaration does not fit this list")
            if bona:
                pai = BONAFIDE
            else:
                pai = species or CASIA_UNLISTED
                unlisted += species is None
            at = BONAFIDE if bona else ("" if species is None else species)
            self.records.append(SampleRef(video, rank[_flat_key(rel)] if fidx is None else fidx, bona, pai, split,
                                          paths, None, None, None, at))
        if unlisted:
            log.warning("%s: %d attack frames have flat names and the list carries no attack type: species %r "
                        "(not a guess at the variant)", lf, unlisted, CASIA_UNLISTED)


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
        depth_scale_m: metres per stored depth unit (``mm16`` only).
        depth_encoding: ``mm16`` / ``uint8_normalised`` / None = detected (the release's JPEG depth is 8-bit).
    """

    name = "cefa"
    PAI = {"1": BONAFIDE, "2": "cloth", "3": "picture", "4": "screen"}

    def __init__(self, root: Path | str, list_file: Path | str, split: str = "train", bonafide_label: int = 1,
                 label_column: int = -1, modalities: Sequence[str] = ("rgb", "depth", "ir"),
                 depth_scale_m: float = 0.001, depth_encoding: str | None = None) -> None:
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
        self.depth_encoding = self._detect_encoding(depth_encoding)
