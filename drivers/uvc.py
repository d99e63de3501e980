"""UVC/V4L2 camera source through OpenCV (a separate near-IR camera, or an RGB webcam).

``uvc:///dev/video2?rig=rig.json&modality=ir&fourcc=GREY&width=640&height=480&fps=30``

* Pixel formats: ``GREY``/``Y8`` → ir uint8, ``Y16`` → ir uint16 (``CAP_PROP_CONVERT_RGB`` off, raw), ``MJPG``/
  ``YUYV`` → rgb uint8 (OpenCV's BGR reversed to RGB) or grey (for ``modality=ir``).
* Timestamps: host monotonic ns taken when the frame is grabbed (UVC cameras have no usable shared clock;
  sync across devices happens on host time, see :mod:`edgepad.drivers.sync`).
* Geometry: the camera's rig entry comes from the calibration file (``rig=``); its intrinsics must match the
  configured size. Without one, nominal pinhole intrinsics from ``hfov_deg`` are used and the rig's provenance
  says so (fine for viewing, not for registration).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from edgepad._optional import lazy
from edgepad.drivers.base import ThreadedSource
from edgepad.errors import ConfigError, SourceError
from edgepad.geometry import Intrinsics, Rig, load_rig
from edgepad.types import Frame, Modality, make_frame

log = logging.getLogger(__name__)

FOURCCS = ("GREY", "Y8", "Y16", "MJPG", "YUYV")

cv2 = lazy("cv2", "vision")


class UvcSource(ThreadedSource):
    """Frames from a V4L2/UVC camera through ``cv2.VideoCapture``.

    Args:
        location: ``/dev/videoN`` or a device index (``"2"``).
        modality: ``ir`` (default) or ``rgb``.
        fourcc: pixel format (GREY, Y8, Y16, MJPG, YUYV).
        width, height, fps: requested mode (the camera may refuse: the actual mode is checked).
        rig: rig file (or Rig) holding this camera's entry under ``modality``.
        hfov_deg: nominal horizontal field of view when no rig is given.
        queue_size: drop-oldest queue bound.
        stall_s, max_reconnects: a camera that stops delivering is reopened, then fails with a reason.
        capture_factory: ``f(location) -> VideoCapture-like`` (tests inject a scripted stub).
    """

    #: options a ``uvc://`` URI may carry (checked and parsed by :func:`edgepad.drivers.registry.check_options`)
    URI_OPTIONS: ClassVar[dict[str, Any]] = {
        "modality": str, "fourcc": str, "width": int, "height": int, "fps": float, "rig": str, "hfov_deg": float,
        "queue_size": int, "stall_s": float, "max_reconnects": int}

    def __init__(self, location: str = "/dev/video0", modality: str = "ir", fourcc: str = "GREY", width: int = 640,
                 height: int = 480, fps: float = 30.0, rig: str | Path | Rig | None = None, hfov_deg: float = 60.0,
                 queue_size: int = 4, stall_s: float = 3.0, max_reconnects: int = 3,
                 capture_factory: Callable[[Any], Any] | None = None) -> None:
        m = Modality.parse(modality)
        if m is Modality.DEPTH:
            raise ConfigError("a UVC camera gives ir or rgb, not depth", key="modality")
        fourcc = str(fourcc).upper()
        if fourcc not in FOURCCS:
            raise ConfigError(f"unsupported fourcc {fourcc!r}; use one of {FOURCCS}", key="fourcc",
                              suggestions=[f for f in FOURCCS if f[0] == fourcc[:1]])
        if m is Modality.RGB and fourcc in ("GREY", "Y8", "Y16"):
            raise ConfigError(f"{fourcc} is a grey format; use modality=ir", key="fourcc")
        super().__init__(f"uvc://{location}", [m], queue_size=queue_size)
        self.location, self.modality, self.fourcc = str(location), m, fourcc
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.hfov_deg, self.stall_s, self.max_reconnects = float(hfov_deg), float(stall_s), int(max_reconnects)
        self._rig_in = load_rig(rig) if isinstance(rig, (str, Path)) else rig
        self._factory = capture_factory
        self._cap = None
        self._seq = 0
        self._last_t = 0.0
        self.reconnects = 0
        self.last_error: str | None = None

    def _device(self) -> Any:
        loc = self.location
        return int(loc) if loc.isdigit() else loc

    def _open_capture(self) -> Any:
        dev = self._device()
        if self._factory is not None:
            cap = self._factory(dev)
        else:
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2) if isinstance(dev, str) else cv2.VideoCapture(dev)
        if cap is None or not cap.isOpened():
            raise SourceError(f"cannot open the camera (is {self.location} present and not in use?)", self.uri)
        props = _props(None if self._factory is not None else cv2)
        code = "Y16 " if self.fourcc == "Y16" else ("GREY" if self.fourcc == "Y8" else self.fourcc)
        cap.set(props["fourcc"], _fourcc_code(code))
        cap.set(props["width"], self.width)
        cap.set(props["height"], self.height)
        cap.set(props["fps"], self.fps)
        if self.fourcc in ("GREY", "Y8", "Y16"):
            cap.set(props["convert_rgb"], 0)
        w, h = int(cap.get(props["width"])), int(cap.get(props["height"]))
        if (w, h) != (self.width, self.height):
            cap.release()
            raise SourceError(f"the camera gives {w}x{h}, not {self.width}x{self.height}; pick a supported mode "
                              f"(v4l2-ctl --list-formats-ext)", self.uri)
        return cap

    def _start_device(self) -> None:
        self._cap = self._open_capture()
        self._seq = 0
        self._last_t = time.monotonic()
        if self._rig_in is not None:
            if self.modality not in self._rig_in.intrinsics:
                raise ConfigError(f"the rig file has no `{self.modality.value}` camera for {self.uri}", key="rig")
            intr = self._rig_in.intrinsics[self.modality]
            if (intr.width, intr.height) != (self.width, self.height):
                raise ConfigError(f"rig `{self.modality.value}` camera is {intr.width}x{intr.height} but the "
                                  f"stream is {self.width}x{self.height}", key="rig")
            self.rig = self._rig_in
        else:
            f = self.width / 2 / math.tan(math.radians(self.hfov_deg) / 2)
            intr = Intrinsics(self.width, self.height, f, f, (self.width - 1) / 2, (self.height - 1) / 2)
            self.rig = Rig(self.modality, {self.modality: intr}, {}, None,
                           {"source": f"nominal pinhole, hfov {self.hfov_deg} deg (no rig file: calibrate)"})
        self._intr = intr

    def _stop_device(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None

    def _grab(self, timeout_s: float) -> list[Frame]:
        if self._cap is None:
            self._reconnect(self.last_error or "camera closed")
            return []
        ok, img = self._cap.read()
        t_ns = time.monotonic_ns()
        if not ok or img is None:
            if time.monotonic() - self._last_t > self.stall_s:
                self._reconnect(f"no frame for {self.stall_s:.1f} s (stall or unplugged)")
            else:
                time.sleep(min(timeout_s, 0.01))
            return []
        self._last_t = time.monotonic()
        data = self._convert(np.asarray(img))
        if (data.shape[1], data.shape[0]) != (self.width, self.height):
            raise SourceError(f"frame is {data.shape[1]}x{data.shape[0]}, expected {self.width}x{self.height}",
                              self.uri)
        self._seq += 1
        return [make_frame(self.modality, data, t_ns, intrinsics=self._intr, sequence=self._seq, source=self.uri)]

    def _convert(self, img: np.ndarray) -> np.ndarray:
        if self.modality is Modality.RGB:
            if img.ndim == 2:
                return np.repeat(img[..., None], 3, axis=2).astype(np.uint8)
            return img[..., 2::-1] if img.shape[2] >= 3 else img  # BGR → RGB
        if self.fourcc == "Y16":
            if img.dtype == np.uint16:
                return img if img.ndim == 2 else img[..., 0]
            if img.dtype == np.uint8 and img.ndim == 2 and img.shape[1] == 2 * self.width:
                return img.view(np.uint16)  # raw little-endian bytes
            if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 2:
                return img.reshape(img.shape[0], -1).view(np.uint16)
            raise SourceError(f"cannot read Y16 from a {img.dtype} {img.shape} buffer", self.uri)
        if img.ndim == 3:
            img = img[..., 1] if img.shape[2] >= 3 else img[..., 0]  # grey delivered as BGR: any channel
        return img.astype(np.uint8, copy=False)

    def _reconnect(self, reason: str) -> None:
        self.last_error = reason
        if self.reconnects >= self.max_reconnects:
            raise SourceError(f"{reason}; gave up after {self.reconnects} reconnect attempt(s)", self.uri)
        self.reconnects += 1
        log.warning("%s: %s; reopening (attempt %d/%d)", self.uri, reason, self.reconnects, self.max_reconnects)
        self._stop_device()
        try:
            self._cap = self._open_capture()
        except SourceError as exc:
            self.last_error = f"{reason}; reopen failed: {exc}"
        self._last_t = time.monotonic()


def _props(cv: Any) -> dict[str, int]:
    """``cap.set``/``cap.get`` property ids; OpenCV's numeric ids for scripted stubs (``cv`` None)."""
    if cv is None:
        return {"fourcc": 6, "width": 3, "height": 4, "fps": 5, "convert_rgb": 16}
    return {"fourcc": cv.CAP_PROP_FOURCC, "width": cv.CAP_PROP_FRAME_WIDTH, "height": cv.CAP_PROP_FRAME_HEIGHT,
            "fps": cv.CAP_PROP_FPS, "convert_rgb": cv.CAP_PROP_CONVERT_RGB}


def _fourcc_code(code: str) -> int:
    c = (code + "    ")[:4]
    return ord(c[0]) | (ord(c[1]) << 8) | (ord(c[2]) << 16) | (ord(c[3]) << 24)
