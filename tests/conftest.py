"""Shared fixtures and marker probes.

Markers: ``realsense`` (pyrealsense2 importable), ``gpu`` (CUDA through torch), ``trt`` (TensorRT with a GPU; probed
in a subprocess because TensorRT can crash a GPU-less process), ``data`` (../shared/data present), ``slow``.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """The shared real-data folder (EDGEPAD_TEST_DATA or ../shared/data), or None when absent."""
    env = os.environ.get("EDGEPAD_TEST_DATA")
    p = Path(env) if env else ROOT.parent / "shared" / "data"
    return p if p.is_dir() else None


@functools.lru_cache(maxsize=None)
def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, timeout=120)
    return r.returncode == 0


@functools.lru_cache(maxsize=None)
def _gpu() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    r = subprocess.run([sys.executable, "-c", "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
                       capture_output=True, timeout=300)
    return r.returncode == 0


_TRT_PROBE = ("from cuda.bindings import driver as d; assert d.cuInit(0)[0] == d.CUresult.CUDA_SUCCESS; "
              "import tensorrt as t; assert t.Builder(t.Logger()) is not None")


@functools.lru_cache(maxsize=None)
def _trt() -> bool:
    try:
        return subprocess.run([sys.executable, "-c", _TRT_PROBE], capture_output=True, timeout=300).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pytest_collection_modifyitems(config, items):
    probes = {
        "realsense": (lambda: _importable("pyrealsense2"), "pyrealsense2 not importable (pip install 'edgepad[realsense]'; apt-get install libusb-1.0-0)"),
        "gpu": (_gpu, "no CUDA GPU"),
        "trt": (_trt, "TensorRT with a working GPU not available"),
        "data": (lambda: data_dir() is not None, "../shared/data not present (set EDGEPAD_TEST_DATA)"),
    }
    for item in items:
        for marker, (probe, why) in probes.items():
            if marker in item.keywords and not probe():
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def shared_data() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("../shared/data not present (set EDGEPAD_TEST_DATA)")
    return d
