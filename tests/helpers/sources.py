"""Tiny scripted sources, frames, rigs and a scripted ``cv2.VideoCapture`` for driver tests (no camera, no heavy deps)."""
from __future__ import annotations

import math
import time
from typing import Iterable, Sequence

import numpy as np

from edgepad.drivers.base import BaseSource
from edgepad.errors import EndOfStream
from edgepad.geometry import Extrinsics, Intrinsics, Rig
from edgepad.types import Frame, Modality, make_frame

MS = 1_000_000


def small_rig(w: int = 32, h: int = 24, *, angle_deg: float = 2.0, baseline_m: float = 0.015,
              depth_distortion: str = "none", rgb_distortion: str = "none", coeffs=()) -> Rig:
    """An rgb camera (denser than depth) and a depth/IR camera with a rotation and a baseline."""
    dintr = Intrinsics(w, h, 0.61 * w, 0.61 * w, w / 2 - 0.3, h / 2 + 0.2, depth_distortion, coeffs)
    cintr = Intrinsics(w, h, 0.96 * w, 0.96 * w, w / 2 + 0.1, h / 2 - 0.4, rgb_distortion, coeffs)
    a = math.radians(angle_deg)
    r = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rz = np.array([[math.cos(a / 2), -math.sin(a / 2), 0], [math.sin(a / 2), math.cos(a / 2), 0], [0, 0, 1]])
    d2c = Extrinsics.from_rt(rz @ r, (baseline_m, 0.0004, 0.0006))
    return Rig(Modality.RGB, {Modality.RGB: cintr, Modality.DEPTH: dintr, Modality.IR: dintr},
               {Modality.DEPTH: d2c, Modality.IR: d2c}, depth_scale_m=0.001)


def frame(m: Modality | str, t_ms: float, seq: int = 0, *, w: int = 8, h: int = 6, src: str = "fake://",
          value: int = 500) -> Frame:
    m = Modality.parse(m)
    intr = Intrinsics(w, h, w, w, w / 2, h / 2)
    if m is Modality.RGB:
        data = np.full((h, w, 3), value % 256, np.uint8)
    elif m is Modality.DEPTH:
        data = np.full((h, w), value, np.uint16)
    else:
        data = np.full((h, w), value % 256, np.uint8)
    return make_frame(m, data, int(round(t_ms * MS)), intrinsics=intr, sequence=seq, source=src,
                      depth_scale_m=0.001 if m is Modality.DEPTH else None)


class ScriptedSource(BaseSource):
    """Plays a fixed list of frames (or exceptions/None = timeout), then raises EndOfStream."""

    def __init__(self, uri: str, modalities: Sequence[Modality | str], items: Iterable, rig: Rig | None = None,
                 fps: float | None = None) -> None:
        super().__init__(uri, modalities)
        self._items = list(items)
        self._rig0 = rig
        self.fps = fps
        self.opened = 0

    def _open_impl(self) -> None:
        self._it = iter(self._items)
        self.rig = self._rig0
        self.opened += 1

    def _read_impl(self, timeout_s: float) -> Frame | None:
        try:
            item = next(self._it)
        except StopIteration:
            raise EndOfStream(self.uri) from None
        if isinstance(item, BaseException):
            raise item
        if item is None:  # a timeout: a real source waits that long
            time.sleep(timeout_s)
        return item


def plane_depth(intr: Intrinsics, z_mm: float, *, slope_x: float = 0.0, occluder: tuple | None = None,
                holes: float = 0.0, seed: int = 0) -> np.ndarray:
    """Depth (mm, uint16) of a plane z = z_mm + slope_x * u (+ an occluding box (x0, y0, x1, y1, z_mm))."""
    v, u = np.mgrid[0:intr.height, 0:intr.width]
    z = z_mm + slope_x * (u - intr.width / 2)
    if occluder is not None:
        x0, y0, x1, y1, zo = occluder
        z = np.where((u >= x0) & (u < x1) & (v >= y0) & (v < y1), zo, z)
    z = np.round(z).astype(np.uint16)
    if holes:
        z[np.random.default_rng(seed).random(z.shape) < holes] = 0
    return z


class StubCapture:
    """A scripted cv2.VideoCapture: serves the given images (None = a failed grab)."""

    def __init__(self, images, size=(16, 12)):
        self.images = list(images)
        self.props = {3: size[0], 4: size[1]}
        self.released = False

    def isOpened(self):
        return not self.released

    def set(self, prop, value):
        if prop not in (3, 4):
            self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0)

    def read(self):
        if not self.images:
            return False, None
        img = self.images.pop(0)
        return (img is not None), img

    def release(self):
        self.released = True
