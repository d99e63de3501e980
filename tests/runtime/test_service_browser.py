"""The installer's live view, end to end in headless Chromium (DevTools protocol over --remote-debugging-pipe).

A running service (token-protected, loopback) feeds fake decisions with frames from a window-registration rig;
the browser logs in through ``/?token=``, receives decisions over SSE, shows the verdict, a face box in every
preview, the installer's facts and reason hints in the DOM, fits a phone (verdict above the fold) and 1280 px
(no overflow), lists presentation events (from ``/v1/status`` and the ``/v1/events`` stream), turns STALE when
decisions stop (fail-closed display); screenshots are taken and checked
(``EDGEPAD_SCREENSHOTS=dir`` keeps them). Skips without chromium.
Install on Debian: ``apt-get update && apt-get install -y chromium chromium-driver``.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgepad.geometry import Extrinsics, Intrinsics, Rig
from edgepad.runtime.presentation import DECIDED, ENDED, STARTED, PresentationEvent
from edgepad.runtime.service import DecisionHub, LivenessService, ServiceConfig, Update
from edgepad.runtime.service.preview import REASON_HINTS, StreamMeter, installer_view
from edgepad.types import Decision, FrameSet, Modality, Reason, Verdict, make_frame

TOKEN = "browser-test-token-0123456789"
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p),
                None)
BASH = shutil.which("bash")      # places the pipe ends at fds 3/4 (dash cannot redirect fds above 9)
pytestmark = pytest.mark.skipif(CHROMIUM is None or BASH is None,
                                reason="chromium (and bash) not installed (apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--window-size=1280,800", "--remote-debugging-pipe"]


class Cdp:
    """Minimal Chrome DevTools Protocol client over the NUL-delimited JSON pipe (fd 3 in, fd 4 out)."""

    def __init__(self, user_data_dir: Path) -> None:
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # move the child's ends above fd 10 so that the shell can place them at 3 and 4 without clobbering
        hi_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(res_w)
        argv = [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"]
        self.proc = subprocess.Popen([BASH, "-c", f'exec "$@" 3<&{hi_r} 4>&{hi_w} {hi_r}<&- {hi_w}>&-',
                                      "sh", *argv], pass_fds=(hi_r, hi_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(hi_r)
        os.close(hi_w)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = os.fdopen(res_r, "rb", buffering=0)
        self._next = 0
        self._results: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        buf = b""
        while chunk := self._r.read(65536):
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                obj = json.loads(msg)
                with self._cond:
                    if "id" in obj:
                        self._results[obj["id"]] = obj
                    else:
                        self.events.append(obj)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 15.0) -> dict:
        with self._cond:
            self._next += 1
            mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while mid not in self._results:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no CDP answer to {method} (chromium exit {self.proc.poll()})")
                self._cond.wait(min(left, 0.5))
            res = self._results.pop(mid)
        if "error" in res:
            raise RuntimeError(f"CDP {method}: {res['error']}")
        return res["result"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for f in (self._w, self._r):
            try:
                f.close()
            except OSError:
                pass


def window_scene() -> tuple:
    """A 320×240 rig as with window registration: depth and IR from a second camera 5 cm to the left (depth NOT
    registered to rgb), a face (ellipse at 0.6 m) before a wall at 1.4 m, a dim IR image."""
    rgb_k = Intrinsics(320, 240, 300.0, 300.0, 160.0, 120.0)
    ir_k = Intrinsics(320, 240, 280.0, 280.0, 158.0, 122.0)
    ir_to_rgb = Extrinsics.from_rt(np.eye(3), np.array([0.05, 0.0, 0.0]))
    rig = Rig(Modality.RGB, {Modality.RGB: rgb_k, Modality.IR: ir_k, Modality.DEPTH: ir_k},
              {Modality.IR: ir_to_rgb, Modality.DEPTH: ir_to_rgb}, depth_scale_m=0.001)

    def look(k: Intrinsics, t_x: float) -> tuple:          # face mask and depth (m) seen by a camera at x = t_x
        yy, xx = np.mgrid[0:240, 0:320].astype(np.float64)
        x = t_x + (xx - k.cx) / k.fx * 0.6
        y = (yy - k.cy) / k.fy * 0.6
        face = (x / 0.075) ** 2 + ((y + 0.01) / 0.1) ** 2 < 1
        return face, np.where(face, 0.6 + 0.3 * (x ** 2 + y ** 2), 1.4), xx, yy
    face, _, xx, yy = look(rgb_k, 0.0)
    rgb = np.stack([40 + xx // 3, 60 + yy // 4, np.full_like(xx, 110)], -1).astype(np.uint8)
    rgb[face] = (214, 170, 140)
    face_ir, z_ir, xx, _ = look(ir_k, 0.05)
    depth = np.rint(z_ir * 1000).astype(np.uint16)
    depth[:, :12] = 0
    ir = (8 + xx // 40).astype(np.uint8)                    # dim: near black without auto-levelling
    ir[face_ir] = 60
    ys, xs = np.nonzero(face)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return rig, rgb, depth, ir, box


class FakeRuntime:
    """Publishes a decision with frames every 50 ms (frames 33 ms apart in device time, every 10th IR frame
    dropped); the verdict and pause are switched by the test."""

    def __init__(self, hub: DecisionHub) -> None:
        self.hub = hub
        self.verdict = Verdict.LIVE
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.rig, self.rgb, self.depth, self.ir, self.box = window_scene()
        self.meter = StreamMeter()
        self.n = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def frameset(self) -> FrameSet:
        self.n += 1
        t = self.n * 33_333_333
        seq_ir = self.n + self.n // 10
        kw = dict(source="fake://browser")
        frames = {Modality.RGB: make_frame("rgb", self.rgb, t, intrinsics=self.rig.intrinsics[Modality.RGB],
                                           sequence=self.n, **kw),
                  Modality.DEPTH: make_frame("depth", self.depth, t, intrinsics=self.rig.intrinsics[Modality.DEPTH],
                                             sequence=self.n, depth_scale_m=0.001, **kw),
                  Modality.IR: make_frame("ir", self.ir, t, intrinsics=self.rig.intrinsics[Modality.IR],
                                          sequence=seq_ir, **kw)}
        return FrameSet(frames, t)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            if self.paused.is_set():
                continue
            v = self.verdict
            reasons = {Verdict.LIVE: (Reason.LIVE_VOTES,), Verdict.SPOOF: (Reason.SPOOF_VOTES, Reason.LOCKOUT),
                       Verdict.UNKNOWN: (Reason.NO_IR_ILLUMINATION, Reason.VOTE_PENDING)}[v]
            d = Decision(v, {Verdict.LIVE: 0.93, Verdict.SPOOF: 0.04}.get(v), 0.5,
                         evidence={Modality.RGB: 0.9, Modality.DEPTH: 0.95, Modality.IR: 0.88},
                         reasons=reasons, timestamp_ns=time.monotonic_ns(),
                         latency_ms={"capture": 1.2, "sync": 0.3, "register": 3.1, "locate": 4.0,
                                     "preprocess": 0.8, "infer": 6.5, "policy": 0.1, "total": 16.0},
                         modalities=frozenset(Modality), face_box=self.box, hints=("hold_still",))
            fs = self.frameset()
            self.meter.update(fs)
            boxes, view = installer_view(fs, d.face_box, self.rig, self.meter)
            self.hub.publish(Update(d, {m: f.data for m, f in fs.frames.items()}, boxes=boxes, view=view))


STATE_JS = """JSON.stringify({
  verdict: document.body.dataset.verdict, text: document.getElementById('verdict').textContent,
  seq: Number(document.body.dataset.seq), conn: document.body.dataset.conn,
  lockout: getComputedStyle(document.getElementById('lockout')).display !== 'none',
  imgs: ['rgb', 'ir', 'depth', 'overlay'].map(m => document.getElementById('img-' + m).naturalWidth),
  boxes: Array.from(document.querySelectorAll('.preview')).map(f => f.dataset.box || null),
  stages: Array.from(document.querySelectorAll('#latency tr')).map(r => r.dataset.stage),
  reasons: Array.from(document.querySelectorAll('#reasons li')).map(li => [li.dataset.reason,
    li.querySelector('.hint').textContent]),
  distance: document.getElementById('distance').textContent,
  fill: document.getElementById('fill').textContent, ir: document.getElementById('ir-level').textContent,
  streams: Array.from(document.querySelectorAll('#streams tbody tr')).map(r => Array.from(r.cells).map(
    c => c.textContent)),
  fps_ir: document.getElementById('fps-ir').textContent,
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  verdict_overflow: (e => e.scrollWidth - e.clientWidth)(document.getElementById('verdict')),
  card_overflow: (e => e.scrollWidth - e.clientWidth)(document.getElementById('verdict-card')),
  card_bottom: document.getElementById('verdict-card').getBoundingClientRect().bottom,
  vhint: document.getElementById('verdict-hint').textContent,
  events: Array.from(document.querySelectorAll('#events li')).map(li => [li.dataset.event || null,
    li.dataset.presentation || null, li.dataset.verdict || null, li.textContent]),
  viewport: [window.innerWidth, window.innerHeight],
  model: document.getElementById('model').textContent})"""


def test_live_view_in_headless_chromium(tmp_path):
    cv2 = pytest.importorskip("cv2")
    hub = DecisionHub()
    runtime = FakeRuntime(hub)
    svc = LivenessService(hub, ServiceConfig(port=0, token=TOKEN, health_max_age_ms=600),
                          info={"model": {"name": "tiny-fas", "sha256": "cd" * 32}, "source": "fake://browser"},
                          on_lockout_reset=lambda body: None)
    cdp = None
    shots = {}
    # one presentation event before the page opens: the page shows it from /v1/status (events.recent)
    hub.publish_event(PresentationEvent(STARTED, 1, 1_000, frames=0, cause="face"))
    with svc:
        runtime.thread.start()
        try:
            cdp = Cdp(tmp_path / "profile")
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            host, port = svc.address
            cdp.call("Page.navigate", {"url": f"http://{host}:{port}/?token={TOKEN}"}, session)

            def state() -> dict:
                r = cdp.call("Runtime.evaluate", {"expression": STATE_JS, "returnByValue": True}, session)
                return json.loads(r["result"].get("value") or "{}")

            def wait_for(pred, what: str, timeout_s: float = 20.0) -> dict:
                deadline = time.monotonic() + timeout_s
                s: dict = {}
                while time.monotonic() < deadline:
                    try:
                        s = state()
                    except RuntimeError:          # page still navigating
                        s = {}
                    if s and pred(s):
                        return s
                    time.sleep(0.1)
                pytest.fail(f"live view never showed {what}; last state {s}")

            def shoot(name: str) -> Path:
                png = tmp_path / f"{name}.png"
                png.write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot", {"format": "png"},
                                                          session)["data"]))
                if os.environ.get("EDGEPAD_SCREENSHOTS"):                # keep them (docs/img, review)
                    shutil.copy(png, Path(os.environ["EDGEPAD_SCREENSHOTS"]) / png.name)
                shots[name] = png
                return png

            s = wait_for(lambda s: s["verdict"] == "live" and s["seq"] > 12 and all(w == 320 for w in s["imgs"])
                         and s["streams"], "a live verdict with four previews and stream rates")
            assert s["text"] == "live" and s["conn"] == "live" and not s["lockout"]
            assert s["stages"] == ["capture", "sync", "register", "locate", "preprocess", "infer", "policy",
                                   "total"]
            assert s["model"].startswith("tiny-fas")
            # a face box in every preview (depth unregistered: projected through the rig), and installer facts
            assert all(s["boxes"]), s["boxes"]
            assert s["distance"].startswith("0.6") and s["distance"].endswith(" m"), s["distance"]
            assert s["fill"].endswith("%") and int(s["fill"][:-1]) >= 80
            assert s["ir"].split(" · ")[1] == "ok"                            # auto-level reads the face level
            streams = {r[0]: r for r in s["streams"]}
            assert abs(float(streams["rgb"][1]) - 30.0) < 0.5 and streams["rgb"][2] == "0"
            assert int(streams["ir"][2]) >= 1 and "dropped" in s["fps_ir"]
            assert s["reasons"] == [["live_votes", REASON_HINTS[Reason.LIVE_VOTES]]] and s["vhint"] == ""
            assert s["overflow"] <= 0
            assert s["events"] == [["started", "1", None, "#1started(face)"]], s["events"]
            # the presentation is decided and ends, the next one starts: streamed over /v1/events, newest first
            live = Decision(Verdict.LIVE, 0.93, 0.5, evidence={Modality.RGB: 0.9, Modality.DEPTH: 0.95,
                                                                Modality.IR: 0.88}, reasons=(Reason.LIVE_VOTES,))
            for ev in (PresentationEvent(DECIDED, 1, 2_000, Verdict.LIVE, live, frames=3, live_decisions=1),
                       PresentationEvent(ENDED, 1, 3_000, Verdict.LIVE, frames=30, cause="gap", live_decisions=27),
                       PresentationEvent(STARTED, 2, 4_000, frames=0, cause="box_jump")):
                hub.publish_event(ev)
            s = wait_for(lambda s: len(s["events"]) == 4, "four presentation events")
            assert [e[:3] for e in s["events"]] == [["started", "2", None], ["ended", "1", "live"],
                                                    ["decided", "1", "live"], ["started", "1", None]], s["events"]
            assert s["events"][2][3] == ("#1decided LIVEscore 0.930 thr 0.500 · evidence rgb 0.90, depth 0.95, "
                                         "ir 0.88 · after 3 frames"), s["events"][2]
            assert s["events"][1][3] == "#1ended(gap) live after 30 frames · live 27 spoof 0"
            assert s["overflow"] <= 0
            shoot("liveview-desktop")

            runtime.verdict = Verdict.UNKNOWN                     # the longest verdict word fits its card
            s = wait_for(lambda s: s["verdict"] == "unknown", "the unknown verdict")
            s = wait_for(lambda s: s["reasons"][0][1] != "", "the reason hints")
            assert s["reasons"][0] == ["no_ir_illumination", REASON_HINTS[Reason.NO_IR_ILLUMINATION]]
            assert "emitter" in s["reasons"][0][1] and s["vhint"] == s["reasons"][0][1]     # also on the card
            assert s["verdict_overflow"] <= 0 and s["card_overflow"] <= 0 and s["overflow"] <= 0, s
            shoot("liveview-desktop-unknown")

            cdp.call("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1,
                                                            "mobile": True}, session)
            s = wait_for(lambda s: s["viewport"] == [390, 844], "the phone viewport")
            assert s["overflow"] <= 0 and s["verdict_overflow"] <= 0, s
            assert 0 < s["card_bottom"] <= 844 * 0.5, s                      # the verdict is above the fold
            shoot("liveview-phone")
            cdp.call("Emulation.clearDeviceMetricsOverride", {}, session)

            runtime.verdict = Verdict.SPOOF                        # a new verdict arrives over SSE
            seq0 = s["seq"]
            s = wait_for(lambda s: s["verdict"] == "spoof" and s["seq"] > seq0, "the spoof verdict")
            assert s["text"] == "spoof" and s["lockout"]

            runtime.paused.set()                                   # decisions stop: the page must not keep a verdict
            s = wait_for(lambda s: s["verdict"] == "stale", "the stale state", timeout_s=10)
            assert s["text"] == "stale"
        finally:
            runtime.stop.set()
            runtime.thread.join(5)
            if cdp is not None:
                cdp.close()
    img = cv2.imread(str(shots["liveview-desktop"]), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] >= 600 and img.shape[1] >= 1000
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500     # not a blank page
    live_green = np.all(np.abs(img.astype(int) - (0x55, 0xA8, 0x1F)) <= 6, axis=2)   # #1fa855 verdict card (BGR)
    assert live_green.sum() > 5000
    skin = np.all(np.abs(img.astype(int) - (140, 170, 214)) <= 8, axis=2)           # the RGB preview's face
    assert skin.sum() > 1000
    phone = cv2.imread(str(shots["liveview-phone"]), cv2.IMREAD_COLOR)
    assert phone.shape[1] == 390
    amber = np.all(np.abs(phone[:422].astype(int) - (0x00, 0xA1, 0xE0)) <= 6, axis=2)  # unknown card, top half
    assert amber.sum() > 3000
