"""Recordings of our own: :class:`Recorder` writes a session, :class:`ReplaySource` plays it back.

Layout of a session directory (see docs/DRIVERS.md for why we do not use RealSense's recorder)::

    session.json      {"format": "edgepad-session", "version": 2, "encoding": "png", "source": uri,
                       "modalities": [...], "fps": 30.0, "streams": {m: {"intrinsics": {...}, "depth_scale_m": ..}},
                       "device": {...}, "frames": N, "complete": true}
    rig.json          the rig (edgepad.geometry.save_rig), when the source had one
    index.jsonl       one line per frame, in capture order: {"modality", "file", "timestamp_ns",
                       "device_timestamp_ns", "sequence", "depth_scale_m"}
    <modality>/<n>.png  the pixels, lossless (encoding "png", the default): rgb 8-bit colour, depth 16-bit grey
                       (raw units), ir 8- or 16-bit grey; PNG level 1, RLE strategy (OpenCV)
    <modality>/<n>.npy  the pixels (encoding "npy", and every version-1 session): np.save, uncompressed

A frame is read by its file's suffix, so both encodings replay bit-exactly. ``index.jsonl`` is appended and
flushed frame by frame, after the frame's file is complete, so a session cut short by a crash still replays up to
its last complete line. Sizes and write/read costs per frame set: docs/DRIVERS.md.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.base import BaseSource
from edgepad.drivers.registry import open_source
from edgepad.errors import ConfigError, EndOfStream, SourceError
from edgepad.geometry import Intrinsics, Rig, load_rig, save_rig
from edgepad.types import Frame, FrameSet, Modality, make_frame, parse_modalities

log = logging.getLogger(__name__)

cv2 = lazy("cv2", "vision")

FORMAT = "edgepad-session"
VERSION = 2
#: session versions this module reads (1: .npy only)
READABLE = (1, 2)
#: frame encodings :class:`Recorder` writes
ENCODINGS = ("png", "npy")
_PNG_PARAMS = (16, 1, 17, 3)  # IMWRITE_PNG_COMPRESSION 1 (fastest zlib), IMWRITE_PNG_STRATEGY 3 (RLE)


def write_pixels(path: Path, data: np.ndarray) -> None:
    """Write one frame's pixels by ``path``'s suffix: ``.png`` (lossless, colour given as RGB) or ``.npy``."""
    a = np.ascontiguousarray(data)
    if path.suffix == ".png":
        ok, buf = cv2.imencode(".png", a[..., ::-1] if a.ndim == 3 else a, list(_PNG_PARAMS))
        if not ok:
            raise SourceError(f"PNG encoding failed for {path.name}", str(path.parent))
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)
    else:
        np.save(path, a, allow_pickle=False)


def read_pixels(path: Path) -> np.ndarray:
    """Read pixels written by :func:`write_pixels` (RGB order for colour), bit-exactly."""
    if path.suffix == ".png":
        a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if a is None:
            raise ValueError(f"not a readable PNG: {path}")
        return np.ascontiguousarray(a[..., ::-1]) if a.ndim == 3 else a
    return np.load(path, allow_pickle=False)


def _intr_dict(i: Intrinsics) -> dict:
    return {"width": i.width, "height": i.height, "fx": i.fx, "fy": i.fy, "cx": i.cx, "cy": i.cy,
            "distortion": i.distortion, "coeffs": list(i.coeffs)}


class Recorder:
    """Write frames to a session directory.

    Args:
        directory: output folder (created; must be empty unless ``overwrite``).
        rig: the camera model to store with the session.
        source: URI of what is recorded (provenance).
        fps: nominal rate (stored; replay and sync use it).
        device: free-form device info (serial, firmware …).
        overwrite: replace an existing session.
        encoding: ``"png"`` (lossless PNG, about 3.8x smaller than raw; the default) or ``"npy"`` (raw).
        writers: threads encoding frames in parallel (PNG encoding releases the GIL); 0 = on the caller's thread.

    Use as a context manager; :meth:`close` waits for the writers and finalises ``session.json``.
    """

    def __init__(self, directory: Path | str, rig: Rig | None = None, *, source: str = "", fps: float | None = None,
                 device: dict | None = None, overwrite: bool = False, encoding: str = "png",
                 writers: int = 3) -> None:
        if encoding not in ENCODINGS:
            raise ConfigError(f"unknown recording encoding {encoding!r}; known: {', '.join(ENCODINGS)}",
                              key="encoding")
        if encoding == "png":
            cv2.imencode  # fail now (MissingDependencyError), not on the first frame
        self.directory = Path(directory)
        if self.directory.exists() and any(self.directory.iterdir()):
            if not overwrite:
                raise ConfigError(f"{self.directory} is not empty; choose another --out or pass overwrite=True",
                                  key="out")
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rig, self.source, self.fps, self.device = rig, source, fps, dict(device or {})
        self.encoding = encoding
        self.frames = 0
        self.counts: dict[Modality, int] = {}
        self._streams: dict[str, dict] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(writers, "edgepad-record") if writers > 0 else None
        self._writing: collections.deque[tuple[concurrent.futures.Future, str]] = collections.deque()
        self._max_writing = 4 * max(1, writers)
        self._index = open(self.directory / "index.jsonl", "w", encoding="utf-8")
        if rig is not None:
            save_rig(rig, self.directory / "rig.json")
        self._write_session(complete=False)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_session(self, complete: bool) -> None:
        doc = {"format": FORMAT, "version": VERSION, "encoding": self.encoding, "source": self.source,
               "modalities": [m.value for m in self.counts] or [], "fps": self.fps, "streams": self._streams,
               "device": self.device, "frames": self.frames, "counts": {m.value: n for m, n in self.counts.items()},
               "complete": complete}
        tmp = self.directory / "session.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2))
        tmp.replace(self.directory / "session.json")

    def write(self, frame: Frame) -> None:
        """Append one frame: pixels to ``<modality>/<n>.png`` (or ``.npy``), then a line to ``index.jsonl``.

        With writer threads the pixels are encoded in the background; index lines are still written in call
        order, each once its file is complete.
        """
        if self._index.closed:
            raise SourceError("recorder is closed", str(self.directory))
        m = frame.modality
        n = self.counts.get(m, 0)
        suffix = self.encoding  # Frame layouts (uint8/uint16, grey or 3-channel colour) all fit PNG
        rel = f"{m.value}/{n:06d}.{suffix}"
        (self.directory / m.value).mkdir(exist_ok=True)
        if self._pool is None:
            write_pixels(self.directory / rel, frame.data)
        else:
            fut = self._pool.submit(write_pixels, self.directory / rel, frame.data)
        stream = self._streams.setdefault(m.value, {"intrinsics": _intr_dict(frame.intrinsics),
                                                    "depth_scale_m": frame.depth_scale_m})
        line = {"modality": m.value, "file": rel, "timestamp_ns": int(frame.timestamp_ns),
                "device_timestamp_ns": frame.device_timestamp_ns, "sequence": int(frame.sequence),
                "depth_scale_m": frame.depth_scale_m}
        if _intr_dict(frame.intrinsics) != stream["intrinsics"]:
            line["intrinsics"] = _intr_dict(frame.intrinsics)
        if frame.registered_to is not None:
            line["registered_to"] = frame.registered_to.value
        self.counts[m] = n + 1
        self.frames += 1
        if self._pool is None:
            self._index.write(json.dumps(line) + "\n")
            self._index.flush()
            return
        self._writing.append((fut, json.dumps(line) + "\n"))
        self._drain(block=len(self._writing) > self._max_writing)

    def _drain(self, block: bool = False, everything: bool = False) -> None:
        """Write the index lines of the frames whose files are complete (in order); re-raise a writer's error."""
        wrote = False
        while self._writing and (everything or block or self._writing[0][0].done()):
            fut, text = self._writing.popleft()
            exc = fut.exception()
            if exc is not None:
                raise SourceError(f"cannot write a frame: {exc}", str(self.directory)) from exc
            self._index.write(text)
            wrote, block = True, False
        if wrote:
            self._index.flush()

    def write_set(self, frameset: FrameSet) -> None:
        for m in sorted(frameset.frames, key=lambda x: frameset.frames[x].timestamp_ns):
            self.write(frameset.frames[m])

    def close(self) -> None:
        if not self._index.closed:
            try:
                self._drain(everything=True)
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=True)
                self._index.close()
                self._write_session(complete=True)


class ReplaySource(BaseSource):
    """Play a session written by :class:`Recorder` (``replay:///path/to/dir``).

    Args:
        location: the session directory.
        realtime: pace frames at their recorded timing (True) or as fast as possible (False).
        modalities: play only these (default: all recorded).
        loop: start again at the end instead of raising EndOfStream. Each lap continues the numbering: lap ``k``
            adds ``k * (span + one period)`` to ``timestamp_ns`` and ``device_timestamp_ns`` (span = first to last
            recorded timestamp) and ``k * (last - first + 1)`` to each stream's ``sequence``, so a looped replay
            looks like one long, gap-free recording (the sensor-integrity checks see no repeat or backwards step).
        speed: time scale for realtime playback (2.0 = twice as fast).
        host_clock: with ``realtime``, stamp each frame with the host monotonic time it is due (as a live
            camera's driver maps its timestamps to the host clock), so frame → decision latency can be measured
            on a replay (``edgepad bench`` then reports end-to-end on the host clock).

    Frames carry their recorded timestamps (``timestamp_ns`` as captured, host monotonic at recording time)
    unless ``host_clock``; ``device_timestamp_ns`` is always the recorded one.
    """

    #: options a ``replay://`` URI may carry (checked and parsed by :func:`edgepad.drivers.registry.check_options`)
    URI_OPTIONS: ClassVar[dict[str, Any]] = {"realtime": bool, "modalities": str, "loop": bool, "speed": float,
                                             "host_clock": bool}

    def __init__(self, location: str | Path, realtime: bool = False, modalities: Sequence[Modality | str] |
                 str | None = None, loop: bool = False, speed: float = 1.0, host_clock: bool = False) -> None:
        self.directory = Path(location)
        self.session = self._read_session()
        recorded = parse_modalities(self.session.get("modalities") or list(self.session.get("streams", {})))
        mods = parse_modalities(modalities) if modalities else recorded
        unknown = [m for m in mods if m not in recorded]
        if unknown:
            raise ConfigError(f"{self.directory} has no {[m.value for m in unknown]} stream; recorded: "
                              f"{[m.value for m in recorded]}", key="modalities")
        super().__init__(f"replay://{self.directory}", mods)
        if speed <= 0:
            raise ConfigError("speed must be > 0", key="speed")
        if host_clock and not realtime:
            raise ConfigError("host_clock needs realtime=true: frames played as fast as possible have no "
                              "host time of their own", key="host_clock")
        self.realtime, self.loop, self.speed = bool(realtime), bool(loop), float(speed)
        self.late_frames = 0         # realtime: frames skipped because reading fell behind the clock
        self.host_clock = bool(host_clock)
        self.fps = self.session.get("fps")
        self.device_info = dict(self.session.get("device") or {})
        self._entries: list[dict] = []
        self._pos = 0

    def _read_session(self) -> dict:
        path = self.directory / "session.json"
        if not path.is_file():
            raise SourceError(f"not a recording (no session.json) — record one with `edgepad record`",
                              f"replay://{self.directory}")
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            raise SourceError(f"corrupt session.json: {exc}", f"replay://{self.directory}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") not in READABLE:
            doc = doc if isinstance(doc, dict) else {}
            raise SourceError(f"unsupported recording format {doc.get('format')!r} v{doc.get('version')}",
                              f"replay://{self.directory}")
        return doc

    def _open_impl(self) -> None:
        rig_path = self.directory / "rig.json"
        self.rig = load_rig(rig_path) if rig_path.is_file() else None
        streams = self.session.get("streams", {})
        try:
            self._stream_intr = {Modality.parse(k): _intrinsics(v["intrinsics"]) for k, v in streams.items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"corrupt session.json streams: {exc!r}", self.uri) from exc
        entries = []
        try:
            with open(self.directory / "index.jsonl", encoding="utf-8") as fh:
                for n, line in enumerate(fh):
                    e = parse_index_line(line, n + 1, self.uri)
                    if e is None:
                        log.warning("%s: index line %d is incomplete (recording cut short); stopping there",
                                    self.uri, n + 1)
                        break
                    if Modality.parse(e["modality"]) in self.modalities:
                        entries.append(e)
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read index.jsonl: {exc}", self.uri) from exc
        self._entries = entries
        self._pos = 0
        self._lap = 0
        self._span_ns = (entries[-1]["timestamp_ns"] - entries[0]["timestamp_ns"] + 1) if entries else 0
        seqs: dict[str, list[int]] = {}
        for e in entries:
            seqs.setdefault(e["modality"], []).append(int(e["sequence"]))
        self._seq_span = {k: max(v) - min(v) + 1 for k, v in seqs.items()}
        self._t0_wall = None

    def __len__(self) -> int:
        return len(self._entries)

    def _read_impl(self, timeout_s: float) -> Frame | None:
        if self._pos >= len(self._entries):
            if not self.loop or not self._entries:
                raise EndOfStream(self.uri)
            self._pos = 0
            self._lap += 1
        e = self._entries[self._pos]
        shift = self._lap * (self._span_ns + int(1e9 / (self.fps or 30)))
        ts = int(e["timestamp_ns"]) + shift
        if self.realtime:
            if self._t0_wall is None:
                self._t0_wall = (time.monotonic_ns(), ts)
            due = self._t0_wall[0] + (ts - self._t0_wall[1]) / self.speed
            # fallen behind the clock by more than a frame period: drop, never serve stale frames
            late_ns = 1e9 / (self.fps or 30)
            while self._pos + 1 < len(self._entries) and time.monotonic_ns() - due > late_ns:
                self._pos += 1
                self.late_frames += 1
                e = self._entries[self._pos]
                ts = int(e["timestamp_ns"]) + shift
                due = self._t0_wall[0] + (ts - self._t0_wall[1]) / self.speed
            wait_s = (due - time.monotonic_ns()) / 1e9
            if wait_s > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait_s > 0:
                time.sleep(wait_s)
            if self.host_clock:
                ts = int(due)
        m = Modality.parse(e["modality"])
        seq = int(e["sequence"]) + self._lap * self._seq_span[e["modality"]]
        dev = e.get("device_timestamp_ns")
        if dev is not None:
            dev = int(dev) + shift
        try:
            data = read_pixels(self.directory / e["file"])
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read {e['file']}: {exc}", self.uri) from exc
        intr = self._stream_intr.get(m)
        if intr is None:
            raise SourceError(f"index line of stream {m.value} which session.json does not declare", self.uri)
        if "intrinsics" in e:
            intr = _intrinsics(e["intrinsics"])
        self._pos += 1
        reg = e.get("registered_to")
        return make_frame(m, data, ts, intrinsics=intr, sequence=seq, source=self.uri,
                          device_timestamp_ns=dev, depth_scale_m=e.get("depth_scale_m"),
                          registered_to=Modality.parse(reg) if reg else None)


def _intrinsics(d: Any) -> Intrinsics:
    return Intrinsics(**{**d, "coeffs": tuple(d["coeffs"])})


#: index.jsonl fields every line must carry, and their types
_INDEX_FIELDS = {"modality": str, "file": str, "timestamp_ns": int, "sequence": int}


def parse_index_line(line: str, number: int, uri: str = "") -> dict | None:
    """One ``index.jsonl`` line as a dict; None when it is incomplete (a recording cut short mid-line).

    Raises:
        SourceError: the line is JSON but not a frame entry (missing field, wrong type, unknown modality, a
            file outside the session folder, bad per-frame intrinsics).
    """
    try:
        e = json.loads(line)
    except ValueError:
        return None
    where = f"index.jsonl line {number}"
    if not isinstance(e, dict):
        raise SourceError(f"{where}: expected an object, got {type(e).__name__}", uri)
    for key, kind in _INDEX_FIELDS.items():
        if not isinstance(e.get(key), kind) or isinstance(e.get(key), bool):
            raise SourceError(f"{where}: field {key!r} must be {kind.__name__}, got {e.get(key)!r}", uri)
    try:
        Modality.parse(e["modality"])
    except (ValueError, KeyError) as exc:
        raise SourceError(f"{where}: {exc}", uri) from None
    f = Path(e["file"])
    if f.is_absolute() or ".." in f.parts or not f.parts:
        raise SourceError(f"{where}: file {e['file']!r} is not inside the session folder", uri)
    if "intrinsics" in e:
        try:
            _intrinsics(e["intrinsics"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{where}: bad intrinsics: {exc!r}", uri) from None
    return e


def record(source_uri: str, out: Path | str, *, frames: int | None = None, seconds: float | None = None,
           overwrite: bool = False, timeout_s: float = 5.0, encoding: str = "png", **options) -> dict:
    """Record a source to a session directory (what ``edgepad record`` runs).

    Args:
        source_uri: any source URI (``synthetic://``, ``realsense://SERIAL``, ``x.bag``, ``uvc:///dev/video2`` …).
        out: the session directory.
        frames: stop once every stream has this many frames.
        seconds: stop after this much stream time (recorded timestamps, so offline sources are bounded too).
        timeout_s: give up (SourceError) when no frame arrives for this long.
        encoding: frame encoding of the session (``"png"`` lossless, default; ``"npy"`` raw).
        **options: source options.

    Returns:
        a summary: frames per modality, duration, the session directory, ``encoding``, ``bytes`` on disk, and
        ``dropped``: frames the source's drop-oldest queues discarded per modality (a live source outrunning the
        writer: record with ``encoding="npy"`` where the CPU cannot encode PNG at the camera's rate).
    """
    if frames is None and seconds is None:
        raise ConfigError("say how much to record: frames=N or seconds=S", key="frames")
    src = open_source(source_uri, **options)
    t_first = t_last = None
    with src:
        with Recorder(out, getattr(src, "rig", None), source=source_uri, fps=getattr(src, "fps", None),
                      device=getattr(src, "device_info", None), overwrite=overwrite, encoding=encoding) as rec:
            last_frame = time.monotonic()
            while True:
                try:
                    f = src.read(0.5)
                except EndOfStream:
                    break
                if f is None:
                    if time.monotonic() - last_frame > timeout_s:
                        raise SourceError(f"no frame for {timeout_s:.1f} s", source_uri)
                    continue
                last_frame = time.monotonic()
                if seconds is not None and t_first is not None and f.timestamp_ns - t_first > seconds * 1e9:
                    break
                rec.write(f)
                t_first = f.timestamp_ns if t_first is None else min(t_first, f.timestamp_ns)
                t_last = f.timestamp_ns if t_last is None else max(t_last, f.timestamp_ns)
                if frames is not None and all(rec.counts.get(m, 0) >= frames for m in src.modalities):
                    break
            counts = {m.value: n for m, n in rec.counts.items()}
        dropped = {m.value: n for m, n in (getattr(src, "dropped", None) or {}).items() if n}
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {"out": str(out), "frames": counts, "duration_s": ((t_last - t_first) / 1e9) if t_first else 0.0,
            "encoding": encoding, "bytes": size, "dropped": dropped}


def replay_all(source: BaseSource) -> Iterable[Frame]:
    """Every frame of a finite source (opened and closed here)."""
    with source:
        while True:
            try:
                f = source.read(1.0)
            except EndOfStream:
                return
            if f is not None:
                yield f
