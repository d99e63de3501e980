"""`import edgepad.*` and every `edgepad ... --help` work with no heavy dependency installed.

Each check runs in a fresh interpreter whose import system pretends that torch, onnx, onnxruntime, cv2,
pyrealsense2, tensorrt, cuda, pycuda, h5py, scipy, yaml and rosbags are not installed.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgepad
from edgepad.cli import COMMANDS

BLOCKED = ("torch", "onnx", "onnxruntime", "onnxscript", "cv2", "pyrealsense2", "tensorrt", "cuda", "pycuda",
           "h5py", "scipy", "yaml", "rosbags", "matplotlib", "cryptography")

#: modules that define torch.nn.Module subclasses and so need torch to import; they must fail cleanly
#: with MissingDependencyError (naming the extra), never a bare ModuleNotFoundError.
TORCH_ONLY_PREFIXES = ("edgepad.models.", "edgepad.losses", "edgepad.training", "edgepad.data.torch")

_BLOCKER = f"""
import sys, importlib.abc
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the hygiene test)", name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


ROOTS = ("edgepad", "edgepad.drivers", "edgepad.engines", "edgepad.calibration")


def _all_modules() -> list[str]:
    """Every module of the distribution (the mapped subpackages live in their own folders on disk)."""
    names = set(ROOTS)
    for root in ROOTS:
        pkg = importlib.import_module(root)
        names.update(info.name for info in pkgutil.walk_packages(pkg.__path__, root + "."))
    return sorted(n for n in names if not n.endswith("__main__"))


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKER + code], capture_output=True, text=True, timeout=300)


def test_every_module_imports_without_heavy_dependencies():
    modules = _all_modules()
    assert {"edgepad.drivers", "edgepad.engines", "edgepad.calibration", "edgepad.runtime"} <= set(modules)
    code = f"""
import importlib, json
from edgepad.errors import MissingDependencyError
out = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
        out[name] = "ok"
    except MissingDependencyError as exc:
        out[name] = "missing-dep: " + str(exc)
    except BaseException as exc:
        out[name] = "FAIL: " + type(exc).__name__ + ": " + str(exc)
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})
print(json.dumps({{"results": out, "heavy": heavy}}))
"""
    r = _run(code)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout.strip().splitlines()[-1])
    assert data["heavy"] == []
    bad = {}
    for name, status in data["results"].items():
        torch_only = name.startswith(TORCH_ONLY_PREFIXES) or name in {p.rstrip(".") for p in TORCH_ONLY_PREFIXES}
        if status == "ok":
            continue
        if torch_only and status.startswith("missing-dep") and "torch" in status:
            continue
        bad[name] = status
    assert not bad, json.dumps(bad, indent=1)


def test_cli_help_works_without_heavy_dependencies():
    code = f"""
import contextlib, io
from edgepad.cli import main
for argv in [["--help"]] + [[c, "--help"] for c in {list(COMMANDS)!r}]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0, (argv, e.code)
    assert "usage:" in buf.getvalue(), argv
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})
assert heavy == [], heavy
print("ok")
"""
    r = _run(code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_running_a_command_without_its_dependency_names_the_extra(tmp_path):
    code = """
import sys
from edgepad.cli import main
sys.exit(main(["export", "missing.pt", "--out", "x.onnx", "--threshold", "0.5", "--criterion", "bpcer20"]))
"""
    r = _run(code)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "pip install 'edgepad[" in r.stderr


def test_lazy_handles_name_the_extra_on_first_use(tmp_path):
    """Module-top ``lazy(...)`` handles import nothing at import time and fail on use with the pip extra."""
    (tmp_path / "c.yaml").write_text("a: 1\n")
    code = f"""
from edgepad.errors import MissingDependencyError
import edgepad.config, edgepad.drivers.realsense, edgepad.drivers.uvc
for use, extra in ((lambda: edgepad.drivers.realsense.rs.context, "realsense"),
                   (lambda: edgepad.drivers.uvc.cv2.VideoCapture, "vision"),
                   (lambda: edgepad.config.read_mapping({str(tmp_path / "c.yaml")!r}), "yaml")):
    try:
        use()
    except MissingDependencyError as exc:
        assert f"edgepad[{{extra}}]" in str(exc), str(exc)
    else:
        raise AssertionError(extra)
print("ok")
"""
    r = _run(code)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_no_module_imports_top_level_driver_names():
    root = Path(edgepad.__file__).resolve().parents[1]
    offenders = []
    for folder in ("edgepad", "drivers", "engines", "calibration"):
        for py in (root / folder).rglob("*.py"):
            for line in py.read_text(encoding="utf-8").splitlines():
                s = line.strip()
                if s.startswith(("import drivers", "import engines", "import calibration", "from drivers",
                                 "from engines", "from calibration")):
                    offenders.append(f"{py.relative_to(root)}: {s}")
    assert not offenders, offenders
