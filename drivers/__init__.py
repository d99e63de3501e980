"""edgepad.drivers: cameras behind URIs, frame sync and depth registration."""
from edgepad.drivers.base import BaseSource, FrameSource, ThreadedSource
from edgepad.drivers.registry import open_source, register_source

__all__ = ["BaseSource", "FrameSource", "ThreadedSource", "open_source", "register_source"]
