"""Build the wheel, install it into a fresh venv and import every subpackage from it."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels = list(out.glob("edgepad-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_layout(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"edgepad", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for pkg in ("drivers", "engines", "calibration", "runtime", "commands", "models", "data", "assets"):
        assert f"edgepad/{pkg}/__init__.py" in names, pkg
    assert "edgepad/drivers/base.py" in names and "edgepad/engines/manifest.py" in names
    if (ROOT / "edgepad" / "assets" / "default.onnx").exists():
        assert {"edgepad/assets/default.onnx", "edgepad/assets/default.onnx.json"} <= set(names)
    for static in (ROOT / "edgepad" / "runtime" / "static").glob("*"):
        assert f"edgepad/runtime/static/{static.name}" in names


def test_wheel_installs_and_imports_every_subpackage(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # install the wheel by unpacking it (what pip does for a pure wheel), then borrow numpy from this venv
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    numpy_dir = Path(__import__("numpy").__file__).resolve().parents[1]
    (site / "zz_borrow_numpy.pth").write_text(str(numpy_dir) + "\n")
    code = """
import importlib, pathlib, sys
site = pathlib.Path(sys.argv[1])
for name in ["edgepad", "edgepad.drivers", "edgepad.engines", "edgepad.calibration", "edgepad.runtime",
             "edgepad.commands", "edgepad.data", "edgepad.models", "edgepad.assets", "edgepad.cli",
             "edgepad.drivers.registry", "edgepad.engines.manifest"]:
    mod = importlib.import_module(name)
    assert pathlib.Path(mod.__file__).resolve().is_relative_to(site.resolve()), (name, mod.__file__)
for bad in ["drivers", "engines", "calibration", "tests"]:
    assert not (site / bad).exists(), bad
    try:
        importlib.import_module(bad)
        raise SystemExit(f"top-level {bad} importable")
    except ModuleNotFoundError:
        pass
from edgepad.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0
print("wheel-ok")
"""
    r = subprocess.run([str(py), "-I", "-c", code, str(site)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0 and "wheel-ok" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
