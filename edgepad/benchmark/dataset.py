"""The synthetic PAD dataset generator (docs/SYNTHETIC.md): WMCA-layout HDF5 videos + protocol CSVs + meta.json.

Layout (the one :class:`edgepad.data.datasets.SynthBenchDataset` reads; docs/SYNTHETIC.md §5)::

    <root>/videos/<video_id>.hdf5       Frame_<i>/array  uint16 (5, S, S) = [R, G, B, depth_mm, NIR]
    <root>/protocols/PROTOCOL-<name>.csv  no header: path,label,attack_type,fold  (label 0 = bona fide)
    <root>/meta.json                    generator version, config, seed, crop size, per-video labels, rig

Each frame is rendered by :mod:`edgepad.synthesis`, its depth registered to colour by
:func:`edgepad.drivers.registration.register_depth` and cropped by :func:`edgepad.preprocess.face_crops` around the
ground-truth face box with a small random jitter — the same crop code the runtime uses on a detected box.

Folds are subject-disjoint (presenters and the identities shown by PAIs both come from the fold's subject pool).
Protocols: ``grandtest``; ``LOO_<species>`` for every attack species; ``UNKNOWN_2D`` / ``UNKNOWN_3D``; cross-domain
``X_sensor``, ``X_illuminant`` (train/dev = grandtest train/dev, eval = videos rendered with the shifted domain) and
``X_range`` (train/dev = grandtest train/dev videos at ≤ 0.8 m, eval = videos rendered at 0.8–1.2 m). With
``randomised``: ``DR_grandtest`` (every fold rendered with camera physics drawn per video, domain ``dr``) and
``X_physics`` (train/dev = DR_grandtest train/dev, eval = the reserved physics combination ``x_phys``), and
``X_physics_nominal`` (the same eval, train/dev = grandtest: what domain randomisation buys). The
missing-modality sub-protocols P1–P4 use grandtest with modalities dropped at test time (no files of their own).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.registration import register_depth
from edgepad.errors import ConfigError, DatasetError
from edgepad.preprocess import face_crops
from edgepad.synthesis import (ATTACK_SPECIES, DOMAINS, FAMILY, GENERATOR_VERSION, SPECIES, RenderCache,
                               default_rig, make_subject, render_frames, sample_presentation)
from edgepad.types import Frame, FrameSet, Modality

log = logging.getLogger(__name__)
h5py = lazy("h5py")

FOLDS = ("train", "dev", "eval")
CHANNELS = ("R", "G", "B", "depth_mm", "NIR")
#: cross-domain eval sets: protocol name -> domain of the eval videos
CROSS_DOMAINS = {"X_sensor": "x_sensor", "X_illuminant": "x_illuminant", "X_range": "x_range_eval"}
#: domain-randomised sets (``randomised``): training domain and the reserved cross-domain eval domain
DR_DOMAIN, X_PHYSICS_DOMAIN = "dr", "x_phys"
#: config fields added after generator 1.0.0, left out of the config mapping while at their default (data hashes
#: of existing benchmark folders hold)
LATE_CONFIG_FIELDS = {"randomised": False}
X_RANGE_TRAIN_MAX_M = 0.8


@dataclass(frozen=True)
class SynthDatasetConfig:
    """What the synthetic dataset generator renders (``edgepad synth``; the ``data`` section of a benchmark matrix).

    Attributes:
        videos_per_species: videos per species and fold (grandtest), bona fide included.
        frames_per_video: frames stored per video.
        frame_stride: frames skipped between stored frames (pose sway between them).
        seed: the single seed everything derives from.
        size_px: crop side S.
        margin: crop margin (``preprocess.face_crops``): the crop side is ``max(w, h)·(1 + margin)`` of the face
            box, in [0, 4].
        box_jitter: ground-truth box jitter (fraction of the box size, uniform ±) for shift and scale.
        subjects_per_fold: subject pool size of each fold (disjoint pools).
        width, height: render size of the colour / IR cameras (4:3; the rig is rescaled).
        cross_domain: also render the cross-domain eval videos (X_sensor, X_illuminant, X_range).
        cross_videos_per_species: eval videos per species for each cross-domain set (None = videos_per_species).
        species: species to include (default all).
        randomised: also render the domain-randomised set (camera physics drawn per video, docs/SYNTHETIC.md, "Camera physics")
            with its protocols ``DR_grandtest`` and (with ``cross_domain``) ``X_physics``.
    """

    videos_per_species: int = 10
    frames_per_video: int = 5
    frame_stride: int = 4
    seed: int = 0
    size_px: int = 112
    margin: float = 0.25
    box_jitter: float = 0.05
    subjects_per_fold: int = 12
    width: int = 640
    height: int = 480
    cross_domain: bool = True
    cross_videos_per_species: int | None = None
    species: tuple[str, ...] = SPECIES
    randomised: bool = False

    def __post_init__(self) -> None:
        if self.videos_per_species < 1 or self.frames_per_video < 1 or self.frame_stride < 1:
            raise ConfigError("videos_per_species, frames_per_video and frame_stride must be >= 1",
                              key="videos_per_species")
        if self.size_px < 8:
            raise ConfigError(f"size_px must be >= 8, got {self.size_px}", key="size_px")
        if self.subjects_per_fold < 2:
            raise ConfigError("subjects_per_fold must be >= 2 (PAIs show another identity)", key="subjects_per_fold")
        if "bonafide" not in self.species or not set(self.species) <= set(SPECIES):
            raise ConfigError(f"species must include bonafide and be among {list(SPECIES)}", key="species")
        if not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin <= 4.0):
            raise ConfigError(f"margin must be in [0, 4], got {self.margin!r}", key="margin")
        if not 0 <= self.box_jitter < 0.5:
            raise ConfigError("box_jitter must be in [0, 0.5)", key="box_jitter")


@dataclass(frozen=True)
class VideoSpec:
    """One video to render."""

    video_id: str
    index: int
    species: str
    subject: int
    victim: int | None
    fold: str
    domain: str


def attack_type(species: str) -> str:
    """WMCA-style attack type string: ``bonafide`` or ``attack/<2D|3D>/<species>``."""
    return "bonafide" if species == "bonafide" else f"attack/{FAMILY[species]}/{species}"


def plan_videos(cfg: SynthDatasetConfig) -> list[VideoSpec]:
    """The deterministic list of videos (grandtest + cross-domain eval sets)."""
    rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, 9001])
    pools = {f: list(range(i * cfg.subjects_per_fold, (i + 1) * cfg.subjects_per_fold)) for i, f in enumerate(FOLDS)}
    specs: list[VideoSpec] = []
    index = 0

    def add(fold: str, domain: str, n: int) -> None:
        nonlocal index
        pool = pools[fold]
        for sp in cfg.species:
            for k in range(n):
                subject = pool[(k + SPECIES.index(sp)) % len(pool)] if n <= len(pool) else \
                    int(pool[int(rng.integers(len(pool)))])
                victim = None
                if sp != "bonafide":
                    others = [s for s in pool if s != subject]
                    victim = int(others[int(rng.integers(len(others)))])
                vid = f"{domain}_{fold}_{sp}_s{subject:03d}_{index:05d}"
                specs.append(VideoSpec(vid, index, sp, int(subject), victim, fold, domain))
                index += 1

    for fold in FOLDS:
        add(fold, "nominal", cfg.videos_per_species)
    n = cfg.cross_videos_per_species or cfg.videos_per_species
    if cfg.cross_domain:
        for dom in CROSS_DOMAINS.values():
            add("eval", dom, n)
    if cfg.randomised:            # after the 1.0.0 videos: their indices (and renders) do not move
        for fold in FOLDS:
            add(fold, DR_DOMAIN, cfg.videos_per_species)
        if cfg.cross_domain:
            add("eval", X_PHYSICS_DOMAIN, n)
    return specs


def config_mapping(cfg: SynthDatasetConfig) -> dict[str, Any]:
    """``dataclasses.asdict(cfg)`` without the late fields at their default (``meta.json`` ``config``, data hash)."""
    d = dataclasses.asdict(cfg)
    for k, default in LATE_CONFIG_FIELDS.items():
        if d.get(k) == default:
            d.pop(k)
    return d


def _jitter_box(box: tuple[int, int, int, int], rng: np.random.Generator, amount: float,
                width: int, height: int) -> tuple[int, int, int, int]:
    x, y, w, h = box
    if amount > 0:
        s = 1.0 + rng.uniform(-amount, amount)
        cx = x + w / 2 + rng.uniform(-amount, amount) * w
        cy = y + h / 2 + rng.uniform(-amount, amount) * h
        w, h = w * s, h * s
        x, y = cx - w / 2, cy - h / 2
    x0, y0 = int(round(max(0, x))), int(round(max(0, y)))
    x1, y1 = int(round(min(width, x + w))), int(round(min(height, y + h)))
    return (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def render_video(spec: VideoSpec, cfg: SynthDatasetConfig, cache: RenderCache | None = None
                 ) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Render, register and crop the frames of one video.

    Returns:
        (frames as uint16 (5, S, S) arrays, per-video metadata).
    """
    rig = cache.rig if cache is not None else default_rig(cfg.width, cfg.height)
    cache = cache or RenderCache(rig, cfg.seed)
    rgb_i, ir_i = rig.intrinsics[Modality.RGB], rig.intrinsics[Modality.IR]
    dep_i = rig.intrinsics[Modality.DEPTH]
    d2c = rig.extrinsics(Modality.DEPTH, Modality.RGB)
    config = DOMAINS[spec.domain]
    out: list[np.ndarray] = []
    for attempt in range(4):
        index = spec.index + attempt * 1_000_003
        p = sample_presentation(index, spec.species, spec.subject, victim=spec.victim, seed=cfg.seed,
                                config=config, domain=spec.domain)
        out = []
        for f in range(cfg.frames_per_video):
            frame = f * cfg.frame_stride
            r = render_frames(p, rig, frame=frame, seed=cfg.seed, sensor=config.sensor, cache=cache)
            if r.truth.face_box_rgb is None:
                continue
            ts = 1_000_000_000 + frame * 33_333_333
            rgb = Frame(Modality.RGB, r.rgb, ts, ts, frame, "synthbench", rgb_i)
            depth = Frame(Modality.DEPTH, r.depth, ts, ts, frame, "synthbench", dep_i, rig.depth_scale_m)
            ir = Frame(Modality.IR, r.ir, ts, ts, frame, "synthbench", ir_i)
            reg = register_depth(depth, rgb_i, d2c, Modality.RGB)
            fs = FrameSet({Modality.RGB: rgb, Modality.DEPTH: reg, Modality.IR: ir}, ts, 0)
            jrng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, 9002, spec.index, f])
            box = _jitter_box(r.truth.face_box_rgb, jrng, cfg.box_jitter, rgb_i.width, rgb_i.height)
            crops = face_crops(fs, box, rig, size_px=cfg.size_px, margin=cfg.margin)
            arr = np.empty((5, cfg.size_px, cfg.size_px), np.uint16)
            arr[0:3] = crops[Modality.RGB].transpose(2, 0, 1)
            arr[3] = crops[Modality.DEPTH]
            arr[4] = crops[Modality.IR]
            out.append(arr)
        if out:
            break
    if not out:
        raise DatasetError(f"video {spec.video_id}: the face left the image in every attempt")
    subj = make_subject(spec.subject, cfg.seed)
    meta = {"subject": spec.subject, "group": subj.group, "species": spec.species,
            "attack_type": attack_type(spec.species), "label": 0 if spec.species == "bonafide" else 1,
            "fold": spec.fold, "domain": spec.domain, "victim": spec.victim, "frames": len(out),
            "distance_m": round(p.distance_m, 4), "yaw_deg": round(p.yaw_deg, 2), "pitch_deg": round(p.pitch_deg, 2),
            "presentation_index": index}
    return out, meta


def write_video(path: Path, frames: Sequence[np.ndarray]) -> None:
    """Write ``Frame_<i>/array`` datasets (deterministic bytes: no timestamps)."""
    tmp = path.with_suffix(".hdf5.tmp")
    with h5py.File(tmp, "w", track_order=True) as h:
        for i, arr in enumerate(frames):
            g = h.create_group(f"Frame_{i}", track_order=True)
            g.create_dataset("array", data=arr, track_times=False)
    os.replace(tmp, path)


_WORKER: dict[str, Any] = {}


def _worker_init(cfg: SynthDatasetConfig, root: str) -> None:
    _WORKER["cfg"] = cfg
    _WORKER["root"] = Path(root)
    _WORKER["cache"] = RenderCache(default_rig(cfg.width, cfg.height), cfg.seed)


def _worker_run(spec: VideoSpec) -> tuple[str, dict[str, Any]]:
    frames, meta = render_video(spec, _WORKER["cfg"], _WORKER["cache"])
    write_video(_WORKER["root"] / "videos" / f"{spec.video_id}.hdf5", frames)
    return spec.video_id, meta


def protocols(specs: Sequence[VideoSpec], metas: dict[str, dict[str, Any]],
              species: Sequence[str] = SPECIES) -> dict[str, list[tuple[str, int, str, str]]]:
    """Protocol rows ``(path, label, attack_type, fold)`` per protocol name."""
    def row(s: VideoSpec) -> tuple[str, int, str, str]:
        return (f"videos/{s.video_id}", 0 if s.species == "bonafide" else 1, attack_type(s.species), s.fold)

    nominal = [s for s in specs if s.domain == "nominal"]
    out: dict[str, list] = {"grandtest": [row(s) for s in nominal]}
    for sp in species:
        if sp == "bonafide":
            continue
        out[f"LOO_{sp}"] = [row(s) for s in nominal
                            if (s.fold != "eval" and s.species != sp) or
                            (s.fold == "eval" and s.species in ("bonafide", sp))]
    for fam, other in (("2D", "3D"), ("3D", "2D")):
        out[f"UNKNOWN_{fam}"] = [row(s) for s in nominal
                                 if s.species == "bonafide" or
                                 (s.fold != "eval" and FAMILY[s.species] == other) or
                                 (s.fold == "eval" and FAMILY[s.species] == fam)]
    for name, dom in CROSS_DOMAINS.items():
        shifted = [s for s in specs if s.domain == dom]
        if not shifted:
            continue
        train = [s for s in nominal if s.fold != "eval"]
        if name == "X_range":
            train = [s for s in train if metas[s.video_id]["distance_m"] <= X_RANGE_TRAIN_MAX_M]
        out[name] = [row(s) for s in train] + [row(s) for s in shifted]
    dr = [s for s in specs if s.domain == DR_DOMAIN]
    if dr:
        out["DR_grandtest"] = [row(s) for s in dr]
        xp = [s for s in specs if s.domain == X_PHYSICS_DOMAIN]
        if xp:
            out["X_physics"] = [row(s) for s in dr if s.fold != "eval"] + [row(s) for s in xp]
            out["X_physics_nominal"] = [row(s) for s in nominal if s.fold != "eval"] + [row(s) for s in xp]
    return out


def generate(root: Path | str, cfg: SynthDatasetConfig, workers: int = 1,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate the benchmark into ``root`` (created; existing generated files are overwritten).

    Args:
        root: output folder.
        cfg: what to generate.
        workers: processes (1 = in this process).
        progress: called as ``progress(done, total)`` after each video.

    Returns:
        The meta.json content plus ``{"timing": {"seconds", "samples", "samples_per_s"}}`` (timing not written).
    """
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "protocols").mkdir(parents=True, exist_ok=True)
    specs = plan_videos(cfg)
    metas: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    if workers <= 1:
        _worker_init(cfg, str(root))
        for i, s in enumerate(specs):
            vid, meta = _worker_run(s)
            metas[vid] = meta
            if progress:
                progress(i + 1, len(specs))
    else:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(cfg, str(root))) as pool:
            for i, (vid, meta) in enumerate(pool.imap_unordered(_worker_run, specs, chunksize=2)):
                metas[vid] = meta
                if progress:
                    progress(i + 1, len(specs))
    seconds = time.perf_counter() - t0
    protos = protocols(specs, metas, cfg.species)
    for name, rows in protos.items():
        with (root / "protocols" / f"PROTOCOL-{name}.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            for r in rows:
                w.writerow(r)
    rig = default_rig(cfg.width, cfg.height)
    meta = {
        "generator": "edgepad.benchmark.dataset", "generator_version": GENERATOR_VERSION,
        "seed": cfg.seed, "config": _jsonable(config_mapping(cfg)), "size_px": cfg.size_px,
        "channels": list(CHANNELS), "depth_scale_m": rig.depth_scale_m, "depth_registered_to": "rgb",
        "label_polarity": {"bonafide": 0, "attack": 1}, "folds": list(FOLDS),
        "subjects": {f: list(range(i * cfg.subjects_per_fold, (i + 1) * cfg.subjects_per_fold))
                     for i, f in enumerate(FOLDS)},
        "protocols": sorted(protos), "domains": {k: _jsonable(dataclasses.asdict(v)) for k, v in DOMAINS.items()
                                                 if k in ("nominal", *CROSS_DOMAINS.values()) or
                                                 (cfg.randomised and k in (DR_DOMAIN, X_PHYSICS_DOMAIN))},
        "missing_modality": "P1 rgb, P2 rgb+depth, P3 rgb+ir, P4 rgb+depth+ir: grandtest data with the other "
                            "modalities dropped at test time (filled with the model's missing_fill)",
        "rig": rig.to_dict(),
        "videos": {s.video_id: metas[s.video_id] for s in specs},
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    samples = sum(m["frames"] for m in metas.values())
    meta["timing"] = {"seconds": seconds, "samples": samples, "samples_per_s": samples / max(seconds, 1e-9),
                      "videos": len(specs), "workers": workers}
    return meta


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def species_counts(rows: Iterable[tuple[str, int, str, str]]) -> dict[str, dict[str, int]]:
    """``{fold: {attack_type: n}}`` of protocol rows (for reports and tests)."""
    out: dict[str, dict[str, int]] = {}
    for _, _, at, fold in rows:
        out.setdefault(fold, {}).setdefault(at, 0)
        out[fold][at] += 1
    return out


__all__ = ["SynthDatasetConfig", "VideoSpec", "config_mapping", "plan_videos", "render_video", "write_video", "protocols", "generate",
           "attack_type", "species_counts", "ATTACK_SPECIES", "CROSS_DOMAINS", "DR_DOMAIN", "X_PHYSICS_DOMAIN", "FOLDS",
           "CHANNELS"]
