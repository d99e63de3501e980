"""SQLite audit log: content of a row, privacy default, images, retention, background writer, kill -9 safety."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgepad.errors import ConfigError
from edgepad.runtime.audit import AuditLog, AuditWriter
from edgepad.types import Decision, Modality, Reason, Verdict

SHA = "ab" * 32


def decision(verdict: Verdict = Verdict.LIVE, score: float | None = 0.9, t_ns: int = 1_000) -> Decision:
    return Decision(verdict, score, 0.62, evidence={Modality.RGB: 0.7, Modality.IR: float("nan")},
                    reasons=(Reason.LIVE_VOTES, Reason.DEGRADED), timestamp_ns=t_ns,
                    latency_ms={"infer": 3.25, "total": 12.5}, modalities=frozenset({Modality.RGB, Modality.IR}),
                    face_box=(1, 2, 30, 40), hints=("move_closer",))


def face(seed: int = 0) -> dict:
    yy, xx = np.mgrid[0:32, 0:32]
    rgb = np.stack([xx * 8, yy * 8, np.full_like(xx, 40 + seed)], -1).astype(np.uint8)     # smooth: JPEG-friendly
    return {Modality.RGB: rgb, Modality.DEPTH: (400 + 10 * xx + seed).astype(np.uint16)}


def test_row_content_pragmas_and_no_images_by_default(tmp_path):
    db = tmp_path / "a" / "audit.db"
    with AuditLog(db, model_sha256=SHA, clock_ns=lambda: 1_700_000_000 * 10**9) as log:
        rid = log.record(decision(), images=face())                 # images given but not enabled: not stored
        rid2 = log.record(decision(Verdict.UNKNOWN, None), model_sha256="cd" * 32)
        assert (rid, rid2) == (1, 2) and log.count() == 2
        rows = log.query()
        assert [r["id"] for r in rows] == [2, 1]
        r = rows[1]
        assert r["time_unix_ns"] == 1_700_000_000 * 10**9 and r["timestamp_ns"] == 1_000
        assert (r["verdict"], r["score"], r["threshold"]) == ("live", 0.9, 0.62)
        assert r["reasons"] == ["live_votes", "degraded"] and r["modalities"] == "rgb+ir"
        assert r["evidence"] == {"rgb": 0.7}                           # NaN evidence dropped, never stored as text
        assert r["latency_ms"] == {"infer": 3.25, "total": 12.5} and r["latency_total_ms"] == 12.5
        assert r["face_box"] == [1, 2, 30, 40] and r["hints"] == ["move_closer"]
        assert r["model_sha256"] == SHA and r["images"] == []
        assert rows[0]["score"] is None and rows[0]["model_sha256"] == "cd" * 32
        assert log.query(verdict="unknown")[0]["id"] == 2
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with pytest.raises(ConfigError):
        AuditLog(tmp_path / "b.db", synchronous="OFF")
    with pytest.raises(ConfigError):
        AuditLog(tmp_path / "b.db", retention_days=-1)


def test_images_only_when_enabled(tmp_path):
    cv2 = pytest.importorskip("cv2")
    with AuditLog(tmp_path / "audit.db", store_images=True, jpeg_quality=95) as log:
        imgs = face()
        rid = log.record(decision(), images={**imgs, "ir": b"\xff\xd8raw-jpeg-bytes"})
        assert log.query()[0]["images"] == ["depth", "ir", "rgb"]
        jpg = log.image(rid, "rgb")
        assert jpg[:2] == b"\xff\xd8"
        back = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert back.shape == (32, 32, 3)
        assert np.abs(back.astype(int) - imgs[Modality.RGB]).mean() < 6     # the face, not a blank
        assert log.image(rid, "ir") == b"\xff\xd8raw-jpeg-bytes"
        assert log.image(rid + 1, "rgb") is None


def test_retention_by_age_and_rows_deletes_images(tmp_path):
    pytest.importorskip("cv2")
    now = [1_700_000_000 * 10**9]
    day = 86_400 * 10**9
    with AuditLog(tmp_path / "audit.db", retention_days=7, max_rows=4, store_images=True, prune_every=10**6,
                  clock_ns=lambda: now[0]) as log:
        for i in range(8):
            log.record(decision(t_ns=i), images=face(i), time_unix_ns=now[0] - (10 - i) * day)   # 10..3 days ago
        log.record_event("lockout_reset", {"reason": "old"})
        assert log.count() == 8
        assert log.prune() == 4                      # 10, 9, 8 days old by age, then 1 more by row count
        rows = log.query()
        assert [r["timestamp_ns"] for r in rows] == [7, 6, 5, 4]
        con = sqlite3.connect(tmp_path / "audit.db")
        ids = {r[0] for r in con.execute("SELECT DISTINCT decision_id FROM images")}
        con.close()
        assert ids == {r["id"] for r in rows}           # images of deleted decisions are gone too
        now[0] += 8 * day
        assert log.prune() == 4 and log.count() == 0     # everything older than 7 days
        assert log.events() == []                        # events follow the same age policy


def test_prune_runs_automatically(tmp_path):
    with AuditLog(tmp_path / "audit.db", max_rows=3, prune_every=4) as log:
        for i in range(10):
            log.record(decision(t_ns=i))
        assert log.count() <= 3 + 4                      # bounded between prunes
        assert log.query()[0]["timestamp_ns"] == 9


def test_writer_batches_events_and_bounds_queue(tmp_path):
    committed: list[int] = []
    path = tmp_path / "audit.db"
    w = AuditWriter(lambda: AuditLog(path, model_sha256=SHA), max_batch=16, on_commit=committed.extend)
    with w:
        for i in range(50):
            w.submit(decision(t_ns=i))
        w.submit_event("lockout_reset", {"reason": "badge 42"})
    assert w.stats()["committed"] == 50 and w.dropped == 0 and committed == list(range(1, 51))
    with AuditLog(path) as log:
        assert log.count() == 50 and log.events()[0]["detail"] == {"reason": "badge 42"}
    # a writer that cannot open its database reports it at start
    bad = AuditWriter(lambda: AuditLog(tmp_path / "x.db", synchronous="bogus"))
    with pytest.raises(ConfigError):
        bad.start()
    # drop-oldest when the disk cannot keep up (writer not started: nothing drains the queue)
    slow = AuditWriter(lambda: AuditLog(tmp_path / "slow.db"), max_pending=4)
    for i in range(10):
        slow.submit(decision(t_ns=i))
    assert slow.dropped == 6 and slow.stats()["pending"] == 4


WRITER = textwrap.dedent("""
    import sys, time
    from edgepad.runtime.audit import AuditLog
    from edgepad.types import Decision, Modality, Reason, Verdict
    import numpy as np
    log = AuditLog(sys.argv[1], model_sha256="ab" * 64, synchronous=sys.argv[2], store_images=True)
    rng = np.random.default_rng(0)
    blob = bytes(rng.integers(0, 255, 6000, dtype=np.uint8))       # JPEG-sized blobs: multi-page transactions
    i = 0
    while True:
        batch = []
        for _ in range(1 + i % 5):
            d = Decision(Verdict.SPOOF, 0.1, 0.5, reasons=(Reason.SPOOF_VOTES,), timestamp_ns=i,
                         latency_ms={"total": 1.0}, modalities=frozenset({Modality.RGB}))
            batch.append((d, {"rgb": blob, "ir": blob[::-1]}, None, None))
            i += 1
        ids = log.record_many(batch)
        sys.stdout.write(" ".join(map(str, ids)) + "\\n")          # reported only after COMMIT returned
        sys.stdout.flush()
""")


def _run_and_kill(script, db, sync: str, rows: int) -> list[int]:
    """Start a writer, read the ids it reports as committed, SIGKILL it while it keeps writing."""
    proc = subprocess.Popen([sys.executable, str(script), str(db), sync], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reported: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while len(reported) < rows and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.extend(int(x) for x in line.split())
        os.kill(proc.pid, signal.SIGKILL)                         # mid-stream: the writer never pauses
    finally:
        proc.wait(10)
        rest = proc.stdout.read().split()                         # lines written before the kill landed
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= rows, "writer too slow or died early"
    return reported + [int(x) for x in rest]


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_sigkill_mid_write_loses_no_committed_row(tmp_path, sync):
    db = tmp_path / "audit.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    reported: list[int] = []
    for _ in range(3):                      # kill, recover, write on, kill again: three chances to hit a commit
        reported += _run_and_kill(script, db, sync, rows=150)
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        present = {r[0] for r in con.execute("SELECT id FROM decisions")}
        assert set(reported) <= present                            # every committed row survived
        assert len(present) - len(set(reported)) <= 3 * 5          # at most one unreported batch per kill
        n_img = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        assert n_img == 2 * len(present)                           # transactions are all-or-nothing
        assert json.loads(con.execute("SELECT reasons FROM decisions LIMIT 1").fetchone()[0]) == ["spoof_votes"]
    finally:
        con.close()
    with AuditLog(db) as log:                                      # a new writer opens the recovered file
        assert log.record(decision()) == max(present) + 1
