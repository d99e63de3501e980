"""edgepad: multi-modal (RGB + depth + near-IR) face presentation-attack detection for edge terminals.

Importing edgepad loads numpy only; heavy dependencies are imported where they are used.
"""
from __future__ import annotations

__version__ = "0.1.0"

from edgepad.errors import EdgePadError
from edgepad.types import Decision, Frame, FrameSet, Modality, Reason, Verdict

__all__ = ["__version__", "EdgePadError", "Decision", "Frame", "FrameSet", "Modality", "Reason", "Verdict"]
