"""Environment report for `edgepad doctor` and `edgepad bench`: versions, devices, usable subcommands."""
from __future__ import annotations

import importlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from edgepad import __version__
from edgepad._optional import EXTRAS, lazy
from edgepad.assets import default_model_path
from edgepad.drivers.registration.native import active_path as registration_path

cv2 = lazy("cv2")
rs = lazy("pyrealsense2")

#: display name -> import name
PACKAGES = {"numpy": "numpy", "torch": "torch", "onnx": "onnx", "onnxruntime": "onnxruntime", "opencv": "cv2",
            "pyrealsense2": "pyrealsense2", "tensorrt": "tensorrt", "cuda-python": "cuda.bindings",
            "pycuda": "pycuda", "pyyaml": "yaml", "h5py": "h5py"}

#: subcommand -> import names it needs beyond numpy
NEEDS = {"demo": ("onnxruntime", "cv2"), "run": ("onnxruntime", "cv2"), "serve": ("onnxruntime", "cv2"),
         "record": (), "calibrate": ("cv2",), "train": ("torch", "h5py"), "evaluate": ("onnxruntime", "h5py"),
         "metrics": (), "synth": ("h5py",), "benchmark": ("torch", "h5py", "onnxruntime"), "export": ("torch", "onnx", "onnxruntime"),
         "build": ("tensorrt", "onnx"), "bench": ("onnxruntime",), "inspect": (), "doctor": ()}

_DIST = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "cuda.bindings": "cuda-bindings"}


def _version(module: str) -> str:
    """Version string or why it is not usable; imports in a subprocess-free but guarded way."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return f"missing ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    except Exception as exc:  # a broken install must not break doctor
        return f"broken ({type(exc).__name__}: {str(exc)[:80]})"
    ver = getattr(mod, "__version__", None)
    if ver is None:
        try:
            ver = importlib.metadata.version(_DIST.get(module, module.split(".")[0]))
        except importlib.metadata.PackageNotFoundError:
            ver = "installed"
    return str(ver)


def _cuda_devices() -> str:
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().replace("\n", "; ")
    except (OSError, subprocess.TimeoutExpired):
        pass
    tegra = Path("/etc/nv_tegra_release")
    if tegra.exists():
        return "Jetson: " + tegra.read_text().splitlines()[0][:80]
    return "none found (no nvidia-smi, not a Jetson)"


def _trt_probe() -> str:
    code = ("from cuda.bindings import driver as d; assert d.cuInit(0)[0] == d.CUresult.CUDA_SUCCESS; "
            "import tensorrt as t; assert t.Builder(t.Logger()) is not None; print(t.__version__)")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "probe timed out"
    return f"builder OK (TensorRT {r.stdout.strip()})" if r.returncode == 0 else f"builder unavailable (rc {r.returncode})"


def collect(probe_gpu: bool = False) -> dict:
    """Everything `edgepad doctor` prints, as a dict."""
    packages = {name: _version(mod) for name, mod in PACKAGES.items()}
    ok = {mod: not (packages[name].startswith("missing") or packages[name].startswith("broken"))
          for name, mod in PACKAGES.items()}
    if ok.get("cv2"):
        haar = hasattr(cv2, "CascadeClassifier") and Path(getattr(getattr(cv2, "data", None), "haarcascades", "")
                                                          + "haarcascade_frontalface_default.xml").exists()
        packages["opencv"] += "" if haar else " (no Haar cascades: opencv 5.x? pin <5)"
    devices = {"cuda": _cuda_devices(),
               "realsense": _realsense_devices() if ok.get("pyrealsense2") else "pyrealsense2 missing",
               "default model": str(default_model_path()) if default_model_path().exists() else "missing",
               "registration": registration_path()}  # CPU path: native kernel or numpy
    if probe_gpu:
        devices["tensorrt"] = _trt_probe()
    commands = {}
    for cmd, needs in NEEDS.items():
        missing = [m for m in needs if not ok.get(m, False)]
        why = ", ".join(f"{m} (pip install 'edgepad[{EXTRAS.get(m, (None, ''))[0]}]')" for m in missing)
        commands[cmd] = (not missing, why)
    return {"edgepad": __version__, "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}", "packages": packages, "devices": devices,
            "commands": commands}


def _realsense_devices() -> str:
    try:
        devs = rs.context().query_devices()
        names = [f"{d.get_info(rs.camera_info.name)} #{d.get_info(rs.camera_info.serial_number)}" for d in devs]
        return ", ".join(names) if names else "no camera connected"
    except Exception as exc:  # USB/permission errors must not break doctor
        return f"query failed: {exc}"
