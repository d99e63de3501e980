"""Per-head diagnostics of `edgepad evaluate`: a tiny ONNX model with a constant (uninformative) rgb head and a
separating depth head; heads.json / heads.md / heads.png, the weakest head named in the report and summary."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.errors import MetricError
from edgepad.evaluation import (ScoreSet, evaluate_model, head_diagnostics, read_scores, render_heads_markdown)
from edgepad.metrics import eer_threshold, pad_metrics, split_scores

from .test_evaluate_model import S, bench  # noqa: F401  (module fixture: the tiny benchmark)


def _heads_model(path):
    """score = sigmoid(8·mean|depth| + 2·mean(ir) − 1) (separates the tiny benchmark's classes); score_rgb = 0.5
    (constant: uninformative); score_depth = score + 0 (the separating head)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from edgepad.engines.manifest import ModelManifest, TensorSpec, write_manifest
    from edgepad.preprocess import default_input_specs

    def c(name, v):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))

    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    nodes = [helper.make_node("Constant", [], ["ax"], value=axes), c("w_d", 8.0), c("w_i", 2.0), c("b", -1.0),
             c("zero", 0.0),
             helper.make_node("Abs", ["depth"], ["dabs"]),
             helper.make_node("ReduceMean", ["dabs", "ax"], ["dm"], keepdims=0),
             helper.make_node("ReduceMean", ["ir", "ax"], ["im"], keepdims=0),
             helper.make_node("ReduceMean", ["rgb", "ax"], ["rm"], keepdims=0),
             helper.make_node("Mul", ["dm", "w_d"], ["t1"]), helper.make_node("Mul", ["im", "w_i"], ["t2"]),
             helper.make_node("Add", ["t1", "t2"], ["t4"]), helper.make_node("Add", ["t4", "b"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["score"]),
             helper.make_node("Mul", ["rm", "zero"], ["r0"]), helper.make_node("Sigmoid", ["r0"], ["score_rgb"]),
             helper.make_node("Add", ["score", "r0"], ["score_depth"])]
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", ch, S, S]) for n, ch in
           (("rgb", 3), ("depth", 1), ("ir", 1))]
    names = ("score", "score_rgb", "score_depth")
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B"]) for n in names]
    model = helper.make_model(helper.make_graph(nodes, "tiny_heads", ins, outs),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    specs = {k: type(v)(**{**v.__dict__, "shape": (-1, *v.shape[1:])}) for k, v in default_input_specs(S).items()}
    man = ModelManifest(model="tiny_heads", modalities=("rgb", "depth", "ir"), inputs=specs,
                        outputs={n: TensorSpec(n, (-1,)) for n in names}, threshold=0.5,
                        threshold_criterion="bpcer20", format="onnx")
    write_manifest(man, path)
    return path


@pytest.fixture(scope="module")
def heads_model(tmp_path_factory):
    from edgepad._optional import available
    if not available("edgepad.engines.ort_backend"):
        pytest.skip("edgepad.engines.ort_backend not present")
    return _heads_model(tmp_path_factory.mktemp("model") / "heads.onnx")


@pytest.fixture(scope="module")
def evaluated(bench, heads_model, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("ev_heads")
    doc = evaluate_model(heads_model, bench, "grandtest", out, criterion="bpcer20", plots=True)
    return out, doc


def test_constant_head_is_weakest_and_separating_head_is_perfect(evaluated):
    out, doc = evaluated
    diag = json.loads((out / "heads.json").read_text())
    assert list(diag["heads"]) == ["score_rgb", "score_depth"]
    rgb, depth = diag["heads"]["score_rgb"], diag["heads"]["score_depth"]
    # constant head: every class has the same distribution, EER 50 %, and it is named the weakest
    for cls in ("bonafide", "print_flat", "replay"):
        d = rgb["distribution"]["eval"][cls]
        assert d["median"] == pytest.approx(0.5) and d["p5"] == d["p95"] == pytest.approx(0.5)
    assert rgb["eer_dev"] == pytest.approx(0.5)
    assert rgb["eval_at_eer_dev"]["acer"] >= 0.5
    assert diag["weakest_head"] == "score_rgb" == doc["heads"]["weakest_head"]
    # separating head: bona fide above every attack, EER 0, ACER 0 at its own dev-EER τ
    ev = depth["distribution"]["eval"]
    assert ev["bonafide"]["n"] == 6 and ev["print_flat"]["n"] == 4 and ev["replay"]["n"] == 4
    assert ev["bonafide"]["p5"] > max(ev["print_flat"]["p95"], ev["replay"]["p95"])
    assert depth["eer_dev"] == 0.0 and depth["eval_at_eer_dev"]["acer"] == 0.0
    assert diag["fused"]["eer_dev"] == doc["result"]["eer_dev"]["eer"]


def test_head_stats_match_video_level_head_scores(evaluated, heads_model, bench):  # noqa: F811
    """heads.json = metrics functions on the video means of the head's frame scores (τ = dev EER of the head)."""
    out, _ = evaluated
    from edgepad.engines.backend import load_backend
    from edgepad.evaluation import aggregate_videos, score_protocol, with_scores
    fr = score_protocol(load_backend(heads_model), bench, "grandtest", heads=["score_rgb", "score_depth"])
    vids = {f: aggregate_videos(with_scores(s, s.meta["head_scores"]["score_depth"])) for f, s in fr.items()}
    ds = split_scores(*vids["dev"].args)
    eer, tau = eer_threshold(ds.bonafide, ds.pooled_attacks)
    ref = pad_metrics(*vids["eval"].args, tau)
    row = json.loads((out / "heads.json").read_text())["heads"]["score_depth"]
    assert row["eer_dev"] == eer and row["threshold_eer_dev"] == tau
    assert row["eval_at_eer_dev"]["acer"] == ref["acer"]
    bf = vids["eval"].score[vids["eval"].is_bonafide]
    assert row["distribution"]["eval"]["bonafide"]["median"] == pytest.approx(np.median(bf))
    assert row["distribution"]["eval"]["bonafide"]["mean"] == pytest.approx(bf.mean())
    np.testing.assert_allclose(fr["eval"].meta["head_scores"]["score_rgb"], 0.5)
    # the fused score is unchanged by collecting heads
    assert read_scores(out / "scores-eval.csv").score == pytest.approx(
        aggregate_videos(fr["eval"]).score)


def test_files_report_and_summary_name_the_weakest_head(evaluated, bench, heads_model, tmp_path, capsys):  # noqa: F811
    out, _ = evaluated
    md = (out / "heads.md").read_text()
    assert "| score_rgb |" in md and "| score (fused) |" in md and "Weakest head: **score_rgb**" in md
    assert "weakest head: score_rgb" in (out / "report.md").read_text()
    pytest.importorskip("matplotlib")
    assert (out / "heads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "head_scores" not in (out / "scores-eval.csv.json").read_text()
    rc = main(["evaluate", "--model", str(heads_model), "--data", str(bench), "--out", str(tmp_path / "o"),
               "--frames", "2", "--no-plots"])
    assert rc == 0
    assert "weakest head: score_rgb" in capsys.readouterr().out
    assert (tmp_path / "o" / "heads.json").exists() and not (tmp_path / "o" / "heads.png").exists()


def test_model_without_heads_writes_no_head_files(bench, tmp_path):  # noqa: F811
    from .test_evaluate_model import _onnx_model
    from edgepad._optional import available
    if not available("edgepad.engines.ort_backend"):
        pytest.skip("edgepad.engines.ort_backend not present")
    model = _onnx_model(tmp_path / "tiny.onnx")
    doc = evaluate_model(model, bench, "grandtest", tmp_path / "ev", plots=False, max_frames=1)
    assert "heads" not in doc and not (tmp_path / "ev" / "heads.json").exists()


def _set(scores, bf, att):
    n = len(scores)
    return ScoreSet([f"s{i}" for i in range(n)], [f"v{i}" for i in range(n)], bf, att, scores)


def test_head_diagnostics_errors_and_markdown():
    bf = np.array([True, True, False, False])
    att = ["", "", "print", "print"]
    good = _set([0.9, 0.8, 0.1, 0.2], bf, att)
    flat = _set([0.5, 0.5, 0.5, 0.5], bf, att)
    diag = head_diagnostics({"score_a": good, "score_b": flat}, {"score_a": good, "score_b": flat})
    assert diag["weakest_head"] == "score_b" and diag["fused"] is None
    assert diag["heads"]["score_a"]["distribution"]["dev"]["print"]["mean"] == pytest.approx(0.15)
    md = render_heads_markdown(diag)
    assert "| score_a | 0.00 % |" in md and "(fused)" not in md
    assert "| score_b | print | 2 | 0.500 | 0.500 | 0.500 | 0.500 |" in md
    with pytest.raises(MetricError):
        head_diagnostics({}, {})
    with pytest.raises(MetricError):
        head_diagnostics({"score_a": good}, {"score_b": good})
    with pytest.raises(MetricError):
        nan = _set([np.nan, np.nan, 0.1, 0.2], bf, att)
        head_diagnostics({"score_a": nan}, {"score_a": good})


def test_failing_head_diagnostics_do_not_fail_the_evaluation(bench, heads_model, tmp_path,  # noqa: F811
                                                              monkeypatch, capsys):
    import edgepad.evaluation as ev

    def boom(*a, **k):
        raise MetricError("no valid bona fide head scores")

    monkeypatch.setattr(ev, "head_diagnostics", boom)
    rc = main(["evaluate", "--model", str(heads_model), "--data", str(bench), "--out", str(tmp_path / "o"),
               "--frames", "1", "--no-plots"])
    assert rc == 0
    assert "per-head diagnostics skipped: no valid bona fide head scores" in capsys.readouterr().out
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["heads"] == {"error": "no valid bona fide head scores"} and not (tmp_path / "o" / "heads.json").exists()
    assert "per-head diagnostics: skipped" in (tmp_path / "o" / "report.md").read_text()
