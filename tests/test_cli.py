from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgepad.cli import COMMANDS, DISPLAY_NAMES, EXIT_CODES, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "edgepad" / "assets" / "default.onnx"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepad", *args], capture_output=True, text=True, timeout=300)


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS) | set(DISPLAY_NAMES.values())
    for name, p in sub.choices.items():
        assert p.format_help().startswith("usage: edgepad " + DISPLAY_NAMES.get(name, name))
    # the clearer names lead in --help, the old ones stay accepted
    top = parser.format_help()
    assert "speed (bench)" in top and "accuracy (benchmark)" in top
    assert sub.choices["bench"] is sub.choices["speed"]


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
    assert rep["devices"]["registration"].startswith(("native C kernel", "numpy ("))  # which CPU path runs
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


def test_help_shows_defaults_and_build_has_no_calib():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    record = " ".join(sub.choices["record"].format_help().split())
    assert "without a frame (default: 5.0)" in record
    speed = " ".join(sub.choices["speed"].format_help().split())
    assert "measurement seconds (default: 20.0)" in speed and "(default: False)" not in speed
    build = sub.choices["build"].format_help()
    assert "--calib" not in build and "required unless" in build
    assert "--calib" in sub.choices["export"].format_help()
    run = " ".join(sub.choices["run"].format_help().split())
    assert "default: the embedded edgepad/assets/default.onnx" in run


def test_exit_code_table_is_documented():
    doc = (ROOT / "docs" / "CLI.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"| {code} |" in doc, code


def test_inspect_prints_tables_and_a_verdict(capsys):
    assert main(["inspect", str(MODEL)]) == 0
    out = capsys.readouterr().out.splitlines()
    for section in ("summary:", "inputs:", "operating points:", "provenance:", "integrity:"):
        assert section in out
    assert any(line.strip().startswith("sha256") and "OK" in line for line in out)
    assert out[-1].startswith("edgepad inspect: PASS: ")


def test_inspect_json_is_pure_and_a_tampered_artifact_fails(tmp_path, capsys):
    art = tmp_path / "m.onnx"
    art.write_bytes(MODEL.read_bytes())
    (tmp_path / "m.onnx.json").write_text((ROOT / "edgepad" / "assets" / "default.onnx.json").read_text())
    assert main(["inspect", str(art), "--json"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["integrity"]["sha256"]["ok"] and doc["inputs"][0]["shape"]
    assert cap.err.strip().startswith("edgepad inspect: PASS")
    art.write_bytes(MODEL.read_bytes() + b"\0")
    assert main(["inspect", str(art)]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and out.splitlines()[-1].startswith("edgepad inspect: FAIL: artifact sha256")


def _scores(path: Path, shift: float) -> None:
    rows = ["claimed_id,test_label,is_bonafide,attack_type,score"]
    rows += [f"s{i},b{i},True,,{0.6 + shift + i / 100}" for i in range(10)]
    rows += [f"s{i},a{i},False,print,{0.3 - i / 100}" for i in range(10)]
    path.write_text("\n".join(rows) + "\n")


def test_metrics_json_keeps_stdout_pure(tmp_path, capsys):
    _scores(tmp_path / "dev.csv", 0.0)
    _scores(tmp_path / "eval.csv", 0.01)
    assert main(["metrics", str(tmp_path / "dev.csv"), str(tmp_path / "eval.csv"), "--json", "--no-plots"]) == 0
    cap = capsys.readouterr()
    assert "eval" in json.loads(cap.out)
    assert cap.err.strip().splitlines()[-1].startswith("edgepad metrics: PASS: ACER")
    assert main(["metrics", str(tmp_path / "dev.csv"), str(tmp_path / "eval.csv"), "--no-plots"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("edgepad metrics: PASS: ACER")


def test_run_defaults_to_the_embedded_model_json_is_pure_and_summary_readable(capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    rc = main(["run", "synthetic://default?seed=1&frames=3&width=160&height=120", "--json", "--threads", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rows = [json.loads(line) for line in cap.out.splitlines()]
    assert len(rows) == 3 and all("verdict" in r for r in rows)
    err = cap.err.strip().splitlines()
    assert err[-1].startswith("edgepad run: PASS")
    summary = [line for line in err if line.startswith("3 decisions (")]
    assert len(summary) == 1 and "frame sets" in summary[0] and "{" not in summary[0]


def test_record_ends_with_a_verdict_naming_the_session(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["record", "synthetic://default?width=160&height=120", "--out", str(out), "--frames", "1"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("edgepad record: PASS: recorded ") and last.endswith(f"wrote {out}")


def test_nan_and_negative_numbers_are_usage_errors(capsys):
    assert main(["record", "synthetic://default", "--out", "never", "--seconds", "nan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("edgepad record: error: argument --seconds: must be a finite number > 0, got 'nan' "
                   "(see edgepad record --help)")
    assert main(["bench", "--budget-s", "-1"]) == 2
    assert "--budget-s: must be a finite number > 0" in capsys.readouterr().err


def test_untyped_failures_are_one_line_with_their_exit_code(monkeypatch, capsys):
    import edgepad.commands.doctor as doctor

    def boom(args):
        raise KeyError("x")
    monkeypatch.setattr(doctor, "doctor_main", boom)
    assert main(["doctor"]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: KeyError" in err and "--debug" in err

    def denied(args):
        raise PermissionError(13, "Permission denied", "/x/y")
    monkeypatch.setattr(doctor, "doctor_main", denied)
    assert main(["doctor"]) == 3
    assert capsys.readouterr().err.strip() == "edgepad doctor: error: /x/y: Permission denied"

    ort_error = type("InvalidProtobuf", (Exception,), {"__module__": "onnxruntime.capi.onnxruntime_pybind11_state"})

    def ort(args):
        raise ort_error("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :\nLoad model failed")
    monkeypatch.setattr(doctor, "doctor_main", ort)
    assert main(["doctor"]) == 5
    assert capsys.readouterr().err.strip() == ("edgepad doctor: error: ONNX Runtime: InvalidProtobuf: "
                                               "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed")

    def undecodable(args):
        b"\xff".decode("utf-8")
    monkeypatch.setattr(doctor, "doctor_main", undecodable)
    assert main(["doctor"]) == 4
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_calibration_rejections_keep_the_whole_reason():
    pytest.importorskip("cv2")
    import numpy as np
    from edgepad.calibration.board import BoardSpec
    from edgepad.calibration.capture import ViewCollector
    from edgepad.types import Modality
    c = ViewCollector(BoardSpec())
    reason = c.offer({Modality.RGB: np.zeros((48, 64, 3), np.uint8)})
    assert reason == "rgb: no board"
    assert c.coverage.rejected == {"no board": 1} and "last: rejected: rgb: no board" in c.coverage.text()


def test_run_logging_prints_a_repeated_message_once_then_its_count_before_the_verdict(capsys):
    import argparse
    import io
    import logging
    import warnings

    from edgepad._console import run_logging
    from edgepad.commands.common import verdict

    buf = io.StringIO()
    root = logging.getLogger()
    before, show = list(root.handlers), warnings.showwarning
    with run_logging(logging.INFO, stream=buf):
        for i in range(14):
            logging.getLogger("edgepad.x").warning("same %s", "thing")
        logging.getLogger("edgepad.x").info("other")
        logging.getLogger("edgepad.x").info("other")
        logging.getLogger("edgepad.x").debug("hidden")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(3):
                warnings.warn("python says so", UserWarning)
        verdict(argparse.Namespace(command="x"), True, "done", stream=buf)
    lines = buf.getvalue().splitlines()
    assert lines[:2] == ["WARNING edgepad.x: same thing", "INFO edgepad.x: other"]
    assert sum("UserWarning: python says so" in x for x in lines) == 2     # once, then once with its count
    assert lines[-4:-2] == ["WARNING edgepad.x: same thing (repeated 13 times)",
                            "INFO edgepad.x: other (repeated 1 time)"]
    assert lines[-2].startswith("WARNING py.warnings: ") and lines[-2].endswith("python says so (repeated 2 times)")
    assert lines[-1] == "edgepad x: PASS: done" and "hidden" not in buf.getvalue()
    assert root.handlers == before and warnings.showwarning is show      # the run's handler is gone again
