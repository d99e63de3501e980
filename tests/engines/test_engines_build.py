"""Build logic, the engine cache, the torch backend, the fallback chain and the CLI; TensorRT/CUDA tests are marked.

The ``trt``/``gpu`` tests run for real where a GPU (and TensorRT) exist; here they are skipped by the subprocess
probes in tests/conftest.py. Nothing fakes TensorRT.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgepad.engines.backend import load_backend  # noqa: E402
from edgepad.engines.build import BuildConfig, EngineCache, engine_manifest, plan_precision_mode  # noqa: E402
from edgepad.engines.export import example_feeds  # noqa: E402
from edgepad.engines.fallback import open_backend  # noqa: E402
from edgepad.engines.manifest import read_manifest, write_manifest  # noqa: E402
from edgepad.errors import (ConfigError, EngineMismatchError, IntegrityError,  # noqa: E402
                            PrecisionUnsupportedError)

from tests.helpers.engines_model import tiny_specs  # noqa: E402


@pytest.mark.parametrize("trt,onnx_p,req,float_dtype,strong,flags,float_layers", [
    ("8.6.1", "fp32", "fp16", "fp32", False, ["FP16"], "fp16"),
    ("8.6.1", "fp16", "fp16", "fp32", False, ["FP16"], "fp16"),
    ("8.6.1", "int8", "int8", "fp32", False, ["FP16", "INT8"], "fp16"),
    ("10.3.0", "fp16", "fp16", "fp32", True, [], "fp16"),
    ("10.3.0", "fp32", "fp16", "fp32", False, ["FP16"], "fp16"),
    # ORT Q/DQ (FP32 float layers): weak typing + FP16 flag so the unquantized layers run FP16, not FP32
    ("10.3.0", "int8", "int8", "fp32", False, ["FP16", "INT8"], "fp16"),
    # modelopt Q/DQ (FP16 float layers): strongly typed as written
    ("10.3.0", "int8", "int8", "fp16", True, [], "fp16"),
    ("10.3.0", "fp32", "fp32", "fp32", False, [], "fp32"),
    ("11.4.1", "fp16", "fp16", "fp32", True, [], "fp16"),
    ("11.4.1", "int8", "int8", "fp16", True, [], "fp16"),
    ("11.4.1", "int8", "int8", "fp32", True, [], "fp32"),   # TRT 11 cannot lower an ORT Q/DQ ONNX's float layers
    ("11.4.1", "fp32", "fp32", "fp32", True, [], "fp32"),
])
def test_precision_mode_per_trt_version(trt, onnx_p, req, float_dtype, strong, flags, float_layers):
    mode = plan_precision_mode(onnx_p, req, trt, float_dtype=float_dtype)
    assert mode["strongly_typed"] is strong and mode["flags"] == flags and mode["float_layers"] == float_layers
    assert mode["pin_fp32"] is bool(flags)


@pytest.mark.parametrize("trt,onnx_p,req", [("11.4.1", "fp32", "fp16"), ("10.3.0", "fp32", "int8"),
                                            ("8.6.1", "fp16", "int8"), ("10.3.0", "int8", "fp16")])
def test_precision_mode_refuses_impossible_builds(trt, onnx_p, req):
    with pytest.raises(ConfigError):
        plan_precision_mode(onnx_p, req, trt)


def test_build_config_validation():
    with pytest.raises(ConfigError):
        BuildConfig(precision="fp8")
    with pytest.raises(ConfigError):
        BuildConfig(precision="fp32", dla_core=0)
    with pytest.raises(ConfigError):
        BuildConfig(max_batch=2, opt_batch=4)
    assert BuildConfig().settings_hash() != BuildConfig(workspace_mib=512).settings_hash()


def test_engine_cache_refuses_stale_and_altered_plans(tiny_onnx, tmp_path):
    onnx_path, onnx_man = tiny_onnx
    cfg = BuildConfig(precision="fp32")
    mode = plan_precision_mode("fp32", "fp32", "10.3.0")
    expected = engine_manifest(read_manifest(onnx_path), cfg, "10.3.0", "Orin sm_87", mode)
    assert expected.onnx_sha256 == onnx_man.artifact_sha256 and expected.format == "tensorrt"
    cache = EngineCache(tmp_path / "cache")
    assert cache.get(expected) is None
    plan = b"plan bytes are opaque to the cache"
    path, stored = cache.put(plan, expected.replace(build={**dict(expected.build), "profiles": {}}), key=expected)
    hit = cache.get(expected)
    assert hit is not None and hit[0] == path and path.read_bytes() == plan
    assert path.name.startswith(onnx_man.artifact_sha256[:16]) and ".10.3.0." in path.name
    # another TensorRT version or device is another key; an engine never loads on a mismatching runtime
    other = engine_manifest(read_manifest(onnx_path), cfg, "10.7.0", "Orin sm_87", mode)
    assert cache.path_for(other) != path and cache.get(other) is None
    assert cache.stale(onnx_man.artifact_sha256, "10.7.0", "Orin sm_87") == [path]
    with pytest.raises(EngineMismatchError) as info:
        stored.check_compatible("10.7.0", "Orin sm_87")
    assert info.value.field == "trt_version"
    # a manifest under this key that claims another device is refused
    write_manifest(stored.replace(device="Thor sm_110"), path)
    with pytest.raises(EngineMismatchError):
        cache.get(expected)
    # altered bytes are refused
    write_manifest(stored, path)
    path.write_bytes(plan + b"!")
    with pytest.raises(IntegrityError):
        cache.get(expected)


def test_fallback_chain_degrades_to_onnxruntime(tiny_onnx, tmp_path):
    onnx_path, _ = tiny_onnx
    bogus = tmp_path / "missing.engine"
    be = open_backend(bogus, onnx_path, cache=tmp_path / "cache", ort_options={"threads": 1})
    try:
        assert be.kind == "onnxruntime" and be.degraded and be.is_active
        assert len(be.fallback_reasons) >= 2 and "missing.engine" in be.fallback_reasons[0]
        out = be.infer(example_feeds(tiny_specs(), batch=2))
        assert out["score"].shape == (2,)
    finally:
        be.deactivate()
    with pytest.raises(Exception):
        open_backend(bogus, None)


def _checkpoint(tmp_path):
    registry = pytest.importorskip("edgepad.models.registry")
    from edgepad.config import to_mapping
    torch.manual_seed(0)
    model = registry.create_model("cmfl", backbone_kwargs={"width": 8})
    inputs = tiny_specs(size_px=32, modalities=model.modalities)
    path = tmp_path / "best.pt"
    torch.save({"model": "cmfl", "model_kwargs": model.edgepad_spec["model_kwargs"],
                "state_dict": model.state_dict(), "inputs": {k: to_mapping(v) for k, v in inputs.items()}}, path)
    return path, model.eval(), inputs


def test_torch_backend_matches_onnx_export(tmp_path):
    from edgepad.engines.torch_backend import write_checkpoint_manifest
    from edgepad.training.export import export_checkpoint_onnx
    ckpt, model, inputs = _checkpoint(tmp_path)
    man = write_checkpoint_manifest(ckpt, threshold=0.3, threshold_criterion="bpcer20")
    assert man.format == "torch" and set(man.outputs) >= {"score", "score_rgb"}
    onnx_man = export_checkpoint_onnx(ckpt, tmp_path / "m.onnx", threshold=None, criterion=None, config=None,
                                      opset=17, dynamic_batch=True)
    assert onnx_man.threshold == 0.3 and onnx_man.model == "cmfl"
    feeds = example_feeds(onnx_man.inputs, batch=3, seed=5)
    with load_backend(ckpt, threads=1) as tb, load_backend(tmp_path / "m.onnx", threads=1) as ob:
        a, b = tb.infer(feeds), ob.infer(feeds)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5)
    with pytest.raises(PrecisionUnsupportedError):
        load_backend(ckpt, fp16=True).activate()


def test_cli_export_convert_and_build(tmp_path):
    from edgepad.cli import main
    from tests.helpers.engines_model import signal_data
    ckpt, model, inputs = _checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--threshold", "0.5", "--criterion", "bpcer20",
                 "--dynamic-batch"]) == 0
    assert read_manifest(out).validation["max_abs_error"] < 1e-5
    feeds, live, species = signal_data(64, 9, size_px=32)
    npz = tmp_path / "data.npz"
    np.savez(npz, **{k: v for k, v in feeds.items() if k in inputs}, is_bonafide=live, species=np.array(species))
    assert main(["export", str(out), "--out", str(tmp_path / "m16.onnx"), "--precision", "fp16",
                 "--validate", str(npz), "--min-agreement", "0.9", "--max-acer-increase", "0.05"]) == 0
    assert read_manifest(tmp_path / "m16.onnx").validation["samples"] == 64
    assert main(["export", str(out), "--out", str(tmp_path / "m8.onnx"), "--precision", "int8",
                 "--calib", str(npz), "--no-validate"]) == 0
    assert read_manifest(tmp_path / "m8.onnx").calibration_set_sha256
    # INT8 without calibration data is a usage error
    assert main(["export", str(out), "--out", str(tmp_path / "bad.onnx"), "--precision", "int8"]) == 1


# ------------------------------------------------------------------------------------------------ GPU / TensorRT
@pytest.mark.gpu
def test_cuda_memory_roundtrip():
    from edgepad.engines.cuda_mem import CudaMemory
    with CudaMemory() as mem:
        host = mem.pinned((4, 5), np.float32)
        host[:] = np.arange(20, dtype=np.float32).reshape(4, 5)
        back = mem.pinned((4, 5), np.float32)
        ptr = mem.malloc(host.nbytes)
        mem.h2d(ptr, host)
        mem.d2h(back, ptr)
        mem.synchronize()
        np.testing.assert_array_equal(back, host)
        assert "sm_" in mem.device_name()


@pytest.mark.gpu
def test_torch_backend_cuda_fp16_and_graph(tmp_path):
    from edgepad.engines.torch_backend import write_checkpoint_manifest
    ckpt, model, inputs = _checkpoint(tmp_path)
    write_checkpoint_manifest(ckpt, threshold=0.5, threshold_criterion="bpcer20")
    feeds = example_feeds(read_manifest(ckpt).inputs, batch=1)
    with load_backend(ckpt) as ref, load_backend(ckpt, device="cuda", fp16=True, cuda_graph=True) as gpu:
        a, b = ref.infer(feeds), gpu.infer(feeds)
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-2)


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_build_cache_and_parity(trained, tmp_path, precision):
    from edgepad.engines.build import build_engine
    from edgepad.engines.quantize import quantize_int8, to_fp16
    from edgepad.engines.validate import validate_artifact
    src = trained["onnx"]
    if precision == "fp16":
        to_fp16(src, tmp_path / "m16.onnx")
        src = tmp_path / "m16.onnx"
    elif precision == "int8":
        cal = trained["calib"][0]
        quantize_int8(src, tmp_path / "m8.onnx", [{k: v[i:i + 1] for k, v in cal.items()} for i in range(128)])
        src = tmp_path / "m8.onnx"
    cfg = BuildConfig(precision=precision, max_batch=8, opt_batch=1)
    path, man = build_engine(src, cfg, tmp_path / "cache")
    assert man.format == "tensorrt" and man.trt_version and "sm_" in man.device
    again, _ = build_engine(src, cfg, tmp_path / "cache")   # cache hit: same file, not rebuilt
    assert again == path
    ev_feeds, ev_live, ev_species = trained["eval"]
    rep = validate_artifact(path, src, ev_feeds, labels=ev_live, species=ev_species, batch=8, raise_on_fail=False)
    assert rep["outputs"]["score"]["max_abs_error"] < (1e-3 if precision == "fp32" else 5e-2)
    assert rep["decision_agreement"] >= 0.98


@pytest.mark.trt
def test_tensorrt_cuda_graph_and_fallback(tiny_onnx, tmp_path):
    from edgepad.engines.build import build_engine
    onnx_path, _ = tiny_onnx
    fixed = tmp_path / "fixed.onnx"
    from edgepad.engines.export import export_onnx
    from tests.helpers.engines_model import TinyPAD
    export_onnx(TinyPAD().eval(), fixed, inputs=tiny_specs(), threshold=0.5, threshold_criterion="eer")
    path, _ = build_engine(fixed, BuildConfig(precision="fp32"), tmp_path / "cache")
    feeds = example_feeds(tiny_specs())
    with load_backend(path, cuda_graph=True) as g, load_backend(fixed) as ref:
        np.testing.assert_allclose(g.infer(feeds)["score"], ref.infer(feeds)["score"], atol=1e-3)
        np.testing.assert_allclose(g.infer(feeds)["score"], ref.infer(feeds)["score"], atol=1e-3)
    be = open_backend(path, fixed, cache=tmp_path / "cache")
    assert be.kind == "trt" and not be.degraded
    be.deactivate()
