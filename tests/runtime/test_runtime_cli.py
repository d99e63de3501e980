"""`edgepad demo` and `edgepad run` end to end (tiny model; the embedded default is tested when present)."""
from __future__ import annotations

import json

import pytest

from edgepad.cli import build_parser, main
from edgepad.commands.runtime import demo_options, pipeline_config, run_options
from edgepad.runtime import PipelineConfig, PolicyConfig, console


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
    import io
    opts = console.DemoOptions(frames=90, seed=7, presentation_frames=15,
                               pipeline=PipelineConfig(policy=PolicyConfig(k=3, n=5, max_age_ms=150.0)))
    out = io.StringIO()
    assert console.run_demo(opts, out=out) == 0, out.getvalue()[-2000:]


def test_arguments_become_typed_options(tmp_path):
    """The commands turn argparse into the runtime's typed settings in one place (commands/runtime.py)."""
    args = build_parser().parse_args(["demo", "--frames", "7", "--k", "2", "--n", "4", "--max-age-ms", "90",
                                      "--lockout-after", "3", "--operating-point", "bpcer20", "--threaded"])
    opts = demo_options(args)
    assert isinstance(opts, console.DemoOptions) and opts.frames == 7 and opts.model is None
    assert opts.pipeline.threaded and opts.pipeline.policy == PolicyConfig(operating_point="bpcer20", k=2, n=4,
                                                                             max_age_ms=90.0, lockout_after=3)
    args = build_parser().parse_args(["run", "a://1", "b://2", "--model", str(tmp_path / "m.onnx"), "--json"])
    run = run_options(args)
    assert run.source == ["a://1", "b://2"] and run.json and run.pipeline == pipeline_config(args)
    assert build_parser().parse_args(["run", "a://1", "--model", "m"]).source == ["a://1"]
    assert run_options(build_parser().parse_args(["run", "a://1", "--model", "m"])).source == "a://1"
