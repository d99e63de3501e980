"""Component benchmarks, side by side in one run: depth registration vs ``rs.align`` (and OpenCV's
``cv2.rgbd.registerDepth``), model inference FP32 / FP16 / INT8 per available backend, achieved GFLOP/s against
the CPU peak, and the model table (default model, further artifacts, each seed method's edge configuration).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgepad._optional import available, lazy
from edgepad.bench.config import DeviceBenchConfig, manifest_info
from edgepad.bench.flops import count_flops
from edgepad.bench.machine import CpuPeak, blas_gflops
from edgepad.bench.stats import latency_stats, time_calls
from edgepad.drivers import registration as R
from edgepad.drivers.capture import open_capture
from edgepad.engines.backend import load_backend
from edgepad.engines.build import BuildConfig, build_engine
from edgepad.engines.export import example_feeds, export_onnx
from edgepad.engines.formats import format_for
from edgepad.engines.manifest import read_manifest
from edgepad.engines.quantize import quantize_int8, to_fp16
from edgepad.errors import ConfigError, MissingDependencyError
from edgepad.models.registry import create_model, list_models
from edgepad.preprocess import default_input_specs
from edgepad.types import Modality

log = logging.getLogger(__name__)
cv2 = lazy("cv2")
onnx = lazy("onnx")
ort = lazy("onnxruntime")
torch = lazy("torch")


def bench_backend(artifact: Path, kind: str, budget_s: float, *, providers: Sequence[str] | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Latency of ``backend.infer`` on deterministic feeds (warm-up, then ``budget_s``).

    Returns:
        ``{"kind", "providers", "latency": latency_stats}`` or ``{"skipped": why}``.
    """
    opts: dict[str, Any] = {}
    if kind == "onnxruntime":
        opts["spin"] = True  # back-to-back calls: the model's own speed (the pipeline's backend does not spin)
        if threads:
            opts["threads"] = int(threads)
        if providers:
            opts["providers"] = list(providers)
    try:
        be = load_backend(artifact, kind, **opts)
        be.activate()
    except MissingDependencyError as exc:
        return {"skipped": f"missing dependency: {exc}"}
    except Exception as exc:  # noqa: BLE001 - e.g. an op without a CPU kernel in this precision
        return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    try:
        feeds = example_feeds(be.manifest.inputs)
        try:
            be.infer(feeds)
        except Exception as exc:  # noqa: BLE001
            return {"skipped": f"infer failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        ms = time_calls(lambda: be.infer(feeds), budget_s)
        return {"kind": be.kind, "providers": list(getattr(be, "providers_used", []) or []),
                "precision": be.manifest.precision, "latency": latency_stats(ms)}
    finally:
        be.deactivate()


def make_variants(fp32_onnx: Path, out_dir: Path, int8_samples: int = 16) -> dict[str, Any]:
    """FP16 and INT8 (Q/DQ) ONNX of an FP32 ONNX through :mod:`edgepad.engines.quantize` (for timing only).

    The INT8 variant is calibrated on ``int8_samples`` deterministic normal feeds: its timing is representative,
    its accuracy is not (deployable INT8 models come from ``edgepad export --int8`` with real calibration data).

    Returns:
        ``{"fp32": path, "fp16": path | {"skipped": why}, "int8": path | {"skipped": why}}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"fp32": fp32_onnx}
    if not onnx:
        why = str(MissingDependencyError("onnx", "onnx"))
        return {"fp32": fp32_onnx, "fp16": {"skipped": why}, "int8": {"skipped": why}}
    stem = fp32_onnx.stem
    try:
        dst = out_dir / f"{stem}.fp16.onnx"
        to_fp16(fp32_onnx, dst)
        res["fp16"] = dst
    except Exception as exc:  # noqa: BLE001
        res["fp16"] = {"skipped": f"to_fp16 failed: {type(exc).__name__}: {str(exc)[:200]}"}
    try:
        inputs = read_manifest(fp32_onnx).inputs
        feeds = [example_feeds(inputs, seed=i) for i in range(int8_samples)]
        dst = out_dir / f"{stem}.int8.onnx"
        qlog = logging.getLogger("edgepad.engines.quantize")
        level = qlog.level
        qlog.setLevel(logging.ERROR)   # the small-calibration-set warning is expected here
        try:
            quantize_int8(fp32_onnx, dst, feeds)
        finally:
            qlog.setLevel(level)
        res["int8"] = dst
    except Exception as exc:  # noqa: BLE001
        res["int8"] = {"skipped": f"quantize_int8 failed: {type(exc).__name__}: {str(exc)[:200]}"}
    return res


def _ort_targets() -> list[tuple[str, list[str] | None]]:
    """(label, providers) for each ONNX Runtime execution provider worth timing here."""
    if not ort:
        return []
    avail = ort.get_available_providers()
    out: list[tuple[str, list[str] | None]] = [("onnxruntime-cpu", ["CPUExecutionProvider"])]
    if "CUDAExecutionProvider" in avail:
        out.append(("onnxruntime-cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]))
    return out


def bench_precisions(artifact: Path, out_dir: Path, budget_s: float, *, threads: int | None = None,
                     int8_samples: int = 16, trt: bool | None = None) -> dict[str, Any]:
    """Inference latency of FP32 / FP16 / INT8 per available backend for one model.

    ONNX Runtime (CPU, and CUDA where this build has it) times the ONNX variants; TensorRT (where importable) builds
    and times an engine per precision; a non-ONNX artifact is timed as it is on its own backend.

    Returns:
        ``{"variants": {precision: path or skipped}, "results": {"<backend>/<precision>": bench_backend dict}}``.
    """
    fmt = format_for(artifact)
    results: dict[str, Any] = {}
    if fmt.kind != "onnxruntime":
        results[f"{fmt.kind}/as-built"] = bench_backend(artifact, fmt.kind, budget_s, threads=threads)
        return {"variants": {"as-built": str(artifact)}, "results": results}
    variants = make_variants(artifact, out_dir, int8_samples)
    targets = _ort_targets()
    if not targets:
        results["onnxruntime"] = {"skipped": "onnxruntime not installed"}
    for prec, path in variants.items():
        if not isinstance(path, Path):
            for label, _ in targets or [("onnxruntime-cpu", None)]:
                results[f"{label}/{prec}"] = path
            continue
        for label, providers in targets:
            results[f"{label}/{prec}"] = bench_backend(path, "onnxruntime", budget_s, providers=providers,
                                                       threads=threads)
    use_trt = available("tensorrt") if trt is None else trt
    if use_trt:
        for prec, path in variants.items():
            if not isinstance(path, Path):
                results[f"tensorrt/{prec}"] = path
                continue
            try:
                engine, _ = build_engine(path, BuildConfig(precision=prec), cache=out_dir / "engines")
                results[f"tensorrt/{prec}"] = bench_backend(engine, "trt", budget_s)
            except Exception as exc:  # noqa: BLE001
                results[f"tensorrt/{prec}"] = {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
    else:
        results["tensorrt"] = {"skipped": "tensorrt not installed here"}
    return {"variants": {k: (str(v) if isinstance(v, Path) else v) for k, v in variants.items()},
            "results": results}


def bench_registration(source: str, repeats: int = 20, case_scale: float | None = 1.0) -> dict[str, Any]:
    """Our depth registration vs ``rs.align`` (and ``cv2.rgbd.registerDepth`` when present) on the same frames.

    Two frame sets: one depth frame of ``source`` with its rig (depth → rgb), and the D435-like 640×480 scene of
    :func:`edgepad.drivers.registration.d435_like_scene` (real factory calibration). Each is timed with the
    algorithm rs.align runs (``semantics="align"``); when the source's lenses have Brown-Conrady coefficients
    (which rs.align ignores) the runtime's ``"rsutil"`` registration is timed too (``source_rsutil``).

    With pyrealsense2, ``cases`` is the rs.align case table (:func:`edgepad.drivers.registration.oracle.
    registration_cases` at ``case_scale``; None skips it): every size pair × lens variant, SSE footprint (the
    x86 wheel's), both arithmetics, one row each with ``ratio`` and ``identical_fraction``, and their geometric
    means per arithmetic.
    """
    have_rs = available("pyrealsense2")
    out: dict[str, Any] = {"librealsense": "present" if have_rs else "skipped: pyrealsense2 not installed"}
    cases: list[tuple[str, str, Any, Any, Any]] = []
    try:
        depth, target, ext = _source_depth(source)
        cases.append(("source", "align", depth, target, ext))
        if any(i.distortion == "brown_conrady" and i.has_distortion for i in (depth.intrinsics, target)):
            cases.append(("source_rsutil", "rsutil", depth, target, ext))
    except Exception as exc:  # noqa: BLE001
        out["source"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    cases.append(("d435_like", "align", *R.d435_like_scene()))
    for name, sem, depth, target, ext in cases:
        try:
            res = R.time_against_rs_align(depth, target, ext, repeats=repeats, with_librealsense=have_rs, semantics=sem)
        except Exception as exc:  # noqa: BLE001
            res = {"skipped": f"{type(exc).__name__}: {exc}"}
        res["opencv_rgbd"] = _bench_cv2_rgbd(depth, target, ext, repeats, sem)
        out[name] = res
    if have_rs and case_scale:
        out["cases"] = _registration_case_table(repeats, case_scale)
    return out


def _registration_case_table(repeats: int, scale: float) -> dict[str, Any]:
    """Per case × arithmetic: ours (``method="auto"``: the native kernel on a CPU) and rs.align interleaved in this
    thread; ratios of the wall medians (``ratio``), wall minima (``ratio_min``) and thread-CPU medians
    (``cpu_ratio``, what a shared machine disturbs least), identical pixels; the worst of each per size pair."""
    from edgepad.drivers.registration.oracle import registration_cases, time_registration_cases
    keys = ("case", "footprint", "arithmetic", "method", "ours_ms", "rs_align_ms", "ratio", "ratio_min",
            "ours_cpu_ms", "rs_align_cpu_ms", "cpu_ratio", "identical_fraction")
    try:
        rows = time_registration_cases(registration_cases(scale), repeats=repeats, footprints=("sse",))
    except Exception as exc:  # noqa: BLE001
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    rows = [{k: r[k] for k in keys if k in r} for r in rows]
    ars = ("fast", "exact")
    geo = {a: float(np.exp(np.mean([np.log(r["ratio"]) for r in rows if r["arithmetic"] == a]))) for a in ars}
    pairs: dict[str, dict[str, float]] = {}
    for r in rows:  # worst case of each size pair (over lenses and arithmetics)
        p = pairs.setdefault(r["case"].split("/")[0], {"max_ratio": 0.0, "max_ratio_min": 0.0, "max_cpu_ratio": 0.0})
        p["max_ratio"] = max(p["max_ratio"], r["ratio"])
        p["max_ratio_min"] = max(p["max_ratio_min"], r["ratio_min"])
        p["max_cpu_ratio"] = max(p["max_cpu_ratio"], r.get("cpu_ratio", 0.0))
    return {"scale": scale, "repeats": repeats, "method": sorted({r["method"] for r in rows}), "rows": rows,
            "geomean_ratio": geo, "max_ratio": {a: max(r["ratio"] for r in rows if r["arithmetic"] == a) for a in ars},
            "per_pair": pairs}


def _source_depth(source: str) -> tuple[Any, Any, Any]:
    with open_capture(source, register=False) as cap:
        for _ in range(20):
            fs = cap.read(5.0)
            if fs is not None and fs.get(Modality.DEPTH) is not None and cap.rig is not None:
                rig = cap.rig
                if Modality.RGB not in rig.intrinsics:
                    break
                depth = fs[Modality.DEPTH]
                return depth, rig.intrinsics[Modality.RGB], rig.extrinsics(Modality.DEPTH, Modality.RGB)
    raise ConfigError(f"{source} gave no depth frame with a depth→rgb rig", key="source")


def _bench_cv2_rgbd(depth: Any, target: Any, ext: Any, repeats: int, semantics: str = "align") -> dict[str, Any]:
    """Time ``cv2.rgbd.registerDepth`` (opencv-contrib) on the same frame and compare its output with ours.

    OpenCV splats each depth pixel to its nearest target pixel (``depthDilation=True`` also fills the 2×2
    neighbourhood, for a coverage comparable to ours) and writes the z of the *target* camera; rs.align and ours
    fill each pixel's projected footprint with the source z. So agreement is reported as depth differences in mm
    where both have depth, not as identical pixels.
    """
    if not cv2:
        return {"skipped": "opencv not installed"}
    if not hasattr(cv2, "rgbd") or not hasattr(cv2.rgbd, "registerDepth"):
        return {"skipped": "cv2.rgbd.registerDepth needs opencv-contrib-python (not installed)"}
    di, ti = depth.intrinsics, target

    def kmat(i: Any) -> np.ndarray:
        return np.array([[i.fx, 0, i.cx], [0, i.fy, i.cy], [0, 0, 1]], np.float64)
    rt = np.eye(4)
    rt[:3, :3] = np.asarray(ext.r, np.float64).reshape(3, 3)
    rt[:3, 3] = np.asarray(ext.t, np.float64)
    z_mm = np.round(depth.data.astype(np.float64) * depth.depth_scale_m * 1000).astype(np.uint16)
    dist = np.asarray(getattr(ti, "dist5", (0, 0, 0, 0, 0)), np.float64)

    def call() -> Any:
        return cv2.rgbd.registerDepth(kmat(di), kmat(ti), dist, rt, z_mm, (ti.width, ti.height), depthDilation=True)
    ms = time_calls(call, 0.0, warmup=2, min_iters=repeats)
    theirs = call().astype(np.float64)
    ours = R.register_depth(depth, ti, ext, semantics=semantics).data.astype(np.float64) * depth.depth_scale_m * 1e3
    both = (theirs > 0) & (ours > 0)
    diff = np.abs(theirs[both] - ours[both]) if both.any() else np.zeros(1)
    return {"ms": float(np.median(ms)), "latency": latency_stats(ms), "opencv": cv2.__version__,
            "coverage": float(np.mean(theirs > 0)), "ours_coverage": float(np.mean(ours > 0)),
            "abs_diff_mm_p50": float(np.median(diff)), "abs_diff_mm_p90": float(np.percentile(diff, 90)),
            "note": "cv2.rgbd.registerDepth(depthDilation=True): nearest-pixel splat, target-camera z, no "
                    "distortion of the depth camera; differences are in mm where both have depth"}


def _results_acer(results: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for p in results:
        try:
            doc = json.loads(Path(p).read_text())
            meta = doc.get("model", {})
            acer = doc["result"]["eval"]["acer"]
            out.append({"path": str(p), "model": meta.get("model"), "onnx_sha256": meta.get("onnx_sha256"),
                        "artifact_sha256": meta.get("artifact_sha256"), "acer": float(acer),
                        "protocol": doc.get("protocol"), "sub_protocol": doc.get("sub_protocol")})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("results file %s unusable: %s", p, exc)
    return out


def _acer_for(info: Mapping[str, Any], acers: Sequence[Mapping[str, Any]]) -> Any:
    """The ACER of an evaluation of exactly this model (same ONNX or artifact sha256). Never by architecture
    name: an untrained seed configuration shares its name with trained models of that architecture."""
    for a in acers:
        for key in ("onnx_sha256", "artifact_sha256"):
            if a.get(key) and a.get(key) == info.get(key):
                return {"acer": a["acer"], "from": a["path"], "protocol": a.get("protocol")}
    return "not measured"


def seed_model_onnx(out_dir: Path, size_px: int = 112) -> dict[str, Any]:
    """Export each seed method's edge configuration (untrained weights; timing only) to ONNX. Needs torch."""
    if not (torch and onnx):
        return {"skipped": "torch/onnx not installed: export the seed models on a development machine "
                           "(edgepad export) and pass them with --table-model"}
    torch.manual_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {}
    specs = default_input_specs(size_px)
    for name in list_models():
        try:
            model = create_model(name)
            mods = list(model.edgepad_spec["model_kwargs"]["modalities"])
            params = int(sum(p.numel() for p in model.parameters()))
            path = out_dir / f"seed-{name}.onnx"
            export_onnx(model, path, inputs={m: specs[m] for m in mods}, threshold=0.5,
                        threshold_criterion="bpcer20", training={"note": "untrained: bench timing only"})
            res[name] = {"path": path, "torch_params": params, "config": model.edgepad_spec}
        except Exception as exc:  # noqa: BLE001
            res[name] = {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return res


def model_row(name: str, artifact: Path, out_dir: Path, budget_s: float, *, threads: int | None,
              int8_samples: int, acers: Sequence[Mapping[str, Any]], extra: Mapping[str, Any] | None = None
              ) -> dict[str, Any]:
    """One model-table row: parameters, GFLOPs per decision, latency per backend/precision, ACER."""
    info = manifest_info(artifact)
    row: dict[str, Any] = {"name": name, "artifact": str(artifact), "model": info.get("model"),
                           "modalities": info.get("modalities"), "inputs": info.get("inputs")}
    if extra:
        row.update(extra)
    try:
        fl = count_flops(artifact)
        row.update({"params": fl["params"], "gflops": fl["gflops"], "flops_uncounted": fl["uncounted"]})
    except MissingDependencyError as exc:
        row.update({"params": None, "gflops": None, "flops_note": str(exc)})
    prec = bench_precisions(artifact, out_dir / "variants", budget_s, threads=threads, int8_samples=int8_samples)
    row["latency_ms"] = {k: (v["latency"]["p50"] if isinstance(v, dict) and "latency" in v else
                             (v.get("skipped", "skipped") if isinstance(v, dict) else str(v)))
                         for k, v in prec["results"].items() if "/" in k}
    row["precisions"] = prec
    row["acer"] = _acer_for(info, acers)
    return row


def run_components(config: DeviceBenchConfig, model: Path, out_dir: Path, peak: CpuPeak) -> dict[str, Any]:
    """Registration vs rs.align, FP32/FP16/INT8 per backend, GFLOP/s vs peak, and the model table."""
    work = out_dir / "artifacts"
    work.mkdir(parents=True, exist_ok=True)
    comp: dict[str, Any] = {}
    log.info("components: registration")
    comp["registration"] = bench_registration(config.source, repeats=max(5, int(config.component_s * 10)),
                                              case_scale=1.0 if config.component_s >= 0.5 else 0.25)
    acers = _results_acer(config.results)
    log.info("components: default model precisions")
    rows = [model_row("default" if config.model is None else model.name, model, work, config.component_s,
                      threads=config.threads, int8_samples=config.int8_samples, acers=acers)]
    comp["inference"] = rows[0]["precisions"]
    # GFLOP/s against peak (ORT CPU FP32, the default path on a CPU)
    flops = rows[0].get("gflops")
    cpu_fp32 = comp["inference"]["results"].get("onnxruntime-cpu/fp32", {})
    comp["flop_rate"] = {"peak_gflops": peak.gflops, "peak_formula": peak.formula,
                         "blas_gflops": blas_gflops(), "model_gflops_per_decision": flops}
    comp["flop_rate"]["blas_fraction_of_peak"] = comp["flop_rate"]["blas_gflops"] / peak.gflops if peak.gflops else None
    if flops and isinstance(cpu_fp32, dict) and "latency" in cpu_fp32:
        p50_s = cpu_fp32["latency"]["p50"] / 1e3
        achieved = flops / p50_s
        comp["flop_rate"].update({"achieved_gflops": achieved, "fraction_of_peak": achieved / peak.gflops,
                                  "latency_p50_ms": cpu_fp32["latency"]["p50"],
                                  "backend": "onnxruntime-cpu/fp32"})
    for p in config.table_models:
        rows.append(model_row(Path(p).stem, Path(p), work, config.component_s, threads=config.threads,
                              int8_samples=config.int8_samples, acers=acers))
    if config.seed_models:
        log.info("components: seed models")
        seeds = seed_model_onnx(work / "seed")
        if "skipped" in seeds:
            comp["seed_models"] = seeds
        for name, s in seeds.items():
            if not isinstance(s, dict):
                continue
            if "path" not in s:
                rows.append({"name": f"seed:{name}", **s})
                continue
            rows.append(model_row(f"seed:{name}", s["path"], work, config.component_s, threads=config.threads,
                                  int8_samples=config.int8_samples, acers=acers,
                                  extra={"torch_params": s["torch_params"], "config": s["config"]}))
    comp["model_table"] = [{k: v for k, v in r.items() if k != "precisions"} for r in rows]
    return comp
