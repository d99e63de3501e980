from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgepad.cli import COMMANDS, build_parser, main


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepad", *args], capture_output=True, text=True, timeout=300)


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage: edgepad " + name)


def test_version_and_no_command(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0 and "edgepad 0." in capsys.readouterr().out
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error():
    r = _cli("demoo")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_doctor_json_reports_versions_and_usable_commands():
    r = _cli("doctor", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["packages"]["numpy"][0].isdigit()
    assert set(rep["commands"]) == set(COMMANDS)
    # tensorrt is never pip-installable here: build must be reported unusable with the extra named
    if rep["packages"]["tensorrt"].startswith("missing"):
        ok, why = rep["commands"]["build"]
        assert not ok and "edgepad[trt]" in why


@pytest.mark.parametrize("args,message", [
    (["run", "replay:///nonexistent?sede=1", "--model", "edgepad/assets/default.onnx"],
     "unknown option 'sede' for replay://"),
    (["record", "synthetic://default?fps=abc", "--out", "never-written", "--frames", "1"],
     "option 'fps' of synthetic:// must be a number, got 'abc'"),
    (["record", "realsense://000000000000?speed=2", "--out", "never-written", "--frames", "1"],
     "unknown option 'speed' for realsense://"),
])
def test_bad_source_options_are_one_line_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    args = [str(root / a) if a.startswith("edgepad/") else a for a in args]
    r = _cli(*args)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "never-written").exists()
