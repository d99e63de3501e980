"""SyntheticSource: a deterministic RGB + depth + near-IR camera rendering faces and presentation attacks.

``synthetic://default?seed=3&fps=30`` — numpy only. The scene cycles through presentations of
``presentation_frames`` frame sets each (bona fide faces and PAI species, docs/SYNTHETIC.md); every frame set has
ground truth through :meth:`SyntheticSource.truth`. Depth and IR come from the left-IR camera of the source's
calibrated :attr:`rig` (15 mm from the colour camera, slightly rotated, colour lens distorted), so a consumer must
register depth to colour exactly as with a RealSense. Physics and options: ``docs/SYNTHETIC.md``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, ClassVar

import numpy as np

from edgepad.config import suggest
from edgepad.drivers.base import BaseSource
from edgepad.errors import ConfigError, EndOfStream
from edgepad.geometry import Rig
from edgepad.synthesis import (SPECIES, Presentation, RenderCache, RenderedFrames, SceneConfig, default_rig,
                               domain_config, face_box, frame_pose, render_frames, sample_presentation)
from edgepad.types import Frame, Modality, parse_modalities

log = logging.getLogger(__name__)

#: scene name -> species cycle; "demo" interleaves bona fide faces with every attack species
_SCENES = {"default": SPECIES, "bonafide": ("bonafide",), "attacks": SPECIES[1:],
           "demo": tuple(x for a in SPECIES[1:] for x in ("bonafide", a))}
_START_NS = 1_000_000_000  # synthetic clock origin when realtime=False


def parse_species(species: object, location: str = "default") -> tuple[str, ...]:
    """Species list from ``species`` (None, ``"a,b"`` or a sequence) or the scene name ``location``."""
    if species is None or species == "":
        if location in _SCENES:
            return tuple(_SCENES[location])
        if location in SPECIES:
            return (location,)
        raise ConfigError(f"unknown synthetic scene {location!r}; known: {sorted(_SCENES)} or a species name",
                          key="location", suggestions=suggest(location, list(_SCENES) + list(SPECIES)))
    items = [s.strip() for s in species.replace("+", ",").split(",")] if isinstance(species, str) else \
        [str(s) for s in species]  # type: ignore[union-attr]
    out = []
    for s in items:
        if not s:
            continue
        if s == "all":
            out.extend(x for x in SPECIES if x not in out)
            continue
        if s not in SPECIES:
            raise ConfigError(f"unknown species {s!r}; known: {list(SPECIES)}", key="species",
                              suggestions=suggest(s, SPECIES))
        if s not in out:
            out.append(s)
    if not out:
        raise ConfigError("species list is empty", key="species")
    return tuple(out)


class SyntheticSource(BaseSource):
    """A seeded synthetic RGB-D-IR camera with ground truth.

    Args:
        location: scene: ``default`` (all species), ``bonafide``, ``attacks`` or one species name.
        seed: everything (subjects, poses, noise, jitter) is a function of the seed.
        fps: frame rate of every stream.
        width, height: colour (and IR/depth) image size, 4:3 (the rig is rescaled).
        frames: number of frame sets, 0 = endless; afterwards ``read`` raises EndOfStream.
        realtime: pace ``read`` to the wall clock (timestamps from the host monotonic clock); else as fast as
            rendered, with a synthetic clock starting at 1 s.
        presentation_frames: frame sets per presentation (the species changes between presentations).
        species: species to cycle through (None = those of ``location``); comma string or sequence.
        subjects: size of the subject pool the presenters are drawn from.
        domain: scene distribution (``demo`` default: 0.35–0.9 m, ±30° pose; ``nominal``, ``x_sensor``,
            ``x_illuminant``, ``x_range_train``, ``x_range_eval``).
        modalities: streams to emit (default rgb, depth, ir).
        jitter_ms: σ of the per-stream timestamp jitter (clipped to ±0.3 period, so each stream stays monotonic).
        drop_prob: probability that a frame of a stream is dropped (its sequence number is skipped).
        clock_offset_ms: device clock = host clock − offset (``device_timestamp_ns``).
        stream_offset_ms: constant timestamp offset of the depth/IR streams relative to rgb (|x| < period/2).
        shuffle: draw species in a seeded random order instead of cycling in order.
    """

    #: options a ``synthetic://`` URI may carry (checked and parsed by :func:`edgepad.drivers.registry.check_options`)
    URI_OPTIONS: ClassVar[dict[str, Any]] = {
        "seed": int, "fps": float, "width": int, "height": int, "frames": int, "realtime": bool,
        "presentation_frames": int, "species": str, "subjects": int, "domain": str, "modalities": str,
        "jitter_ms": float, "drop_prob": float, "clock_offset_ms": float, "stream_offset_ms": float, "shuffle": bool}

    def __init__(self, location: str = "default", seed: int = 0, fps: float = 30.0, width: int = 640,
                 height: int = 480, frames: int = 0, realtime: bool = False, presentation_frames: int = 45,
                 species: object = None, subjects: int = 20, domain: str = "demo",
                 modalities: object = ("rgb", "depth", "ir"), jitter_ms: float = 1.0, drop_prob: float = 0.0,
                 clock_offset_ms: float = 0.0, stream_offset_ms: float = 0.0, shuffle: bool = False) -> None:
        location = location.strip("/") or "default"
        mods = parse_modalities(modalities)
        super().__init__(f"synthetic://{location}", mods)
        self.location = location
        self.species = parse_species(species, location)
        if not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise ConfigError(f"synthetic source: fps must be in (0, 1000], got {fps!r}", key="fps")
        if int(frames) < 0 or int(presentation_frames) < 1 or int(subjects) < 1:
            raise ConfigError("synthetic source: frames >= 0, presentation_frames >= 1 and subjects >= 1 needed",
                              key="frames")
        if not 0.0 <= float(drop_prob) < 1.0:
            raise ConfigError(f"synthetic source: drop_prob must be in [0, 1), got {drop_prob}", key="drop_prob")
        self.seed = int(seed)
        self.fps = float(fps)
        self.period_ns = int(round(1e9 / self.fps))
        if abs(float(stream_offset_ms)) * 1e6 >= self.period_ns / 2:
            raise ConfigError("synthetic source: |stream_offset_ms| must be below half a frame period",
                              key="stream_offset_ms")
        self.frames = int(frames)
        self.realtime = bool(realtime)
        self.late_sets = 0           # realtime: frame sets skipped because rendering fell behind the clock
        self.presentation_frames = int(presentation_frames)
        self.subjects = int(subjects)
        self.domain = str(domain)
        self.config: SceneConfig = domain_config(self.domain)
        self.jitter_ns = float(jitter_ms) * 1e6
        self.drop_prob = float(drop_prob)
        self.clock_offset_ns = int(round(float(clock_offset_ms) * 1e6))
        self.stream_offset_ns = int(round(float(stream_offset_ms) * 1e6))
        self.shuffle = bool(shuffle)
        self.rig: Rig = default_rig(int(width), int(height))
        self._cache: RenderCache | None = None
        self._pending: list[Frame] = []
        self._next_set = 0
        self._start_ns = _START_NS
        self._presentations: dict[int, Presentation] = {}

    # ------------------------------------------------------------------------------------------- ground truth
    def presentation(self, index: int) -> Presentation:
        """Base presentation ``index`` (pose of its first frame, no face box)."""
        if index not in self._presentations:
            if len(self._presentations) > 64:
                self._presentations.clear()
            if self.shuffle:
                rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 8001, index])
                species = self.species[int(rng.integers(len(self.species)))]
            else:
                species = self.species[index % len(self.species)]
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 8002, index])
            subject = int(rng.integers(self.subjects))
            victim = int((subject + 1 + rng.integers(self.subjects - 1)) % self.subjects) if self.subjects > 1 \
                else subject + 100000
            self._presentations[index] = sample_presentation(index, species, subject, victim=victim,
                                                             seed=self.seed, config=self.config, domain=self.domain)
        return self._presentations[index]

    def truth(self, sequence: int) -> Presentation:
        """Ground truth of frame set ``sequence`` (any stream's ``Frame.sequence``): species, pose, face box."""
        if sequence < 0:
            raise ConfigError(f"sequence must be >= 0, got {sequence}", key="sequence")
        return self._render(sequence, truth_only=True)  # type: ignore[return-value]

    def render(self, sequence: int) -> RenderedFrames:
        """Render frame set ``sequence`` without emitting it (for tests and tools)."""
        return self._render(sequence)  # type: ignore[return-value]

    def _render(self, sequence: int, truth_only: bool = False) -> RenderedFrames | Presentation:
        if self._cache is None:
            self._cache = RenderCache(self.rig, self.seed)
        p = self.presentation(sequence // self.presentation_frames)
        frame = sequence % self.presentation_frames
        if truth_only:
            pose = frame_pose(p, frame)
            box = face_box(p, self._cache.surface(p), pose.r, pose.t, self.rig.intrinsics[Modality.RGB])
            return dataclasses.replace(p, face_box_rgb=box, distance_m=pose.distance_m, yaw_deg=pose.yaw_deg,
                                       pitch_deg=pose.pitch_deg, roll_deg=pose.roll_deg, frame=frame)
        return render_frames(p, self.rig, frame=frame, seed=self.seed + sequence // self.presentation_frames,
                             sensor=self.config.sensor, cache=self._cache)

    # ------------------------------------------------------------------------------------------- lifecycle
    def _open_impl(self) -> None:
        if self._cache is None:
            self._cache = RenderCache(self.rig, self.seed)
        self._pending = []
        self._next_set = 0
        self._start_ns = time.monotonic_ns() if self.realtime else _START_NS

    def _close_impl(self) -> None:
        self._pending = []

    def timestamps(self, sequence: int) -> dict[Modality, int | None]:
        """Host timestamps (ns) of frame set ``sequence`` per stream; None where the frame is dropped."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 8003, sequence])
        base = self._start_ns + sequence * self.period_ns
        lim = 0.3 * self.period_ns
        out: dict[Modality, int | None] = {}
        depth_j, depth_drop = 0.0, False
        for m in (Modality.RGB, Modality.DEPTH, Modality.IR):
            j = float(np.clip(rng.normal(0.0, self.jitter_ns), -lim, lim)) if self.jitter_ns > 0 else 0.0
            off = 0 if m is Modality.RGB else self.stream_offset_ns
            drop = self.drop_prob > 0 and rng.random() < self.drop_prob
            if m is Modality.IR:
                j = depth_j + 0.02 * j  # depth and IR come from the same exposure on a D4xx
                drop = depth_drop or drop
            if m is Modality.DEPTH:
                depth_j, depth_drop = j, drop
            out[m] = None if drop else int(base + off + round(j))
        return out

    def _emit_set(self, k: int) -> None:
        ts = self.timestamps(k)
        if not any(ts[m] is not None for m in self.modalities):
            return
        r = self._render(k)
        data = {Modality.RGB: r.rgb, Modality.DEPTH: r.depth, Modality.IR: r.ir}
        for m in sorted(self.modalities, key=lambda m: m.value):
            t = ts[m]
            if t is None:
                continue
            intr = self.rig.intrinsics[m]
            self._pending.append(Frame(m, data[m], t, t - self.clock_offset_ns, k, self.uri, intr,
                                       self.rig.depth_scale_m if m is Modality.DEPTH else None, None))

    def _read_impl(self, timeout_s: float) -> Frame | None:
        if self.realtime:
            self._skip_late()
        # keep one frame set of look-ahead so frames leave in timestamp order across streams
        while True:
            exhausted = self.frames and self._next_set >= self.frames
            earliest_next = self._start_ns + self._next_set * self.period_ns - int(0.8 * self.period_ns)
            if self._pending:
                first = min(self._pending, key=lambda f: f.timestamp_ns)
                if exhausted or first.timestamp_ns <= earliest_next:
                    break
            elif exhausted:
                raise EndOfStream(self.uri)
            self._emit_set(self._next_set)
            self._next_set += 1
        if self.realtime:
            wait_s = (first.timestamp_ns - time.monotonic_ns()) / 1e9
            if wait_s > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait_s > 0:
                time.sleep(wait_s)
        self._pending.remove(first)
        return first

    def _skip_late(self) -> None:
        """Realtime: frame sets whose time has passed and that are not rendered yet are skipped (a renderer
        slower than ``fps`` then serves the current set at its own rate instead of an ever older backlog);
        counted in ``late_sets``."""
        due = (time.monotonic_ns() - self._start_ns) // self.period_ns     # the set due now
        if self.frames:
            due = min(due, self.frames)
        if due > self._next_set:
            self.late_sets += due - self._next_set
            self._next_set = due

    def read_set(self, timeout_s: float = 1.0) -> dict[Modality, Frame]:
        """Convenience for tests: the frames of the next frame set (dropped streams absent)."""
        out: dict[Modality, Frame] = {}
        seq = None
        while True:
            if self._pending and seq is not None and all(f.sequence != seq for f in self._pending):
                return out
            f = self.read(timeout_s)
            if f is None:
                return out
            if seq is None:
                seq = f.sequence
            if f.sequence != seq:
                self._pending.append(f)
                return out
            out[f.modality] = f


def frames_for(presentation: Presentation, rig: Rig | None = None, **kwargs: Any) -> RenderedFrames:
    """Render one frame set of ``presentation`` (thin alias of :func:`edgepad.synthesis.render_frames`)."""
    return render_frames(presentation, rig, **kwargs)

