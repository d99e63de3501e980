"""`edgepad evaluate` end to end: a tiny benchmark in the interface-D layout, a real ONNX model (built with
onnx.helper, run by ONNX Runtime through load_backend), dev-fitted τ, CSVs, metrics JSON and report."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.evaluation import evaluate_model, read_scores, score_protocol
from edgepad.metrics import pad_metrics, place_threshold

S = 16
SPECIES = {"print_flat": "attack/2D/print_flat", "replay": "attack/2D/replay"}


def _frame(kind: str, rng) -> np.ndarray:
    yy, xx = np.mgrid[0:S, 0:S]
    r2 = ((yy - S / 2) ** 2 + (xx - S / 2) ** 2) / (S / 2) ** 2
    rgb = rng.integers(60, 200, (3, S, S))
    if kind == "bonafide":
        depth = 500 + 40 * np.minimum(r2, 1.0) + rng.normal(0, 2, (S, S))   # face relief: centre closer
        ir = 120 + rng.normal(0, 10, (S, S))
    elif kind == "print_flat":
        depth = 500 + rng.normal(0, 2, (S, S))                              # planar
        ir = 170 + rng.normal(0, 10, (S, S))
    else:  # replay: planar with holes, dark in NIR
        depth = 500 + rng.normal(0, 2, (S, S))
        depth[rng.random((S, S)) < rng.uniform(0.05, 0.4)] = 0
        ir = 15 + rng.normal(0, 5, (S, S))
    arr = np.stack([*rgb, np.clip(depth, 0, 65535), np.clip(ir, 0, 255)]).astype(np.uint16)
    return arr


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    h5py = pytest.importorskip("h5py")
    root = tmp_path_factory.mktemp("bench")
    (root / "videos").mkdir()
    (root / "protocols").mkdir()
    rng = np.random.default_rng(7)
    rows, videos = [], {}
    i = 0
    for fold in ("train", "dev", "eval"):
        for kind, n in (("bonafide", 6), ("print_flat", 4), ("replay", 4)):
            for _ in range(n):
                vid = f"{i:03d}_{kind}"
                subject = f"s{i % 5}"
                with h5py.File(root / "videos" / f"{vid}.hdf5", "w") as h:
                    for f in range(3):
                        h.create_group(f"Frame_{f}").create_dataset("array", data=_frame(kind, rng))
                label = 0 if kind == "bonafide" else 1
                rows.append([f"videos/{vid}", label, "bonafide" if kind == "bonafide" else SPECIES[kind], fold])
                videos[vid] = {"subject": subject, "group": "light" if i % 2 else "dark"}
                i += 1
    with open(root / "protocols" / "PROTOCOL-grandtest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (root / "meta.json").write_text(json.dumps({"depth_scale_m": 0.001, "crop_px": S, "videos": videos}))
    return root


def _onnx_model(path):
    """score = sigmoid(8·mean|depth| + 2·mean(ir) + 0·mean(rgb) − 1), dynamic batch, plus its manifest."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from edgepad.engines.manifest import ModelManifest, TensorSpec, write_manifest
    from edgepad.preprocess import default_input_specs

    def c(name, v):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))

    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    nodes = [helper.make_node("Constant", [], ["ax"], value=axes), c("w_d", 8.0), c("w_i", 2.0), c("w_r", 0.0),
             c("b", -1.0),
             helper.make_node("Abs", ["depth"], ["dabs"]),
             helper.make_node("ReduceMean", ["dabs", "ax"], ["dm"], keepdims=0),
             helper.make_node("ReduceMean", ["ir", "ax"], ["im"], keepdims=0),
             helper.make_node("ReduceMean", ["rgb", "ax"], ["rm"], keepdims=0),
             helper.make_node("Mul", ["dm", "w_d"], ["t1"]), helper.make_node("Mul", ["im", "w_i"], ["t2"]),
             helper.make_node("Mul", ["rm", "w_r"], ["t3"]), helper.make_node("Add", ["t1", "t2"], ["t4"]),
             helper.make_node("Add", ["t4", "t3"], ["t5"]), helper.make_node("Add", ["t5", "b"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["score"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", ch, S, S]) for n, ch in
           (("rgb", 3), ("depth", 1), ("ir", 1))]
    outs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["B"])]
    graph = helper.make_graph(nodes, "tiny_pad", ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    specs = {k: type(v)(**{**v.__dict__, "shape": (-1, *v.shape[1:])}) for k, v in default_input_specs(S).items()}
    man = ModelManifest(model="tiny_pad", modalities=("rgb", "depth", "ir"), inputs=specs,
                        outputs={"score": TensorSpec("score", (-1,))}, threshold=0.5, threshold_criterion="bpcer20",
                        format="onnx")
    write_manifest(man, path)
    return path


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    from edgepad._optional import available
    if not available("edgepad.engines.ort_backend"):
        pytest.skip("edgepad.engines.ort_backend not present yet")
    return _onnx_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_evaluate_writes_scores_metrics_and_report(bench, onnx_model, tmp_path):
    out = tmp_path / "ev"
    doc = evaluate_model(onnx_model, bench, "grandtest", out, criterion="bpcer20", plots=False)
    dev, ev = read_scores(out / "scores-dev.csv"), read_scores(out / "scores-eval.csv")
    assert len(dev) == 14 and len(ev) == 14                       # videos
    assert len(read_scores(out / "frames" / "scores-eval.csv")) == 42   # 3 frames each
    assert ev.species == ["print_flat", "replay"] and ev.meta["level"] == "video"
    assert ev.meta["artifact_sha256"] and ev.meta["threshold_criterion"] == "bpcer20"
    # video score = mean of its frame scores
    fr = read_scores(out / "frames" / "scores-eval.csv")
    i = fr.test_label.index(f"{ev.test_label[0]}#1")
    vals = [s for lab, s in zip(fr.test_label, fr.score) if lab.split("#")[0] == ev.test_label[0]]
    assert ev.score[0] == pytest.approx(np.mean(vals)) and i >= 0
    # τ from dev only, applied unchanged to eval
    res = doc["result"]
    fit = place_threshold(*dev.args, "bpcer20")                  # the default rule: the export's (gap_logit)
    tau = fit.threshold
    assert res["threshold"] == tau and res["threshold_rule"] == "gap_logit" == fit.rule
    assert res["threshold_placement"] == fit.to_dict() and doc["model"]["threshold_rule"] == "gap_logit"
    ref = pad_metrics(*ev.args, tau)
    assert res["eval"]["acer"] == ref["acer"] and res["eval"]["bpcer"] == ref["bpcer"]
    assert set(res["bpcer_per_group"]) == {"dark", "light"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["result"]["threshold"] == tau and "frame" in saved["other_level"]
    md = (out / "report.md").read_text()
    assert "τ from dev (bpcer20, placed by rule gap_logit), applied unchanged to eval" in md and "print_flat" in md and "BPCER per group" in md


def test_scores_match_the_model_on_normalised_crops(bench, onnx_model):
    """Scoring goes through preprocess.normalise exactly as the runtime does."""
    from edgepad.data.datasets import SynthBenchDataset
    from edgepad.engines.backend import load_backend
    from edgepad.preprocess import normalise
    be = load_backend(onnx_model)
    frames = score_protocol(be, bench, "grandtest", folds=("eval",), max_frames=2)["eval"]
    assert len(frames) == 28
    smp = next(iter(SynthBenchDataset(bench, "grandtest", split="eval", frames_per_video=2)))
    feed = normalise(smp.modalities, be.manifest.inputs, smp.depth_scale_m)
    z = 8 * np.abs(feed["depth"]).mean() + 2 * feed["ir"].mean() - 1
    assert frames.score[0] == pytest.approx(1 / (1 + np.exp(-z)), rel=1e-5)


def test_missing_modality_subset_uses_manifest_fill(bench, onnx_model):
    from edgepad.engines.backend import load_backend
    be = load_backend(onnx_model)
    fr = score_protocol(be, bench, "grandtest", folds=("eval",), subset=["rgb"], max_frames=1)["eval"]
    # depth and ir are absent -> filled with missing_fill = 0 -> every score is sigmoid(-1)
    np.testing.assert_allclose(fr.score, 1 / (1 + np.exp(1.0)), rtol=1e-6)
    fr2 = score_protocol(be, bench, "grandtest", folds=("eval",), subset=["rgb", "ir"], max_frames=1)["eval"]
    assert np.unique(fr2.score).size > 1


def test_evaluate_cli(bench, onnx_model, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(onnx_model), "--data", str(bench), "--protocol", "grandtest",
               "--subset", "rgb+depth", "--out", str(tmp_path / "o"), "--frames", "2", "--criterion", "eer"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "τ from dev (eer, rule gap_logit), applied to eval" in out
    meta = json.loads((tmp_path / "o" / "scores-eval.csv.json").read_text())
    assert meta["sub_protocol"] == "rgb+depth" and meta["missing_fill"] == {"ir": 0.0}
    rc = main(["evaluate", "--model", str(onnx_model), "--data", str(bench), "--protocol", "nosuch",
               "--out", str(tmp_path / "x")])
    assert rc == 1 and "nosuch" in capsys.readouterr().err
