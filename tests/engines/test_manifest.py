from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.engines.backend import BackendStateError, BaseBackend
from edgepad.engines.formats import format_by_kind, format_for
from edgepad.engines.manifest import (InputSpec, ModelManifest, TensorSpec, manifest_path, read_manifest,
                                      subset_key, verify_artifact, write_manifest)
from edgepad.errors import ConfigError, EngineMismatchError, IntegrityError, ManifestError, ShapeError


def _manifest(**kw) -> ModelManifest:
    base = dict(
        model="tiny", modalities=("rgb", "depth"),
        inputs={"rgb": InputSpec("rgb", (1, 3, 8, 8)), "depth": InputSpec("depth", (1, 1, 8, 8), missing_fill=0.0)},
        outputs={"score": TensorSpec("score", (1,))}, threshold=0.6,
        operating_points={"bpcer20": {"rgb": 0.8}, "bpcer100": {"rgb+depth": 0.7}})
    base.update(kw)
    return ModelManifest(**base)


def test_subset_keys_are_canonical():
    assert subset_key(["ir", "rgb", "depth"]) == "rgb+depth+ir"
    assert subset_key(["depth", "rgb"]) == "rgb+depth"


def test_thresholds_by_subset_and_criterion():
    m = _manifest()
    assert m.threshold_for(["depth", "rgb"]) == 0.6            # default criterion, full set
    assert m.threshold_for(["rgb"]) == 0.8                     # degraded subset, calibrated
    assert m.threshold_for(["rgb"], "bpcer100") is None         # not calibrated: caller must answer unknown
    assert m.threshold_for(["rgb", "depth"], "bpcer100") == 0.7


def test_manifest_round_trip_and_integrity(tmp_path):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"model-bytes")
    written = write_manifest(_manifest(), art)
    assert manifest_path(art).name == "m.onnx.json"
    back = read_manifest(art)
    assert back == written and back.inputs["depth"].missing_fill == 0.0
    verify_artifact(art)
    art.write_bytes(b"model-bytez")
    with pytest.raises(IntegrityError):
        verify_artifact(art)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(threshold="high"), "threshold"),
    (lambda d: d.update(score_output="prob"), "score_output"),
    (lambda d: d.update(thresold=0.5), "thresold"),
    (lambda d: d.update(schema_version=99), "schema_version"),
])
def test_corrupt_manifests(tmp_path, mutate, field):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"x")
    d = write_manifest(_manifest(), art).to_dict()
    mutate(d)
    manifest_path(art).write_text(json.dumps(d))
    with pytest.raises(ManifestError) as ei:
        read_manifest(art)
    assert field in str(ei.value.field) or field in str(ei.value)


def test_missing_and_garbage_manifest(tmp_path):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"x")
    with pytest.raises(ManifestError, match="no manifest"):
        read_manifest(art)
    manifest_path(art).write_text("{not json")
    with pytest.raises(ManifestError):
        read_manifest(art)


def test_engine_compatibility_and_cache_key():
    m = _manifest(format="tensorrt", precision="fp16", trt_version="10.3.0", device="Orin (8.7)", onnx_sha256="ab" * 32)
    m.check_compatible("10.3.0", "Orin (8.7)")
    with pytest.raises(EngineMismatchError) as ei:
        m.check_compatible("11.4.1", "Orin (8.7)")
    assert ei.value.field == "trt_version"
    assert m.cache_key() != m.replace(precision="int8").cache_key()
    assert m.cache_key() != m.replace(build={"workspace_mib": 512}).cache_key()


def test_format_table():
    assert format_for("a/b/model.ONNX").kind == "onnxruntime"
    assert format_for("x.engine").needs_gpu
    with pytest.raises(ConfigError):
        format_for("x.tflite")
    with pytest.raises(ConfigError) as ei:
        format_by_kind("onnxruntim")
    assert "onnxruntime" in ei.value.suggestions


class _Echo(BaseBackend):
    kind = "echo"

    def _activate_impl(self):
        self.calls = 0

    def _infer_impl(self, feed):
        self.calls += 1
        return {"score": feed["rgb"].mean(axis=(1, 2, 3))}


def test_base_backend_lifecycle_and_feed_checks(tmp_path):
    b = _Echo(tmp_path / "m.onnx", _manifest())
    feed = {"rgb": np.ones((1, 3, 8, 8), np.float32), "depth": np.zeros((1, 1, 8, 8), np.float32)}
    with pytest.raises(BackendStateError):
        b.infer(feed)
    with b:
        assert b.infer(feed)["score"][0] == 1.0
        with pytest.raises(ShapeError):
            b.infer({"rgb": feed["rgb"]})
        with pytest.raises(ShapeError):
            b.infer({**feed, "depth": np.zeros((1, 1, 8, 9), np.float32)})
        with pytest.raises(ShapeError):
            b.infer({**feed, "rgb": feed["rgb"].astype(np.float64)})
    assert not b.is_active and b.calls == 1


def test_input_align_round_trip_and_old_manifests_read_as_none():
    from edgepad.engines.quantize import preprocessing_sha256
    m = _manifest(inputs={"rgb": InputSpec("rgb", (1, 3, 8, 8), align="eyes"),
                          "depth": InputSpec("depth", (1, 1, 8, 8), align="eyes")})
    d = m.to_dict()
    assert d["inputs"]["rgb"]["align"] == "eyes"
    back = ModelManifest.from_dict(d)
    assert back.inputs["rgb"].align == "eyes" and back == m
    old = _manifest().to_dict()
    for spec in old["inputs"].values():
        spec.pop("align")
    read = ModelManifest.from_dict(old)
    assert read.inputs["rgb"].align == "none" and read == _manifest()
    # "none" keeps the preprocessing hash of manifests written before the field (INT8 calibration caches)
    assert preprocessing_sha256(read) == preprocessing_sha256(_manifest())
    assert preprocessing_sha256(m) != preprocessing_sha256(_manifest())
    bad = _manifest().to_dict()
    bad["inputs"]["rgb"]["align"] = "mouth"
    with pytest.raises(ManifestError):
        ModelManifest.from_dict(bad)
