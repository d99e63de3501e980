"""The one gateway to heavy optional dependencies (torch, onnxruntime, cv2, pyrealsense2, tensorrt …).

No edgepad module imports these at module level: a module declares what it needs at its top with
``torch = lazy("torch")`` (imported on first use) or calls :func:`require` at the point of use.
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
    "tqdm": ("torch", ""),
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


class LazyModule:
    """A module handle declared at module top and imported on first attribute access (Polygraphy's ``lazy_import``).

    ``cv2 = lazy("cv2")`` at the top of a module shows what it depends on; ``cv2.resize(...)`` imports OpenCV the
    first time (raising :class:`MissingDependencyError` with the pip extra when it is absent). ``cv2()`` imports it
    now and returns the real module; ``bool(handle)`` says whether it is installed without importing it. The handle
    defines no public attribute of its own, so every name (``torch.load``, ``onnx.load``) is the module's.
    """

    __slots__ = ("_name", "_extra", "_module")

    def __init__(self, name: str, extra: str | None = None) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_extra", extra)
        object.__setattr__(self, "_module", None)

    def __call__(self) -> ModuleType:
        """Import (once) and return the real module."""
        mod = object.__getattribute__(self, "_module")
        if mod is None:
            mod = require(object.__getattribute__(self, "_name"), object.__getattribute__(self, "_extra"))
            object.__setattr__(self, "_module", mod)
        return mod

    def __getattr__(self, attr: str):
        return getattr(self(), attr)

    def __bool__(self) -> bool:
        return available(object.__getattribute__(self, "_name"))

    def __repr__(self) -> str:
        state = "loaded" if object.__getattribute__(self, "_module") is not None else "not loaded"
        return f"<lazy module {object.__getattribute__(self, '_name')!r} ({state})>"


def lazy(module: str, extra: str | None = None) -> LazyModule:
    """A :class:`LazyModule` for ``module`` (e.g. ``torch = lazy("torch")``); nothing is imported until used."""
    return LazyModule(module, extra)
