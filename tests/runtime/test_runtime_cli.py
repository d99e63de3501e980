"""`edgepad demo` and `edgepad run` end to end (tiny model; the embedded default is tested when present)."""
from __future__ import annotations

import json

import pytest

from edgepad.cli import main
from edgepad.runtime import console


def test_demo_without_default_model_names_the_file(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(console, "default_model_path", lambda: tmp_path / "assets" / "default.onnx")
    assert main(["demo", "--frames", "5"]) == 1
    err = capsys.readouterr().err
    assert "default.onnx" in err and "--model" in err


def test_demo_runs_the_whole_pipeline_with_ground_truth(tiny_model, capsys):
    rc = main(["demo", "--frames", "12", "--model", str(tiny_model), "--presentation-frames", "6", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc in (0, 1)  # the tiny model is not a PAD model: only the report is checked here
    assert "fps" in out and "inf" in out and "per presentation" in out
    assert "bonafide" in out and "print_flat" in out
    assert "12 decisions" in out


def test_run_prints_json_decisions(tiny_model, capsys):
    rc = main(["run", "synthetic://default?seed=1&frames=6&width=320&height=240", "--model", str(tiny_model),
               "--locator", "truth", "--json"])
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 6
    assert all(r["verdict"] in ("live", "spoof", "unknown") and set(r["latency_ms"]) >= {"infer", "total"}
               for r in rows)


def test_run_rejects_missing_model(capsys):
    assert main(["run", "synthetic://default", "--model", "/nonexistent.onnx"]) == 1
    assert "not found" in capsys.readouterr().err


def test_default_model_demo_verdicts():
    """With the embedded default model present, most presentations get the right verdict."""
    if not console.default_model_path().is_file():
        pytest.skip("edgepad/assets/default.onnx not built yet")
    pytest.importorskip("cv2")
    import argparse
    import io
    args = argparse.Namespace(frames=90, model=None, seed=7, realtime=False, fps=30.0, presentation_frames=15,
                              locator="haar", operating_point=None, k=3, n=5, max_age_ms=150.0, lockout_after=0,
                              threads=None, threaded=False, every=1, json=False)
    out = io.StringIO()
    assert console.run_demo(args, out=out) == 0, out.getvalue()[-2000:]
