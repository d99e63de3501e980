"""The installer's live view, end to end in headless Chromium (DevTools protocol over --remote-debugging-pipe).

A running service (token-protected, loopback) feeds fake decisions with frames; the browser logs in through
``/?token=``, receives decisions over SSE, shows the verdict in the DOM, loads the three previews, turns STALE
when decisions stop (fail-closed display), and a screenshot is taken and checked. Skips without chromium.
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

from edgepad.runtime.service import DecisionHub, LivenessService, ServiceConfig, Update
from edgepad.types import Decision, Modality, Reason, Verdict

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


class FakeRuntime:
    """Publishes a decision with frames every 50 ms; the verdict and pause are switched by the test."""

    def __init__(self, hub: DecisionHub) -> None:
        self.hub = hub
        self.verdict = Verdict.LIVE
        self.paused = threading.Event()
        self.stop = threading.Event()
        h, w = 240, 320
        yy, xx = np.mgrid[0:h, 0:w]
        face = ((xx - 160) / 50.0) ** 2 + ((yy - 115) / 65.0) ** 2 < 1
        self.rgb = np.stack([40 + xx // 3, 60 + yy // 4, np.full_like(xx, 110)], -1).astype(np.uint8)
        self.rgb[face] = (214, 170, 140)
        self.depth = np.full((h, w), 1400, np.uint16)
        self.depth[face] = (600 + 0.02 * ((xx - 160) ** 2 + (yy - 115) ** 2))[face].astype(np.uint16)
        self.depth[:, :12] = 0
        self.ir = (30 + 0.3 * xx).astype(np.uint8)
        self.ir[face] = 190
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            if self.paused.is_set():
                continue
            v = self.verdict
            d = Decision(v, 0.93 if v is Verdict.LIVE else 0.04, 0.5,
                         evidence={Modality.RGB: 0.9, Modality.DEPTH: 0.95, Modality.IR: 0.88},
                         reasons=(Reason.LIVE_VOTES,) if v is Verdict.LIVE else (Reason.SPOOF_VOTES, Reason.LOCKOUT),
                         timestamp_ns=time.monotonic_ns(),
                         latency_ms={"capture": 1.2, "sync": 0.3, "register": 3.1, "locate": 4.0,
                                     "preprocess": 0.8, "infer": 6.5, "policy": 0.1, "total": 16.0},
                         modalities=frozenset(Modality), face_box=(110, 50, 100, 130), hints=("hold_still",))
            self.hub.publish(Update(d, {Modality.RGB: self.rgb, Modality.DEPTH: self.depth, Modality.IR: self.ir},
                                    boxes={Modality.IR: (112, 50, 96, 130)}))


STATE_JS = """JSON.stringify({
  verdict: document.body.dataset.verdict, text: document.getElementById('verdict').textContent,
  seq: Number(document.body.dataset.seq), conn: document.body.dataset.conn,
  lockout: getComputedStyle(document.getElementById('lockout')).display !== 'none',
  imgs: ['rgb', 'ir', 'depth'].map(m => document.getElementById('img-' + m).naturalWidth),
  stages: Array.from(document.querySelectorAll('#latency tr')).map(r => r.dataset.stage),
  model: document.getElementById('model').textContent})"""


def test_live_view_in_headless_chromium(tmp_path):
    cv2 = pytest.importorskip("cv2")
    hub = DecisionHub()
    runtime = FakeRuntime(hub)
    svc = LivenessService(hub, ServiceConfig(port=0, token=TOKEN, health_max_age_ms=600),
                          info={"model": {"name": "tiny-fas", "sha256": "cd" * 32}, "source": "fake://browser"},
                          on_lockout_reset=lambda body: None)
    cdp = None
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

            s = wait_for(lambda s: s["verdict"] == "live" and s["seq"] > 2 and all(w == 320 for w in s["imgs"]),
                         "a live verdict with three previews")
            assert s["text"] == "live" and s["conn"] == "live" and not s["lockout"]
            assert s["stages"] == ["capture", "sync", "register", "locate", "preprocess", "infer", "policy",
                                   "total"]
            assert s["model"].startswith("tiny-fas")
            shot = base64.b64decode(cdp.call("Page.captureScreenshot", {"format": "png"}, session)["data"])
            png = tmp_path / "liveview.png"
            png.write_bytes(shot)

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
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] >= 600 and img.shape[1] >= 1000
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 500     # not a blank page
    live_green = np.all(np.abs(img.astype(int) - (0x55, 0xA8, 0x1F)) <= 6, axis=2)   # #1fa855 verdict card (BGR)
    assert live_green.sum() > 5000
    skin = np.all(np.abs(img.astype(int) - (140, 170, 214)) <= 8, axis=2)           # the RGB preview's face
    assert skin.sum() > 1000
