"""Tests of the edgepad.bench package: statistics, FLOP counter, schema/compare, a real short run, the no-torch path.

No test asserts a wall-clock time; timings are only checked for consistency (e.g. total >= inference).
"""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepad import bench as B
from edgepad._optional import available
from edgepad.bench.components import _acer_for, _bench_cv2_rgbd, _results_acer
from edgepad.errors import ConfigError, ValidationError
from edgepad.types import STAGES

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


# ------------------------------------------------------------------------------------------- helpers
def tiny_model(path: Path, size: int = 32) -> Path:
    """A 3-input ONNX (rgb/depth/ir → score) with its manifest; conv MACs known in closed form."""
    from edgepad.engines.manifest import ModelManifest, TensorSpec, write_manifest
    from edgepad.preprocess import default_input_specs
    rng = np.random.default_rng(0)
    nodes, inits, feats = [], [], []
    for m, c in (("rgb", 3), ("depth", 1), ("ir", 1)):
        inits.append(numpy_helper.from_array((rng.standard_normal((4, c, 3, 3)) * 0.1).astype(np.float32), f"w_{m}"))
        nodes += [helper.make_node("Conv", [m, f"w_{m}"], [f"c_{m}"], strides=[4, 4], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c_{m}"], [f"r_{m}"]),
                  helper.make_node("GlobalAveragePool", [f"r_{m}"], [f"g_{m}"]),
                  helper.make_node("Flatten", [f"g_{m}"], [f"f_{m}"])]
        feats.append(f"f_{m}")
    inits += [numpy_helper.from_array(rng.standard_normal((12, 1)).astype(np.float32), "wg"),
              numpy_helper.from_array(np.array([1], np.int64), "shp")]
    nodes += [helper.make_node("Concat", feats, ["cat"], axis=1), helper.make_node("MatMul", ["cat", "wg"], ["lg"]),
              helper.make_node("Reshape", ["lg", "shp"], ["lf"]), helper.make_node("Sigmoid", ["lf"], ["score"])]
    ins = [helper.make_tensor_value_info(m, TensorProto.FLOAT, [1, c, size, size])
           for m, c in (("rgb", 3), ("depth", 1), ("ir", 1))]
    outs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    man = ModelManifest(model="tiny", modalities=("rgb", "depth", "ir"), inputs=default_input_specs(size),
                        outputs={"score": TensorSpec("score", (1,))}, threshold=0.5)
    write_manifest(man, path)
    return path


# ------------------------------------------------------------------------------------------- statistics
def test_latency_stats_match_linear_interpolation():
    v = np.arange(1, 101, dtype=float)[::-1]  # order must not matter
    s = B.latency_stats(v)
    def lin(q):  # rank q/100·(n-1), linear between neighbours
        r = q / 100 * 99
        lo = math.floor(r)
        return 1 + lo + (r - lo)
    assert s["n"] == 100
    assert s["p50"] == pytest.approx(lin(50)) == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(lin(90))
    assert s["p99"] == pytest.approx(lin(99))
    assert s["max"] == 100 and s["min"] == 1 and s["mean"] == pytest.approx(50.5)


def test_latency_stats_empty_and_nonfinite():
    assert B.latency_stats([])["p50"] is None and B.latency_stats([])["n"] == 0
    s = B.latency_stats([1.0, float("nan"), 3.0, float("inf")])
    assert s["n"] == 2 and s["p50"] == pytest.approx(2.0)


def test_clip_outliers_removes_only_the_spike():
    v = [10.0, 11.0, 9.0, 10.5, 9.5] * 10 + [500.0]
    kept, removed = B.clip_outliers(v, 3.0)
    assert removed == 1 and kept.max() == 11.0 and kept.size == 50
    kept, removed = B.clip_outliers([5.0] * 10, 2.0)
    assert removed == 0 and kept.size == 10
    with pytest.raises(ConfigError):
        B.clip_outliers(v, 0)


def test_summarize_reports_clipped_beside_raw():
    v = [1.0] * 40 + [2.0] * 40 + [100.0]
    s = B.summarize(v, clip_k=3.0)
    assert s["raw"]["max"] == 100.0
    assert s["clipped"]["max"] == 2.0 and s["clipped"]["removed"] == 1 and s["clipped"]["k_sigma"] == 3.0
    assert "clipped" not in B.summarize(v)


def test_soak_buckets_group_by_time():
    t = [0.1, 0.5, 1.2, 1.9, 2.5]
    rows = B.soak_buckets(t, [10, 20, 30, 40, 50], [1, 2, 3, 4, 5], bucket_s=1.0)
    assert [r["decisions"] for r in rows] == [2, 2, 1]
    assert rows[1]["total_p99"] == pytest.approx(np.percentile([30, 40], 99))
    assert rows[2]["infer_p50"] == 5


def test_time_calls_syncs_before_every_timer_read():
    calls = {"fn": 0, "sync": 0}
    ms = B.time_calls(lambda: calls.__setitem__("fn", calls["fn"] + 1), 0.0, warmup=2, min_iters=7,
                      sync=lambda: calls.__setitem__("sync", calls["sync"] + 1))
    assert len(ms) == 7 and calls["fn"] == 9 and calls["sync"] == 8  # once after warm-up, once per timed call


# ------------------------------------------------------------------------------------------- FLOPs
def _flop_graph(batch_dim):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3, 8, 8])
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, 10])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3, 7])
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "wdw"),
             numpy_helper.from_array(rng.standard_normal((10, 256)).astype(np.float32), "wg"),
             numpy_helper.from_array(rng.standard_normal((5, 7)).astype(np.float32), "wm"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),          # N·4·64·3·9
             helper.make_node("Conv", ["c1", "wdw"], ["c2"], pads=[1, 1, 1, 1], group=4),     # N·4·64·1·9
             helper.make_node("Relu", ["c2"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["flat"]),                           # N × 256
             helper.make_node("Gemm", ["flat", "wg"], ["y"], transB=1),                       # N·10·256
             helper.make_node("MatMul", ["a", "wm"], ["z"])]                                  # 2·3·7·5
    g = helper.make_graph(nodes, "flops", [x, a], [y, z], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def test_count_flops_hand_built_graph():
    m = _flop_graph(1)
    r = B.count_flops(m)
    conv, dw, gemm, mm = 4 * 64 * 3 * 9, 4 * 64 * 1 * 9, 10 * 256, 2 * 3 * 7 * 5
    assert r["by_op"] == {"Conv": conv + dw, "Gemm": gemm, "MatMul": mm}
    assert r["macs"] == conv + dw + gemm + mm and r["flops"] == 2 * r["macs"]
    assert r["nodes"] == 4 and r["uncounted"] == []
    assert r["params"] == 4 * 27 + 4 + 4 * 9 + 2560 + 35  # float initializers only (int64 shape excluded)


def test_count_flops_dynamic_batch_scales_and_leaves_model_untouched(tmp_path):
    m = _flop_graph("N")
    before = m.SerializeToString()
    r2 = B.count_flops(m, batch=2)
    r1 = B.count_flops(m, batch=1)
    assert m.SerializeToString() == before
    per_sample = 4 * 64 * 3 * 9 + 4 * 64 * 9 + 10 * 256
    assert r2["macs"] - r1["macs"] == per_sample
    onnx.save(m, str(tmp_path / "g.onnx"))
    assert B.count_flops(tmp_path / "g.onnx", batch=2)["macs"] == r2["macs"]


def test_count_flops_tiny_model(tmp_path):
    p = tiny_model(tmp_path / "t.onnx", size=32)
    r = B.count_flops(p)
    out_px = 8 * 8  # 32 px, stride 4, pad 1, k 3 → 8×8
    assert r["macs"] == 4 * out_px * 9 * (3 + 1 + 1) + 12


def test_cpu_peak_formula_is_consistent():
    p = B.cpu_peak(measure_clock=False)
    assert p.flop_per_cycle == p.fma_units * p.lanes * 2
    assert p.gflops == pytest.approx(p.cores * p.ghz * p.flop_per_cycle)
    assert B.cpu_peak(123.0, measure_clock=False).gflops == 123.0


def test_parse_tegrastats_line():
    line = ("RAM 2345/7620MB (lfb 1x4MB) CPU [5%@1510,3%@1510] EMC_FREQ 0% GR3D_FREQ 45% cpu@48.5C gpu@47.25C "
            "VDD_IN 5012mW/4980mW VDD_CPU_GPU_CV 1200mW/1100mW VDD_SOC 1500mW/1490mW")
    r = B.parse_tegrastats(line)
    assert r["gpu_util_pct"] == 45 and r["ram_used_mib"] == 2345
    assert r["power_mw"] == {"VDD_IN": 5012, "VDD_CPU_GPU_CV": 1200, "VDD_SOC": 1500}
    assert r["temp_c"] == {"cpu": 48.5, "gpu": 47.25}


# ------------------------------------------------------------------------------------------- real run
SOURCE = "synthetic://default?width=320&height=240&seed=2&drop_prob=0.2"


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    d = tmp_path_factory.mktemp("bench")
    model = tiny_model(d / "tiny.onnx", size=32)
    cfg = B.DeviceBenchConfig(source=SOURCE, model=str(model), warmup_s=0.0, budget_s=120.0, frames=10, clip_k=3.0,
                        locator="truth", components=True, component_s=0.05, seed_models=False, int8_samples=2)
    phases: list[str] = []
    doc = B.run_bench(cfg, d / "out", progress=phases.append)
    (d / "phases.json").write_text(json.dumps(phases))
    return doc, d


def test_bench_run_produces_json_markdown_and_plots(bench_run):
    doc, d = bench_run
    out = d / "out"
    on_disk = json.loads((out / "bench.json").read_text())
    B.check_schema(on_disk)
    pipe = on_disk["pipeline"]
    assert pipe["decisions"] == 10 and pipe["ended_by"] == "frames"
    assert pipe["warmup_decisions"] >= 1
    for s in STAGES:
        st = pipe["stages"][s]
        assert st["raw"]["n"] == 10 and st["raw"]["p50"] <= st["raw"]["p99"] <= st["raw"]["max"]
        assert "clipped" in st
    assert pipe["stages"]["total"]["raw"]["p50"] >= pipe["stages"]["infer"]["raw"]["p50"]
    assert len(pipe["series"]["t_s"]) == 10 and pipe["fps"] > 0
    assert pipe["e2e"]["clock"] == "pipeline"  # the offline synthetic clock is not the host clock
    assert sum(pipe["verdicts"].values()) == 10
    assert on_disk["model"]["sha256"] == __import__("edgepad.engines.manifest", fromlist=["x"]).sha256_file(
        d / "tiny.onnx")
    assert on_disk["versions"].get("packages", {}).get("numpy")
    res = pipe["resources"]
    assert res["process_cpu_s"] > 0 and res["rss_mib"]["max"] > 0
    md = (out / "bench.md").read_text()
    for s in STAGES:
        assert f"| {s} |" in md
    if available("matplotlib"):
        for name in ("latency_hist.png", "latency_cdf.png", "latency_time.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_run_reports_each_phase_once(bench_run):
    _, d = bench_run
    assert json.loads((d / "phases.json").read_text()) == [
        "warming up 0 s", "measuring 120 s or 10 decisions", "component benchmarks (0.05 s per measurement)"]


def test_bench_run_counts_drops(bench_run):
    doc, _ = bench_run
    drops = doc["pipeline"]["drops"]
    sync = drops["sync"]
    # the source drops 20 % of the frames of each stream: gaps show in the sequences and the synchronizer drops
    # the partners of incomplete sets (its counters stay exact)
    assert sum(drops["sequence_gaps"].values()) > 0
    for m in ("rgb", "depth", "ir"):
        assert sync["used"][m] == sync["matched"] >= 10  # every set holds one frame of each required stream
        assert sync["pushed"][m] >= sync["used"][m] + sync["dropped"][m]


def test_bench_components(bench_run):
    doc, _ = bench_run
    comp = doc["components"]
    inf = comp["inference"]["results"]
    assert inf["onnxruntime-cpu/fp32"]["latency"]["n"] >= 10
    for prec in ("fp16", "int8"):  # made with the engines' to_fp16 / quantize_int8, or skipped with a reason
        r = inf[f"onnxruntime-cpu/{prec}"]
        assert "latency" in r or "skipped" in r
    fr = comp["flop_rate"]
    assert fr["model_gflops_per_decision"] == pytest.approx(2 * (4 * 64 * 9 * 5 + 12) / 1e9)
    assert fr["fraction_of_peak"] == pytest.approx(fr["achieved_gflops"] / fr["peak_gflops"])
    reg = comp["registration"]
    for case in ("source", "d435_like"):
        assert reg[case]["ours_ms"] > 0
        assert "opencv_rgbd" in reg[case]
        assert reg[case]["semantics"] == "align"  # the algorithm rs.align runs: same work, same output
        if available("pyrealsense2"):
            assert reg[case]["ratio"] == pytest.approx(reg[case]["ours_ms"] / reg[case]["rs_align_ms"])
            assert reg[case]["identical_fraction"] >= 0.999
    if available("pyrealsense2"):  # the case table: every size pair x lens, both arithmetics (1/4 scale here)
        table = reg["cases"]
        assert table["scale"] == 0.25 and len(table["rows"]) == 60
        for r in table["rows"]:
            assert r["ratio"] == pytest.approx(r["ours_ms"] / r["rs_align_ms"])
            assert r["identical_fraction"] >= (1.0 if r["arithmetic"] == "exact" else 0.9999)
            assert r["method"] in ("native", "numpy")  # the CPU path that ran (doctor says which)
        assert len(table["per_pair"]) == 6  # every size pair: its worst ratio, and a target per pair
        for pair, worst in table["per_pair"].items():
            rows = [r for r in table["rows"] if r["case"].startswith(pair + "/")]
            assert worst["max_ratio"] == max(r["ratio"] for r in rows)
            assert worst["max_cpu_ratio"] == max(r["cpu_ratio"] for r in rows)
            target = doc["targets"][f"registration_over_rs_align[{pair}]"]
            assert target["met"] == (worst["max_cpu_ratio"] <= 1.0)
            assert target["wall_median_ratio"] == worst["max_ratio"]
    # the synthetic rig's colour lens has Brown-Conrady coefficients: the runtime's rsutil path is timed too
    assert reg["source_rsutil"]["semantics"] == "rsutil" and reg["source_rsutil"]["ours_ms"] > 0
    row = comp["model_table"][0]
    assert row["acer"] == "not measured" and row["params"] == 4 * 9 * 5 + 12
    assert "fraction_of_peak" in doc["targets"] and "pipeline_over_inference" in doc["targets"]
    strict = doc["targets"]["pipeline_over_inference[model back-to-back]"]
    assert strict["ratio"] == pytest.approx(doc["pipeline"]["cost"]["raw"]["p50"] / inf["onnxruntime-cpu/fp32"]
                                            ["latency"]["p50"])
    assert strict["met"] == (strict["ratio"] <= 1.25)


def test_schema_rejects_foreign_documents(bench_run):
    doc, _ = bench_run
    bad = json.loads(json.dumps(doc, default=str))
    del bad["pipeline"]["stages"]["infer"]
    with pytest.raises(ValidationError, match="infer"):
        B.check_schema(bad)
    with pytest.raises(ValidationError, match="schema"):
        B.check_schema({**json.loads(json.dumps(doc, default=str)), "schema": "other/9"})


def test_compare_ratios(bench_run, tmp_path):
    doc, d = bench_run
    a = json.loads((d / "out" / "bench.json").read_text())
    b = copy.deepcopy(a)
    for k in ("p50", "p99"):
        b["pipeline"]["stages"]["infer"]["raw"][k] *= 2.0
    b["pipeline"]["fps"] = a["pipeline"]["fps"] / 2
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    c, md = B.compare_files(tmp_path / "a.json", tmp_path / "b.json", tmp_path / "cmp")
    assert c["stages"]["infer"]["ratio_p50"] == pytest.approx(2.0)
    assert c["stages"]["infer"]["ratio_p99"] == pytest.approx(2.0)
    assert c["stages"]["register"]["ratio_p50"] == pytest.approx(1.0)
    assert c["fps"]["ratio"] == pytest.approx(0.5)
    assert c["inference"]["onnxruntime-cpu/fp32"]["ratio_p50"] == pytest.approx(1.0)
    assert "| infer |" in md and (tmp_path / "cmp" / "compare.md").exists()
    # through the CLI
    from edgepad.cli import main
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    (tmp_path / "x.json").write_text("{}")
    assert main(["bench", "--compare", str(tmp_path / "a.json"), str(tmp_path / "x.json")]) == 1


def test_missing_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="--model"):
        B.resolve_model(tmp_path / "none.onnx")
    with pytest.raises(ConfigError):
        B.DeviceBenchConfig(backend="tensorrt")


# ------------------------------------------------------------------------------------------- no torch
NO_TORCH = r"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch blocked for this test")
        return None
sys.meta_path.insert(0, _Block())
import json
import edgepad.bench as B
import edgepad.commands.bench
from edgepad.cli import main
assert "torch" not in sys.modules
from pathlib import Path
print(json.dumps({"seed": B.seed_model_onnx(Path(sys.argv[1]))}))
rc = main(["bench", "--model", sys.argv[2], "--source", "synthetic://default?width=160&height=120", "--warmup-s", "0",
             "--frames", "3", "--budget-s", "60", "--locator", "truth", "--out", sys.argv[1], "--no-plots"])
assert rc == 0, rc
assert "torch" not in sys.modules
"""


def test_bench_runs_without_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    model = tiny_model(tmp_path / "tiny.onnx", size=16)
    r = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / "o"), str(model)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # not a terminal: no \r bar, one plain line per phase, so the run is never silent
    assert "\r" not in r.stdout + r.stderr
    phases = [x for x in r.stderr.splitlines() if x.startswith("bench: ")]
    assert phases == ["bench: warming up 0 s", "bench: measuring 60 s or 3 decisions"]
    first = json.loads(r.stdout.splitlines()[0])
    assert "torch" in first["seed"]["skipped"]
    doc = json.loads((tmp_path / "o" / "bench.json").read_text())
    assert doc["pipeline"]["decisions"] == 3


@pytest.mark.gpu
def test_gpu_backends_are_timed(tmp_path):
    """On a CUDA machine the precision table has a GPU row (ORT CUDA or TensorRT)."""
    model = tiny_model(tmp_path / "tiny.onnx", size=32)
    res = B.bench_precisions(model, tmp_path / "v", 0.05, int8_samples=2)["results"]
    gpu_rows = [k for k, v in res.items() if ("cuda" in k or k.startswith("tensorrt/")) and "latency" in v]
    assert gpu_rows, res


def test_model_table_acer_matches_the_exact_model_only(tmp_path):
    doc = {"model": {"model": "flexmodal", "onnx_sha256": "a" * 64}, "protocol": "grandtest",
           "result": {"eval": {"acer": 0.0125}}}
    (tmp_path / "metrics.json").write_text(json.dumps(doc))
    acers = _results_acer([str(tmp_path / "metrics.json"), str(tmp_path / "missing.json")])
    assert len(acers) == 1
    assert _acer_for({"model": "flexmodal", "onnx_sha256": "a" * 64}, acers)["acer"] == 0.0125
    # same architecture name, other weights (e.g. an untrained seed configuration): not this model's ACER
    assert _acer_for({"model": "flexmodal", "onnx_sha256": "b" * 64}, acers) == "not measured"


def test_opencv_rgbd_registration_is_compared_with_ours():
    """Where opencv-contrib is installed: OpenCV's registerDepth is timed and its output agrees with ours.

    Scene: 40-px blocks at random depths 0.5-1.0 m, fronto-parallel, in the D435 rig without its 0.9° rotation
    (OpenCV writes the colour camera's z, rs.align and ours the depth camera's: with the rotation they differ by
    up to ±6 mm across the frame; without it by t_z = 0.6 mm). A wrong transform, unit or direction in either
    registration moves block edges by tens of pixels (p90 of |Δ| ≈ 260 mm with the inverse transform)."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "rgbd"):
        pytest.skip("cv2.rgbd.registerDepth needs opencv-contrib-python")
    from edgepad.drivers.registration import d435_like_scene
    from edgepad.types import make_frame
    from edgepad.geometry import Extrinsics
    plane, target, rotated = d435_like_scene()
    ext = Extrinsics(translation_m=rotated.translation_m)
    rng = np.random.default_rng(0)
    blocks = rng.integers(500, 1000, size=(12, 16)).astype(np.uint16)
    z = np.kron(blocks, np.ones((40, 40), np.uint16))
    depth = make_frame("depth", z, 0, intrinsics=plane.intrinsics, depth_scale_m=0.001)
    r = _bench_cv2_rgbd(depth, target, ext, repeats=3)
    assert r["ms"] > 0 and r["latency"]["n"] >= 3
    assert r["coverage"] > 0.8 and r["ours_coverage"] > 0.8
    assert r["abs_diff_mm_p50"] <= 1.0 and r["abs_diff_mm_p90"] <= 2.0, r


def test_cli_arguments_become_a_device_bench_config():
    import argparse
    from edgepad.commands.bench import add_bench_arguments, config_from_args
    p = argparse.ArgumentParser()
    add_bench_arguments(p)
    cfg = config_from_args(p.parse_args(["--clip-outliers", "--frames", "7", "--table-model", "a.onnx",
                                         "--table-model", "b.onnx", "--no-seed-models", "--no-plots"]))
    assert isinstance(cfg, B.DeviceBenchConfig)
    assert cfg.clip_k == 3.0 and cfg.frames == 7 and cfg.table_models == ("a.onnx", "b.onnx")
    assert not cfg.seed_models and not cfg.plots and cfg.source == "synthetic://default"


def test_python_dash_m_runs_the_bench_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgepad.bench", "--compare", str(tmp_path / "a.json"),
                        str(tmp_path / "b.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "edgepad bench: error: cannot read bench result" in r.stderr, r.stderr[-2000:]


def test_wheel_package_list_names_the_tool_and_renderer_packages():
    import ast
    root = Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "setup.py").read_text())
    packages = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", None) == "PACKAGES" for t in n.targets))
    for pkg in ("edgepad.bench", "edgepad.benchmark", "edgepad.synthesis"):
        assert pkg in packages and (root / pkg.replace(".", "/") / "__init__.py").is_file(), pkg
