"""SQLite audit log of liveness decisions (stdlib ``sqlite3``; no server, one file).

Every decision becomes one row: wall-clock time, frame timestamp, verdict, score, threshold, reasons,
modalities used, per-modality evidence, model sha256 and latency. Face images are **not** stored unless
``store_images=True``; then they are JPEG blobs in their own table, deleted together with their decision by the
retention policy.

Durability:
    * ``journal_mode=WAL``: readers (an integrator's report tool) never block the writer, and a crash leaves the
      database consistent: a transaction is either in the WAL with its commit frame or ignored.
    * ``synchronous=FULL`` (default): every commit fsyncs the WAL, so a committed row survives a process kill
      *and* a power cut. ``synchronous="NORMAL"`` is also safe against a process kill (``kill -9``: the WAL is in
      the OS page cache) but the last commits may roll back on power loss; choose it only on storage where fsync
      is too slow, and accept that trade-off.
    * Rows are committed in small batches (:class:`AuditWriter`), so the fsync cost is paid once per batch, not
      once per frame.

Retention: rows older than ``retention_days`` and rows beyond ``max_rows`` (oldest first) are deleted at open
and every ``prune_every`` inserts. Deleted pages are reused by later inserts; the file does not shrink unless
``vacuum()`` is called.

Example:
    >>> with AuditLog("audit.db", model_sha256=manifest.artifact_sha256) as log:   # doctest: +SKIP
    ...     row_id = log.record(decision)
"""
from __future__ import annotations

import json
import logging
import math
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.errors import ConfigError, EdgePadError
from edgepad.types import Decision, Modality

log = logging.getLogger(__name__)
cv2 = lazy("cv2")

SCHEMA_VERSION = 1
_NS_PER_DAY = 86_400 * 10**9

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    time_unix_ns    INTEGER NOT NULL,            -- wall clock (UTC) when the decision was made
    timestamp_ns    INTEGER NOT NULL,            -- frame-set time, host monotonic ns
    verdict         TEXT NOT NULL CHECK (verdict IN ('live', 'spoof', 'unknown')),
    score           REAL,                        -- P(live); NULL when no score was computed
    threshold       REAL NOT NULL,
    reasons         TEXT NOT NULL,               -- JSON array of reason codes
    modalities      TEXT NOT NULL,               -- subset key, e.g. 'rgb+depth+ir' ('' = none)
    evidence        TEXT NOT NULL,               -- JSON object {modality: P(live)}
    hints           TEXT NOT NULL,               -- JSON array
    face_box        TEXT,                        -- JSON [x, y, w, h] in rgb pixels or NULL
    latency_total_ms REAL,
    latency_ms      TEXT NOT NULL,               -- JSON object {stage: ms}
    model_sha256    TEXT
);
CREATE INDEX IF NOT EXISTS decisions_time ON decisions (time_unix_ns);
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    time_unix_ns INTEGER NOT NULL,
    kind         TEXT NOT NULL,                  -- e.g. 'lockout_reset', 'service_start'
    detail       TEXT NOT NULL                   -- JSON object
);
CREATE TABLE IF NOT EXISTS images (
    decision_id INTEGER NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    modality    TEXT NOT NULL,
    jpeg        BLOB NOT NULL,
    PRIMARY KEY (decision_id, modality)
);
"""


@dataclass(frozen=True)
class AuditConfig:
    """Audit-log settings.

    Attributes:
        path: SQLite file.
        retention_days: delete rows older than this (0 = keep by age forever).
        max_rows: keep at most this many decisions (0 = unbounded).
        store_images: also store face images (JPEG blobs); off by default (privacy).
        jpeg_quality: 1..100 for stored images.
        synchronous: ``"FULL"`` (survives power loss) or ``"NORMAL"`` (survives process kills only).
        prune_every: apply retention every N inserted rows.
    """

    path: str = "edgepad-audit.db"
    retention_days: float = 30.0
    max_rows: int = 1_000_000
    store_images: bool = False
    jpeg_quality: int = 85
    synchronous: str = "FULL"
    prune_every: int = 1000


class AuditLog:
    """Single-connection audit log (use from one thread; :class:`AuditWriter` adds a background thread).

    Args:
        path: SQLite file (created with its folder).
        model_sha256: recorded on every row unless a row gives its own.
        retention_days, max_rows, store_images, jpeg_quality, synchronous, prune_every: see :class:`AuditConfig`.
        busy_timeout_s: how long a write waits for another connection's lock before it fails (and
            :class:`AuditWriter` retries it).
        clock_ns: wall-clock source (ns since the epoch); injectable for tests.
    """

    def __init__(self, path: str | Path, *, model_sha256: str | None = None, retention_days: float = 30.0,
                 max_rows: int = 1_000_000, store_images: bool = False, jpeg_quality: int = 85,
                 synchronous: str = "FULL", prune_every: int = 1000, busy_timeout_s: float = 10.0,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        sync = str(synchronous).upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"audit synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}",
                              key="synchronous")
        if not (isinstance(retention_days, (int, float)) and retention_days >= 0 and math.isfinite(retention_days)):
            raise ConfigError(f"retention_days must be >= 0, got {retention_days!r}", key="retention_days")
        if not (isinstance(max_rows, int) and max_rows >= 0):
            raise ConfigError(f"max_rows must be an integer >= 0, got {max_rows!r}", key="max_rows")
        if not 1 <= int(jpeg_quality) <= 100:
            raise ConfigError(f"jpeg_quality must be in 1..100, got {jpeg_quality!r}", key="jpeg_quality")
        self.path = Path(path)
        self.model_sha256 = model_sha256
        self.retention_days = float(retention_days)
        self.max_rows = int(max_rows)
        self.store_images = bool(store_images)
        self.jpeg_quality = int(jpeg_quality)
        self.prune_every = max(1, int(prune_every))
        self._clock_ns = clock_ns
        self._since_prune = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgePadError(f"cannot create the audit folder {self.path.parent}: {exc}") from exc
        try:
            self._db = sqlite3.connect(str(self.path), timeout=float(busy_timeout_s), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise EdgePadError(f"audit database {self.path} has schema {row[0]}, this edgepad writes "
                                   f"{SCHEMA_VERSION}; use a new file")
        except sqlite3.DatabaseError as exc:
            raise EdgePadError(f"cannot open audit database {self.path}: {exc}") from exc
        self.prune()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        db, self._db = getattr(self, "_db", None), None
        if db is not None:
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:  # pragma: no cover - best effort
                pass
            db.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._db is None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise EdgePadError("audit log is closed")
        return self._db

    # ------------------------------------------------------------------ writing
    def record(self, decision: Decision, *, images: Mapping[Modality | str, Any] | None = None,
               model_sha256: str | None = None, time_unix_ns: int | None = None) -> int:
        """Insert and commit one decision; returns its row id (committed when this returns)."""
        return self.record_many([(decision, images, model_sha256, time_unix_ns)])[0]

    def record_many(self, items: Iterable[tuple[Decision, Mapping[Modality | str, Any] | None, str | None,
                                                int | None]]) -> list[int]:
        """Insert several decisions in one transaction (one fsync); returns their row ids once committed.

        Args:
            items: ``(decision, images, model_sha256, time_unix_ns)`` tuples; ``images`` maps a modality to a
                face image (``uint8``/``uint16`` array, encoded here) or to JPEG bytes. Images are ignored unless
                the log was opened with ``store_images=True``. None fields take the log's defaults.
        """
        db = self._conn()
        ids: list[int] = []
        rows = [(self._row(d, sha, t), self._encode_images(imgs)) for d, imgs, sha, t in items]
        db.execute("BEGIN IMMEDIATE")
        try:
            for row, blobs in rows:
                cur = db.execute(
                    "INSERT INTO decisions (time_unix_ns, timestamp_ns, verdict, score, threshold, reasons, "
                    "modalities, evidence, hints, face_box, latency_total_ms, latency_ms, model_sha256) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                rid = int(cur.lastrowid)
                ids.append(rid)
                for m, blob in blobs.items():
                    db.execute("INSERT INTO images (decision_id, modality, jpeg) VALUES (?, ?, ?)",
                               (rid, m, sqlite3.Binary(blob)))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._since_prune += len(ids)
        if self._since_prune >= self.prune_every:
            self.prune()
        return ids

    def _row(self, d: Decision, sha: str | None, t_ns: int | None) -> tuple:
        score = None if d.score is None or not math.isfinite(float(d.score)) else float(d.score)
        lat = {str(k): float(v) for k, v in d.latency_ms.items() if math.isfinite(float(v))}
        ev = {str(Modality.parse(k)): float(v) for k, v in d.evidence.items() if math.isfinite(float(v))}
        mods = "+".join(m.value for m in Modality if m in d.modalities)
        return (int(self._clock_ns() if t_ns is None else t_ns), int(d.timestamp_ns), d.verdict.value, score,
                float(d.threshold), json.dumps([r.value for r in d.reasons]), mods, json.dumps(ev),
                json.dumps(list(d.hints)), json.dumps([int(v) for v in d.face_box]) if d.face_box else None,
                lat.get("total"), json.dumps(lat), sha if sha is not None else self.model_sha256)

    def _encode_images(self, images: Mapping[Modality | str, Any] | None) -> dict[str, bytes]:
        if not self.store_images or not images:
            return {}
        out: dict[str, bytes] = {}
        for m, img in images.items():
            if img is None:
                continue
            key = Modality.parse(m).value
            out[key] = bytes(img) if isinstance(img, (bytes, bytearray, memoryview)) else \
                encode_jpeg(img, self.jpeg_quality, modality=key)
        return out

    def record_event(self, kind: str, detail: Mapping[str, Any] | None = None) -> int:
        """Insert and commit an operational event (lockout reset, service start …); returns its row id."""
        cur = self._conn().execute("INSERT INTO events (time_unix_ns, kind, detail) VALUES (?, ?, ?)",
                                   (int(self._clock_ns()), str(kind), json.dumps(dict(detail or {}), default=str)))
        return int(cur.lastrowid)

    def events(self, limit: int = 100) -> list[dict]:
        """Most recent events first."""
        cur = self._conn().execute("SELECT id, time_unix_ns, kind, detail FROM events ORDER BY id DESC LIMIT ?",
                                   (int(limit),))
        return [{"id": i, "time_unix_ns": t, "kind": k, "detail": json.loads(d)} for i, t, k, d in cur.fetchall()]

    # ------------------------------------------------------------------ retention
    def prune(self) -> int:
        """Apply the retention policy now; returns the number of decisions deleted."""
        db = self._conn()
        self._since_prune = 0
        deleted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.retention_days > 0:
                cutoff = int(self._clock_ns() - self.retention_days * _NS_PER_DAY)
                deleted += db.execute("DELETE FROM decisions WHERE time_unix_ns < ?", (cutoff,)).rowcount
                db.execute("DELETE FROM events WHERE time_unix_ns < ?", (cutoff,))
            if self.max_rows > 0:
                row = db.execute("SELECT id FROM decisions ORDER BY id DESC LIMIT 1 OFFSET ?",
                                 (self.max_rows - 1,)).fetchone()
                if row is not None:
                    deleted += db.execute("DELETE FROM decisions WHERE id < ?", (row[0],)).rowcount
            # ON DELETE CASCADE covers images; this also removes orphans left by older writers
            db.execute("DELETE FROM images WHERE decision_id NOT IN (SELECT id FROM decisions)")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if deleted:
            log.info("audit retention deleted %d decisions from %s", deleted, self.path)
        return deleted

    def vacuum(self) -> None:
        """Give free pages back to the file system (rewrites the file; run at a quiet time)."""
        self._conn().execute("VACUUM")

    # ------------------------------------------------------------------ reading
    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def query(self, *, since_unix_ns: int | None = None, verdict: str | None = None,
              limit: int = 100) -> list[dict]:
        """Most recent decisions first, as JSON-ready dicts (no image bytes; ``images`` lists modalities)."""
        sql = ("SELECT d.*, (SELECT group_concat(modality) FROM images i WHERE i.decision_id = d.id) "
               "FROM decisions d WHERE 1=1")
        args: list[Any] = []
        if since_unix_ns is not None:
            sql += " AND time_unix_ns >= ?"
            args.append(int(since_unix_ns))
        if verdict is not None:
            sql += " AND verdict = ?"
            args.append(str(verdict))
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        cur = self._conn().execute(sql, args)
        names = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            r = dict(zip(names[:-1], row[:-1]))
            for k in ("reasons", "evidence", "hints", "latency_ms", "face_box"):
                r[k] = json.loads(r[k]) if r[k] is not None else None
            r["images"] = sorted(row[-1].split(",")) if row[-1] else []
            out.append(r)
        return out

    def image(self, decision_id: int, modality: Modality | str) -> bytes | None:
        """The stored JPEG of one decision and modality, or None."""
        row = self._conn().execute("SELECT jpeg FROM images WHERE decision_id = ? AND modality = ?",
                                   (int(decision_id), Modality.parse(modality).value)).fetchone()
        return bytes(row[0]) if row else None


def encode_jpeg(img: Any, quality: int = 85, modality: str = "rgb") -> bytes:
    """JPEG bytes of an image: rgb ``uint8 H×W×3`` (RGB order), ir/depth ``uint8|uint16 H×W`` (scaled to 8 bit)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    elif a.ndim == 2 and a.dtype != np.uint8:
        hi = float(a.max()) if a.size else 0.0
        a = np.zeros(a.shape, np.uint8) if hi <= 0 else np.clip(a.astype(np.float32) * (255.0 / hi), 0, 255
                                                                  ).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", a, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise EdgePadError(f"could not encode the {modality} image of shape {a.shape} as JPEG")
    return buf.tobytes()


class AuditWriter:
    """Background writer: the decision path enqueues, a thread commits in batches (one fsync per batch).

    Back-pressure, never silent loss (docs/SERVICE.md, "Audit back-pressure"):

    * a batch that fails to commit (database locked by another connection, disk full, I/O error) is kept and
      retried with back-off (0.05 s doubling to 2 s) until it commits; :meth:`stats` shows the error meanwhile
      and clears it on the first commit after recovery (``recoveries`` counts them);
    * the queue is bounded (``max_pending`` rows, ≈ 34 s at 30 decisions/s): when it is full, :meth:`submit`
      **blocks** the decision stream until there is room, so no decision is published without its row queued
      (the service's health is unhealthy ``audit_unavailable`` meanwhile and the decision age grows: fail
      closed, no fresh LIVE);
    * rows still pending when :meth:`close` gives up (storage still failing after ``timeout_s``) are counted in
      ``dropped`` and logged as an error: the only loss, at shutdown, never silent.

    Args:
        audit: a factory returning the :class:`AuditLog`; it is called inside the writer thread, which then
            owns the SQLite connection.
        max_pending: queue bound (rows).
        max_batch: rows per transaction.
        on_commit: called in the writer thread with the committed row ids.
    """

    def __init__(self, audit: Callable[[], AuditLog], *, max_pending: int = 1024, max_batch: int = 64,
                 on_commit: Callable[[list[int]], None] | None = None) -> None:
        self._factory = audit
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._max_batch = max(1, int(max_batch))
        self._on_commit = on_commit
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._first_event: tuple[str, Mapping[str, Any]] | None = None
        self._close_deadline = float("inf")
        self.dropped = 0
        self.committed = 0
        self.recoveries = 0
        self.blocked = 0                 # submits that found the queue full and waited
        self.last_error: str | None = None
        self.last_commit_ns = 0

    def start(self, first_event: tuple[str, Mapping[str, Any]] | None = None) -> "AuditWriter":
        """Open the log in the writer thread and (with ``first_event``, e.g. ``("service_start", {...})``)
        commit that event before returning: proof that the log is writable. Raises the open or write error here.
        """
        self._first_event = first_event
        self._thread = threading.Thread(target=self._run, name="edgepad-audit", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join(5.0)
            self._thread = None
            exc, self._error = self._error, None
            if isinstance(exc, EdgePadError):
                raise exc
            raise EdgePadError(f"the audit log is not writable: {type(exc).__name__}: {exc}") from exc
        return self

    def submit(self, decision: Decision, images: Mapping[Modality | str, Any] | None = None,
               model_sha256: str | None = None) -> bool:
        """Queue a decision (wall time taken now); blocks while the queue is full (back-pressure).

        Returns:
            True once queued; False only when the writer is closing.
        """
        return self._put((decision, images, model_sha256, time.time_ns()), None)

    def _put(self, item: Any, timeout_s: float | None) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            pass
        with self._lock:
            self.blocked += 1
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._closing.is_set() and self._thread is not None:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if deadline is not None and time.monotonic() >= deadline:
                    break
        with self._lock:
            self.dropped += 1
        log.error("audit queue full and storage failing (%s): %s not recorded", self.last_error,
                  getattr(item, "kind", "a decision"))
        return False

    def submit_event(self, kind: str, detail: Mapping[str, Any] | None = None, timeout_s: float = 2.0) -> bool:
        """Queue an operational event (e.g. ``"lockout_reset"``); waits at most ``timeout_s`` for room (it is
        called from request threads), then counts it in ``dropped`` and logs it."""
        return self._put(_Event(str(kind), dict(detail or {})), timeout_s)

    def unavailable(self) -> str | None:
        """Why the log cannot take decisions now (a failing write, or a full queue); None when writable."""
        err = self._error
        if err is not None:
            return f"{type(err).__name__}: {err}"
        if self._queue.full():
            return "audit queue full"
        return None

    def stats(self) -> dict:
        return {"committed": self.committed, "dropped": self.dropped, "pending": self._queue.qsize(),
                "max_pending": self._queue.maxsize, "blocked_submits": self.blocked,
                "recoveries": self.recoveries, "last_error": self.last_error,
                "error": None if self._error is None else str(self._error)}

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush pending rows and stop (giving up after ``timeout_s`` when storage keeps failing)."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout_s
        self._close_deadline = deadline          # retries stop after this (see _commit)
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._closing.set()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        self._thread = None

    def __enter__(self) -> "AuditWriter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _commit(self, audit: AuditLog, events: list, batch: list) -> list[int]:
        """Commit ``events`` then ``batch``, retrying with back-off until both are in (or closing gives up).
        Committed events are removed from ``events`` so a retry never writes one twice."""
        delay = 0.05
        while True:
            try:
                while events:
                    audit.record_event(*events[0])
                    events.pop(0)
                ids = audit.record_many(batch) if batch else []  # type: ignore[arg-type]
            except (sqlite3.Error, EdgePadError, OSError) as exc:
                if self._error is None:
                    log.error("audit write failed, retrying (%d rows held, %d queued): %s", len(batch),
                              self._queue.qsize(), exc)
                self._error, self.last_error = exc, f"{type(exc).__name__}: {exc}"
                if self._closing.is_set() and time.monotonic() >= self._close_deadline:
                    raise
                time.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            if self._error is not None:
                log.warning("audit writes recovered (%s)", self.last_error)
                self._error = None
                self.recoveries += 1
            return ids

    def _run(self) -> None:
        try:
            audit = self._factory()
            if self._first_event is not None:
                audit.record_event(*self._first_event)
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            stop = False
            while not stop:
                batch: list[Sequence[Any]] = []
                events: list[tuple[str, Mapping[str, Any]]] = []
                item = self._queue.get()
                while True:
                    if item is None:
                        stop = True
                        break
                    if isinstance(item, _Event):
                        events.append((item.kind, item.detail))
                    else:
                        batch.append(item)
                    if len(batch) >= self._max_batch:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                try:
                    ids = self._commit(audit, events, batch)
                except (sqlite3.Error, EdgePadError, OSError) as exc:
                    lost = len(batch) + len(events) + self._queue.qsize()
                    with self._lock:
                        self.dropped += lost
                    log.error("audit log closed while storage still fails: %d rows/events not written: %s",
                              lost, exc)
                    return
                if ids:
                    self.committed += len(ids)
                    self.last_commit_ns = time.monotonic_ns()
                    if self._on_commit is not None:
                        self._on_commit(ids)
        finally:
            audit.close()


@dataclass(frozen=True)
class _Event:
    kind: str
    detail: Mapping[str, Any]
