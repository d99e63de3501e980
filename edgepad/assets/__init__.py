"""Embedded files shipped in the wheel: the default model (trained on synthetic data only)."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent


def default_model_path() -> Path:
    """Path of the embedded default ONNX model ``edgepad/assets/default.onnx`` (its manifest is
    ``default.onnx.json`` beside it); the file may be absent in a source checkout until it is trained."""
    return ASSETS / "default.onnx"
