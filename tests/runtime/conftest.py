"""Runtime test fixtures: the tiny ONNX model of tests/helpers/onnx_model.py, exported once, and its backend."""
from __future__ import annotations

import pytest

from tests.helpers.onnx_model import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Path of the tiny ONNX model (its manifest is ``<path>.json``)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    build_tiny_model(path)
    return path


@pytest.fixture(scope="module")
def backend(tiny_model):
    """The tiny model in ONNX Runtime (1 thread), activated."""
    from edgepad.engines.backend import load_backend
    be = load_backend(tiny_model, threads=1)
    be.activate()
    yield be
    be.deactivate()
