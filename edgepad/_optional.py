"""The one gateway to heavy optional dependencies (torch, onnxruntime, cv2, pyrealsense2, tensorrt …).

No edgepad module imports these at module level; code calls :func:`require` at the point of use.
"""
from __future__ import annotations

import importlib
import importlib.util
import platform
from types import ModuleType

from edgepad.errors import MissingDependencyError

#: import name -> (pip extra, platform hint)
EXTRAS: dict[str, tuple[str | None, str]] = {
    "torch": ("torch", "On a Jetson install NVIDIA's torch build for your JetPack; never the PyPI wheel."),
    "onnx": ("onnx", ""),
    "onnxruntime": ("onnx", ""),
    "onnxscript": ("onnx", ""),
    "cv2": ("vision", "On a Jetson use JetPack's OpenCV: create the venv with --system-site-packages."),
    "pyrealsense2": ("realsense", "Debian needs `apt-get install -y libusb-1.0-0`; on aarch64 with Python "
                     "other than 3.10/3.12 build librealsense from source with -DBUILD_PYTHON_BINDINGS=true."),
    "tensorrt": ("trt", "On a Jetson TensorRT comes from JetPack (python3-libnvinfer): create the venv with "
                 "--system-site-packages."),
    "cuda": ("trt", "pip install cuda-python (cuda-bindings 12.x on JetPack 6, 13.x on JetPack 7)."),
    "cuda.bindings": ("trt", "pip install cuda-python (cuda-bindings 12.x on JetPack 6, 13.x on JetPack 7)."),
    "pycuda": ("pycuda", "pycuda builds from source against the CUDA toolkit; cuda-python is the default."),
    "yaml": ("yaml", ""),
    "h5py": ("data", ""),
    "rosbags": ("test", ""),
    "scipy": ("data", ""),
    "matplotlib": ("plot", ""),
    "cryptography": ("integrity", ""),
}


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a broken install may still fail later)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra that provides it.

    Args:
        module: import name, e.g. ``"onnxruntime"`` or ``"cuda.bindings.driver"``.
        extra: pip extra; looked up in :data:`EXTRAS` when omitted.

    Raises:
        MissingDependencyError: the module (or a shared library it needs) cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        known_extra, hint = EXTRAS.get(module, EXTRAS.get(root, (None, "")))
        if platform.machine() == "aarch64" and root in ("tensorrt", "cv2"):
            hint = hint or "On a Jetson use JetPack's packages with a --system-site-packages venv."
        # a ModuleNotFoundError says nothing new; any other ImportError (missing .so) is worth showing
        detail = "" if isinstance(exc, ModuleNotFoundError) else f" ({exc})"
        raise MissingDependencyError(module, extra or known_extra, hint + detail) from exc
