"""Frame sources: the protocol, a base lifecycle, a threaded base for hardware sources, and the drop-oldest queue
(also the runtime's inter-stage queue).

Capture is tri-state: ``read(timeout_s)`` returns a :class:`Frame`, ``None`` on timeout (recoverable), or raises
:class:`EndOfStream` (finite source exhausted) / :class:`SourceError` (failure).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from edgepad.errors import EndOfStream, SourceError
from edgepad.geometry import Intrinsics, Rig
from edgepad.types import Frame, Modality

log = logging.getLogger(__name__)


class DropOldestQueue:
    """A bounded FIFO that drops its oldest item when full (thread-safe).

    Args:
        maxsize: capacity (>= 1).

    Attributes:
        dropped: items dropped so far because the queue was full.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self.maxsize = int(maxsize)
        self.dropped = 0

    def put(self, item: Any, force: bool = False) -> int:
        """Append ``item``, dropping the oldest items while full (``force``: append without dropping, e.g. a
        terminal marker). Returns the number dropped by this call."""
        n = 0
        with self._cond:
            while len(self._items) >= self.maxsize and not force:
                self._items.popleft()
                n += 1
            self.dropped += n
            self._items.append(item)
            self._cond.notify_all()
        return n

    def get(self, timeout_s: float | None) -> Any:
        """Oldest item, or None after ``timeout_s`` (0 = do not wait)."""
        with self._cond:
            if not self._items and (timeout_s is None or timeout_s > 0):
                self._cond.wait_for(lambda: bool(self._items), timeout=timeout_s)
            return self._items.popleft() if self._items else None

    def peek(self) -> Any:
        """Oldest item without removing it (None when empty)."""
        with self._cond:
            return self._items[0] if self._items else None

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@runtime_checkable
class FrameSource(Protocol):
    uri: str
    modalities: frozenset[Modality]

    def open(self) -> None: ...
    def close(self) -> None: ...
    def read(self, timeout_s: float = 1.0) -> Frame | None: ...
    def intrinsics(self) -> Mapping[Modality, Intrinsics]: ...
    def __enter__(self) -> "FrameSource": ...
    def __exit__(self, *exc: object) -> None: ...


class BaseSource:
    """Lifecycle shared by all sources: ``open``/``close`` are idempotent; ``read`` checks state.

    Subclasses implement ``_open_impl``, ``_close_impl`` and ``_read_impl(timeout_s)``. ``rig`` is the
    source's own camera model (device factory calibration or the synthetic rig) when it has one.
    """

    def __init__(self, uri: str, modalities: Sequence[Modality | str]) -> None:
        self.uri = uri
        self.modalities = frozenset(Modality.parse(m) for m in modalities)
        self.is_open = False
        self.rig: Rig | None = None

    def __enter__(self) -> "BaseSource":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def open(self) -> None:
        if not self.is_open:
            self._open_impl()
            self.is_open = True

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._close_impl()

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        """Next frame, ``None`` after ``timeout_s`` without one; raises EndOfStream / SourceError."""
        if not self.is_open:
            raise SourceError("source is not open; call open() or use it as a context manager", self.uri)
        return self._read_impl(timeout_s)

    def intrinsics(self) -> Mapping[Modality, Intrinsics]:
        if self.rig is None:
            raise SourceError("source has no intrinsics before open() and no rig file was given", self.uri)
        return {m: i for m, i in self.rig.intrinsics.items() if m in self.modalities}

    def _open_impl(self) -> None:
        raise NotImplementedError

    def _close_impl(self) -> None:
        pass

    def _read_impl(self, timeout_s: float) -> Frame | None:
        raise NotImplementedError


class ThreadedSource(BaseSource):
    """A capture thread copies frames into bounded drop-oldest queues (:class:`DropOldestQueue`), one per modality.

    Subclasses implement ``_start_device()``, ``_stop_device()`` and ``_grab(timeout_s) -> list[Frame]``
    (frames already copied out of the SDK pool; ``[]`` on a timeout; raise EndOfStream or SourceError).
    ``read`` returns the oldest queued frame across modalities.

    Attributes:
        dropped: frames dropped per modality because a queue was full.
    """

    def __init__(self, uri: str, modalities: Sequence[Modality | str], queue_size: int = 4) -> None:
        super().__init__(uri, modalities)
        self.queue_size = queue_size
        self._queues: dict[Modality, DropOldestQueue] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.dropped: dict[Modality, int] = {}

    def _open_impl(self) -> None:
        self._queues = {m: DropOldestQueue(self.queue_size) for m in self.modalities}
        self.dropped = {m: 0 for m in self.modalities}
        self._error = None
        self._stop.clear()
        self._start_device()
        self._thread = threading.Thread(target=self._loop, name=f"capture:{self.uri}", daemon=True)
        self._thread.start()

    def _close_impl(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        try:
            self._stop_device()
        except Exception as exc:  # closing must not raise over the original problem
            log.warning("%s: error while stopping: %s", self.uri, exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                frames = self._grab(0.1)
            except BaseException as exc:  # handed to the reader, never lost
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            if not frames:
                continue
            with self._cond:
                for f in frames:
                    q = self._queues.get(f.modality)
                    if q is None:
                        continue
                    n = q.put(f)
                    if n:
                        self.dropped[f.modality] = self.dropped.get(f.modality, 0) + n
                self._cond.notify_all()

    def _pop_oldest(self) -> Frame | None:
        heads = [(h.timestamp_ns, m) for m, h in ((m, q.peek()) for m, q in self._queues.items()) if h is not None]
        if not heads:
            return None
        return self._queues[min(heads)[1]].get(0)

    def _read_impl(self, timeout_s: float) -> Frame | None:
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                frame = self._pop_oldest()
                if frame is not None:
                    return frame
                if self._error is not None:
                    err = self._error
                    if isinstance(err, (EndOfStream, SourceError)):
                        raise err
                    raise SourceError(f"capture thread failed: {err!r}", self.uri) from err
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _start_device(self) -> None:
        raise NotImplementedError

    def _stop_device(self) -> None:
        pass

    def _grab(self, timeout_s: float) -> list[Frame]:
        raise NotImplementedError
