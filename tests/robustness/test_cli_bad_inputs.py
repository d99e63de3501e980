"""Bad ``edgepad`` invocations, run in-process through :func:`edgepad.cli.main`: each must fail with one line on
stderr (``edgepad <cmd>: ...``), a non-zero exit code that is not the internal-error code, and no traceback."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from edgepad.cli import EXIT_CODES, main

ROOT = Path(__file__).resolve().parents[2]
MODEL = str(ROOT / "edgepad" / "assets" / "default.onnx")
NON_UTF8 = b"\xff\xfe\x80 not: [utf-8\n\xc3\x28\n"
SYN = "synthetic://default?frames=2&width=160&height=120"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Broken inputs of every kind, by name."""
    d = tmp_path_factory.mktemp("bad")
    f: dict[str, Path] = {}

    def put(name: str, data: bytes | str) -> None:
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        f[name] = p

    put("nonutf8.yaml", NON_UTF8)
    put("nonutf8.csv", NON_UTF8)
    put("nonutf8.json", NON_UTF8)
    put("unclosed.yaml", "epochs: [1, 2\n")
    put("list.yaml", "- 1\n- 2\n")
    put("unknown_key.yaml", "epochz: 3\n")
    put("empty.csv", "")
    put("header_only.csv", "claimed_id,test_label,is_bonafide,attack_type,score\n")
    put("badbool.csv", "is_bonafide,score\nmaybe,0.5\n")
    put("badscore.csv", "is_bonafide,score\nTrue,abc\n")
    put("rig_bad.json", json.dumps({"reference": "rgb", "intrinsics": 3}))
    put("rig_badref.json", json.dumps({"reference": "thermal", "intrinsics": {}}))
    put("board_bad.yaml", "kind: charuco\nsquares: [5]\nsquare_mm: -3\n")
    put("board_unknown.yaml", "knd: charuco\n")
    put("model_badmanifest.onnx", b"\x08\x01")
    put("model_badmanifest.onnx.json", "{not json")
    put("model_nonutf8.onnx", b"\x08\x01")
    put("model_nonutf8.onnx.json", NON_UTF8)
    put("model_nomanifest.onnx", b"\x08\x01")
    put("model_fields.onnx", b"\x08\x01")
    put("model_fields.onnx.json", json.dumps({"model": "x"}))
    put("garbage.onnx", b"garbage, not a protobuf")
    manifest = json.loads(Path(MODEL + ".json").read_text())
    put("garbage.onnx.json", json.dumps({**manifest, "artifact_sha256": None}))
    put("plain_file", "a file, not a folder")
    put("bench_nonutf8.json", NON_UTF8)
    put("replay_badsession/session.json", "{broken")
    put("replay_nonutf8/session.json", NON_UTF8)
    (d / "replay_badindex").mkdir()
    intr = {"width": 4, "height": 4, "fx": 2.0, "fy": 2.0, "cx": 2.0, "cy": 2.0, "coeffs": [0, 0, 0, 0, 0]}
    sess = {"format": "edgepad-session", "version": 1, "modalities": ["rgb"], "streams": {"rgb": {"intrinsics": intr}}}
    put("replay_badindex/session.json", json.dumps(sess))
    put("replay_badindex/index.jsonl", '{"modality": "rgb", "file": 3}\n[1, 2]\n')
    put("replay_badstreams/session.json", json.dumps({**sess, "streams": {"rgb": {"intrinsics": {"fx": "a"}}}}))
    put("replay_badstreams/index.jsonl", "")
    put("matrix_nonutf8.yaml", NON_UTF8)
    (d / "a_dir").mkdir()
    (d / "empty_dir").mkdir()
    out = {k: str(v) for k, v in f.items()}
    out["dir"] = str(d / "a_dir")
    out["empty_dir"] = str(d / "empty_dir")
    out["missing"] = str(d / "missing")
    out["tmp"] = str(d)
    return out


#: (id, argv with {name} placeholders from ``files``)
CASES: list[tuple[str, list[str]]] = [
    # item 11: NaN / inf / negative durations and counts are refused while parsing
    ("record-seconds-nan", ["record", SYN, "--out", "{tmp}/rec1", "--seconds", "nan"]),
    ("record-seconds-inf", ["record", SYN, "--out", "{tmp}/rec1", "--seconds", "inf"]),
    ("record-frames-negative", ["record", SYN, "--out", "{tmp}/rec1", "--frames", "-1"]),
    ("record-frames-float", ["record", SYN, "--out", "{tmp}/rec1", "--frames", "1.5"]),
    ("record-timeout-nan", ["record", SYN, "--out", "{tmp}/rec1", "--frames", "1", "--timeout", "nan"]),
    ("bench-budget-nan", ["bench", "--budget-s", "nan"]),
    ("speed-warmup-negative", ["speed", "--warmup-s", "-1"]),
    ("speed-frames-word", ["speed", "--frames", "many"]),
    ("bench-soak-inf", ["bench", "--soak-min", "inf"]),
    ("demo-k-zero", ["demo", "--k", "0"]),
    ("demo-max-age-nan", ["demo", "--max-age-ms", "nan"]),
    ("demo-fps-inf", ["demo", "--fps", "inf"]),
    ("serve-port-negative", ["serve", SYN, "--model", MODEL, "--port", "-5"]),
    ("serve-health-nan", ["serve", SYN, "--model", MODEL, "--health-max-age-ms", "nan"]),
    ("synth-videos-zero", ["synth", "--out", "{tmp}/s", "--videos-per-species", "0"]),
    ("synth-size-nan", ["synth", "--out", "{tmp}/s", "--size", "nan"]),
    ("evaluate-frames-nan", ["evaluate", "--model", MODEL, "--data", "{dir}", "--out", "{tmp}/e", "--frames", "nan"]),
    ("export-calib-samples-negative", ["export", MODEL, "--out", "{tmp}/x.onnx", "--calib-samples", "-1"]),
    ("export-min-agreement-2", ["export", MODEL, "--out", "{tmp}/x.onnx", "--min-agreement", "2"]),
    ("build-workspace-nan", ["build", MODEL, "--workspace-mib", "nan"]),
    ("calibrate-views-zero", ["calibrate", "capture", "--source", SYN, "--board", "{board_bad.yaml}", "--out",
                              "{tmp}/r.json", "--views", "0"]),
    ("train-throughput-negative", ["train", "{unclosed.yaml}", "--throughput", "-2"]),
    # usage
    ("unknown-command", ["demoo"]),
    ("unknown-option", ["doctor", "--bogus"]),
    ("missing-argument", ["metrics"]),
    ("calibrate-bad-choice", ["calibrate", "board", "--kind", "circles"]),
    # models and manifests
    ("demo-model-missing", ["demo", "--model", "{missing}"]),
    ("demo-model-dir", ["demo", "--model", "{dir}"]),
    ("run-model-bad-manifest", ["run", SYN, "--model", "{model_badmanifest.onnx}"]),
    ("run-model-nonutf8-manifest", ["run", SYN, "--model", "{model_nonutf8.onnx}"]),
    ("run-model-no-manifest", ["run", SYN, "--model", "{model_nomanifest.onnx}"]),
    ("run-model-manifest-fields", ["run", SYN, "--model", "{model_fields.onnx}"]),
    ("run-model-garbage-onnx", ["run", SYN, "--model", "{garbage.onnx}"]),
    ("inspect-missing", ["inspect", "{missing}"]),
    ("inspect-dir", ["inspect", "{dir}"]),
    ("inspect-bad-manifest", ["inspect", "{model_badmanifest.onnx}"]),
    ("inspect-nonutf8-manifest", ["inspect", "{model_nonutf8.onnx}"]),
    ("inspect-manifest-fields", ["inspect", "{model_fields.onnx}"]),
    ("export-missing-checkpoint", ["export", "{missing}.pt", "--out", "{tmp}/x.onnx", "--threshold", "0.5",
                                   "--criterion", "bpcer20"]),
    ("export-garbage-onnx", ["export", "{garbage.onnx}", "--out", "{tmp}/g16.onnx", "--precision", "fp16",
                             "--no-validate"]),
    ("serve-token-file-missing", ["serve", SYN, "--model", MODEL, "--token-file", "{missing}"]),
    # sources: URI options, rigs, recordings
    ("run-unknown-uri-option", ["run", "replay:///nonexistent?sede=1"]),
    ("run-bad-uri-number", ["run", "synthetic://default?fps=abc"]),
    ("run-uri-option-twice", ["run", "synthetic://default?seed=1&seed=2"]),
    ("run-unknown-scheme", ["run", "nosuch://x"]),
    ("run-rig-bad", ["run", SYN, "--rig", "{rig_bad.json}"]),
    ("run-rig-bad-reference", ["run", SYN, "--rig", "{rig_badref.json}"]),
    ("run-rig-nonutf8", ["run", SYN, "--rig", "{nonutf8.json}"]),
    ("run-rig-dir", ["run", SYN, "--rig", "{dir}"]),
    ("run-replay-not-a-recording", ["run", "replay://{empty_dir}"]),
    ("run-replay-bad-session", ["run", "replay://{tmp}/replay_badsession"]),
    ("run-replay-nonutf8-session", ["run", "replay://{tmp}/replay_nonutf8"]),
    ("run-replay-bad-index", ["run", "replay://{tmp}/replay_badindex"]),
    ("run-replay-bad-streams", ["run", "replay://{tmp}/replay_badstreams"]),
    ("record-out-under-a-file", ["record", SYN, "--out", "{plain_file}/sub", "--frames", "1"]),
    ("record-out-is-a-file", ["record", SYN, "--out", "{plain_file}", "--frames", "1"]),
    ("record-unknown-uri-option", ["record", "realsense://000000000000?loop=true", "--out", "{tmp}/r2",
                                   "--frames", "1"]),
    # configs (YAML / JSON)
    ("train-nonutf8", ["train", "{nonutf8.yaml}"]),
    ("train-unclosed", ["train", "{unclosed.yaml}"]),
    ("train-list", ["train", "{list.yaml}"]),
    ("train-unknown-key", ["train", "{unknown_key.yaml}"]),
    ("train-missing", ["train", "{missing}.yaml"]),
    ("train-dir", ["train", "{dir}"]),
    ("train-set-no-equals", ["train", "{unclosed.yaml}", "--set", "epochs"]),
    ("evaluate-data-nonutf8", ["evaluate", "--model", MODEL, "--data", "{nonutf8.yaml}", "--out", "{tmp}/e"]),
    ("evaluate-data-missing", ["evaluate", "--model", MODEL, "--data", "{missing}", "--out", "{tmp}/e"]),
    ("evaluate-data-empty-dir", ["evaluate", "--model", MODEL, "--data", "{empty_dir}", "--out", "{tmp}/e"]),
    ("accuracy-matrix-nonutf8", ["accuracy", "{matrix_nonutf8.yaml}", "--out", "{tmp}/b"]),
    ("benchmark-matrix-missing", ["benchmark", "{missing}.yaml", "--out", "{tmp}/b"]),
    ("benchmark-bad-seeds", ["benchmark", "{unclosed.yaml}", "--seeds", "a,b", "--out", "{tmp}/b"]),
    # score CSVs
    ("metrics-nonutf8", ["metrics", "{nonutf8.csv}", "{nonutf8.csv}"]),
    ("metrics-empty", ["metrics", "{empty.csv}", "{empty.csv}"]),
    ("metrics-header-only", ["metrics", "{header_only.csv}", "{header_only.csv}"]),
    ("metrics-bad-bool", ["metrics", "{badbool.csv}", "{badbool.csv}"]),
    ("metrics-bad-score", ["metrics", "{badscore.csv}", "{badscore.csv}"]),
    ("metrics-dir", ["metrics", "{dir}", "{dir}"]),
    ("metrics-missing", ["metrics", "{missing}.csv", "{missing}.csv"]),
    # calibration
    ("calibrate-board-nonutf8", ["calibrate", "board", "--spec", "{nonutf8.yaml}"]),
    ("calibrate-board-bad", ["calibrate", "board", "--spec", "{board_bad.yaml}"]),
    ("calibrate-board-unknown-key", ["calibrate", "board", "--spec", "{board_unknown.yaml}"]),
    ("calibrate-board-squares", ["calibrate", "board", "--squares", "axb"]),
    ("calibrate-offline-missing", ["calibrate", "offline", "--rgb", "{missing}", "--board", "{board_unknown.yaml}",
                                   "--out", "{tmp}/r.json"]),
    ("calibrate-offline-empty", ["calibrate", "offline", "--rgb", "{empty_dir}", "--out", "{tmp}/r.json",
                                 "--board", "{nonutf8.yaml}"]),
    ("calibrate-compare-bad", ["calibrate", "compare", "{rig_bad.json}", "{rig_bad.json}"]),
    ("calibrate-compare-nonutf8", ["calibrate", "compare", "{nonutf8.json}", "{nonutf8.json}"]),
    ("calibrate-compare-dir", ["calibrate", "compare", "{dir}", "{dir}"]),
    # bench results
    ("bench-compare-missing", ["bench", "--compare", "{missing}.json", "{missing}.json"]),
    ("bench-compare-nonutf8", ["bench", "--compare", "{bench_nonutf8.json}", "{bench_nonutf8.json}"]),
    ("bench-compare-dir", ["bench", "--compare", "{dir}", "{dir}"]),
]


def _argv(argv: list[str], files: dict[str, str]) -> list[str]:
    return [re.sub(r"\{([^{}]+)\}", lambda m: files[m.group(1)], a) for a in argv]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_invocation_is_one_typed_line(argv, files, capsys, monkeypatch):
    monkeypatch.delenv("EDGEPAD_DEBUG", raising=False)
    monkeypatch.chdir(files["tmp"])
    rc = main(_argv(argv, files))
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc in (1, 2, 3), (rc, err)  # typed: edgepad error, usage, file system (never 4/5/70: untyped)
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("edgepad"), err


def test_table_covers_every_command():
    from edgepad.cli import COMMANDS, DISPLAY_NAMES
    names = {c[1][0] for c in CASES}
    assert len(CASES) >= 40
    for name in COMMANDS:
        if name == "doctor":
            continue
        assert name in names or DISPLAY_NAMES.get(name) in names, name


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_folder_is_a_file_system_error(files, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc = main(["record", SYN, "--out", str(ro / "session"), "--frames", "1"])
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err
    assert rc in (1, 3) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_debug_shows_the_traceback(files, capsys, monkeypatch):
    monkeypatch.chdir(files["tmp"])
    rc = main(["--debug", "metrics", files["nonutf8.csv"], files["nonutf8.csv"]])
    assert rc == 1
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" in err and err.strip().splitlines()[-1].startswith("edgepad metrics: error:")
    monkeypatch.setenv("EDGEPAD_DEBUG", "1")
    assert main(["metrics", files["nonutf8.csv"], files["nonutf8.csv"]]) == rc
    assert "Traceback" in capsys.readouterr().err
