"""DLA and version-compatibility handling of our loader/builder (fakes of OUR interfaces: no TensorRT here), and
the backend comparison (``edgepad build --compare``) run for real on CPU between two ONNX Runtime backends."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgepad.engines.build import BuildConfig, dla_fallback_layers
from edgepad.engines.manifest import ModelManifest, read_manifest, version_compatible_runs
from edgepad.engines.trt_backend import deserialize, open_runtime
from edgepad.errors import ConfigError, EngineBuildError, EngineMismatchError, PrecisionUnsupportedError


class FakeRuntime:
    """Records what our loader sets on the runtime and what DLA_core was when the plan was deserialized."""

    num_DLA_cores = 2

    def __init__(self, logger) -> None:
        self.DLA_core = -1          # TensorRT's default: no DLA core
        self.engine_host_code_allowed = False
        self.seen: dict = {}

    def deserialize_cuda_engine(self, plan: bytes):
        self.seen = {"DLA_core": self.DLA_core, "host_code": self.engine_host_code_allowed, "plan": plan}
        return None if plan == b"bad" else object()


FAKE_TRT = SimpleNamespace(Runtime=FakeRuntime)


def _manifest(**build) -> ModelManifest:
    import edgepad.assets
    m = read_manifest(Path(edgepad.assets.__file__).parent / "default.onnx")
    return m.replace(format="tensorrt", precision="fp16", trt_version="10.3.0", device="Orin sm_87 DLA0",
                     build=build)


def test_dla_core_is_set_before_deserialising():
    rt = open_runtime(FAKE_TRT, _manifest(dla_core=1), logger=None)
    assert deserialize(rt, b"plan", "x.engine") is not None
    assert rt.seen["DLA_core"] == 1 and rt.seen["host_code"] is False
    gpu = open_runtime(FAKE_TRT, _manifest(dla_core=None), logger=None)
    deserialize(gpu, b"plan", "x.engine")
    assert gpu.seen["DLA_core"] == -1
    with pytest.raises(PrecisionUnsupportedError):
        open_runtime(FAKE_TRT, _manifest(dla_core=2), logger=None)   # only cores 0 and 1 exist
    with pytest.raises(EngineBuildError):
        deserialize(gpu, b"bad", "x.engine")


def test_version_compatible_plan_allows_host_code_and_a_later_runtime():
    rt = open_runtime(FAKE_TRT, _manifest(version_compatible=True), logger=None)
    deserialize(rt, b"plan", "x.engine")
    assert rt.seen["host_code"] is True
    vc = _manifest(version_compatible=True).replace(device="Orin sm_87")
    vc.check_compatible("10.7.0", "Orin sm_87")       # later 10.x
    vc.check_compatible("11.4.1", "Orin sm_87")       # 10 -> 11 is a supported pair
    for running in ("10.2.0", "8.6.1", "12.0.0"):
        with pytest.raises(EngineMismatchError):
            vc.check_compatible(running, "Orin sm_87")
    with pytest.raises(EngineMismatchError) as info:
        vc.check_compatible("10.3.0", "Orin sm_72")
    assert info.value.field == "device"
    plain = vc.replace(build={})
    plain.check_compatible("10.3.0", "Orin sm_87")
    with pytest.raises(EngineMismatchError) as info:
        plain.check_compatible("10.7.0", "Orin sm_87")
    assert info.value.field == "trt_version"


@pytest.mark.parametrize("built,running,ok", [("8.6.1", "8.6.1", True), ("8.6.1", "10.3.0", True),
                                              ("8.5.2", "8.6.1", False), ("8.6.1", "11.4.1", False),
                                              ("10.3.0", "10.3.0.26", True), ("11.4.1", "10.3.0", False)])
def test_version_compatible_runs(built, running, ok):
    assert version_compatible_runs(built, running) is ok


def test_dla_defaults_and_fallback_listing():
    assert BuildConfig(dla_core=0).allow_gpu_fallback is True
    with pytest.raises(ConfigError):
        BuildConfig(dla_core=0, max_batch=4, opt_batch=1)      # DLA has no dynamic shapes
    layers = [SimpleNamespace(name=n) for n in ("conv1", "relu1", "softmax", "sigmoid")]
    network = SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    cfg = SimpleNamespace(can_run_on_DLA=lambda layer: layer.name.startswith(("conv", "relu")))
    assert dla_fallback_layers(network, cfg) == ["softmax", "sigmoid"]


def test_compare_backends_fp32_vs_int8_on_cpu(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from edgepad.engines.compare import compare_artifacts, compare_backends, format_comparison
    from edgepad.engines.quantize import quantize_int8
    feeds, _, _ = trained["calib"]
    quantize_int8(trained["onnx"], tmp_path / "m8.onnx", [{k: v[i:i + 1] for k, v in feeds.items()}
                                                           for i in range(32)])
    same = compare_artifacts(trained["onnx"], trained["onnx"], 16)
    assert same["decision_agreement"] == 1.0 and same["flipped"] == 0
    assert all(o["max_abs_error"] == 0.0 for o in same["outputs"].values())
    rep = compare_artifacts(tmp_path / "m8.onnx", trained["onnx"], 64, seed=5)
    assert rep["samples"] == 64 and rep["candidate"] == "int8/onnxruntime" and "score" in rep["outputs"]
    assert 0 < rep["outputs"]["score"]["max_abs_error"] < 0.1
    assert rep["outputs"]["score"]["mean_abs_error"] <= rep["outputs"]["score"]["max_abs_error"]
    ev, _, _ = trained["eval"]
    at_zero = compare_backends(tmp_path / "m8.onnx", trained["onnx"], {k: v[:50] for k, v in ev.items()},
                               threshold=0.0)
    assert at_zero["decision_agreement"] == 1.0            # every score >= 0: one decision
    text = format_comparison(rep)
    assert "score" in text and "decision agreement" in text
