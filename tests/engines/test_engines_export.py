"""Export to ONNX and the ONNX Runtime backend, for real on the CPU (torch + onnx + onnxruntime)."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgepad.engines.backend import BackendStateError, load_backend  # noqa: E402
from edgepad.engines.export import example_feeds, export_onnx, onnx_parity  # noqa: E402
from edgepad.engines.manifest import manifest_path, read_manifest, sha256_file  # noqa: E402
from edgepad.errors import ConfigError, IntegrityError, ShapeError, ValidationError  # noqa: E402

from tests.helpers.engines_model import SIZE_PX, TinyPAD, tiny_specs  # noqa: E402


def _torch_scores(model, feeds):
    with torch.no_grad():
        out = model({k: torch.from_numpy(v) for k, v in feeds.items()})
    res = {"score": torch.sigmoid(out["logit"]).numpy()}
    for m in ("rgb", "depth", "ir"):
        if f"logit_{m}" in out:
            res[f"score_{m}"] = torch.sigmoid(out[f"logit_{m}"]).numpy()
    return res


def test_export_names_manifest_and_parity(tiny_onnx, tiny_model):
    path, manifest = tiny_onnx
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["rgb", "depth", "ir"]
    assert [o.name for o in model.graph.output] == ["score", "score_rgb", "score_depth", "score_ir"]
    assert model.opset_import[0].version == 17
    # BatchNorm folded into the convolutions by the legacy exporter
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    on_disk = read_manifest(path)
    assert on_disk == manifest
    assert on_disk.artifact_sha256 == sha256_file(path) == on_disk.onnx_sha256
    assert on_disk.inputs["rgb"].shape == (-1, 3, SIZE_PX, SIZE_PX)
    assert on_disk.outputs["score"].shape == (-1,)
    assert on_disk.precision == "fp32" and on_disk.format == "onnx"
    assert on_disk.validation["max_abs_error"] <= 1e-5
    assert json.loads(manifest_path(path).read_text())["model"] == "tiny"


def test_ort_backend_matches_torch_dynamic_batch(tiny_onnx, tiny_model):
    path, _ = tiny_onnx
    feeds = example_feeds(tiny_specs(), batch=5, seed=7)
    ref = _torch_scores(tiny_model, feeds)
    with load_backend(path, threads=1) as be:
        assert be.kind == "onnxruntime" and be.providers_used == ["CPUExecutionProvider"]
        got = be.infer(feeds)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == (5,)
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5)
    # different inputs give different scores (the graph is not constant)
    assert np.ptp(got["score"]) > 1e-4
    # thread spinning between runs (off by default: the runtime works between runs) changes no value
    with load_backend(path, threads=2, spin=True) as spinning:
        assert spinning.spin and not be.spin
        for k, v in spinning.infer(feeds).items():
            np.testing.assert_allclose(v, got[k], atol=1e-6)


def test_fixed_batch_export_rejects_other_batches(tmp_path, tiny_model):
    path = tmp_path / "fixed.onnx"
    man = export_onnx(tiny_model, path, inputs=tiny_specs(), threshold=0.4, threshold_criterion="eer",
                      operating_points={"bpcer20": {"rgb": 0.7}})
    assert man.inputs["depth"].shape == (1, 1, SIZE_PX, SIZE_PX)
    assert man.threshold_for(["rgb"], "bpcer20") == 0.7
    be = load_backend(path)
    with pytest.raises(BackendStateError):
        be.infer(example_feeds(tiny_specs()))
    with be:
        with pytest.raises(ShapeError):
            be.infer(example_feeds(tiny_specs(), batch=2))
        feed = example_feeds(tiny_specs())
        del feed["ir"]
        with pytest.raises(ShapeError):
            be.infer(feed)


def test_tampered_onnx_refused(tiny_onnx):
    path, _ = tiny_onnx
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        load_backend(path)


def test_export_rejects_bad_opset_and_bad_model(tmp_path, tiny_model):
    with pytest.raises(ConfigError):
        export_onnx(tiny_model, tmp_path / "a.onnx", inputs=tiny_specs(), threshold=0.5,
                    threshold_criterion="eer", opset=21)

    class NoLogit(torch.nn.Module):
        def forward(self, feed):
            return {"score": feed["rgb"].mean()}

    with pytest.raises(ConfigError):
        export_onnx(NoLogit(), tmp_path / "b.onnx", inputs=tiny_specs(), threshold=0.5, threshold_criterion="eer")
    with pytest.raises(ConfigError):
        export_onnx(tiny_model, tmp_path / "c.onnx", inputs={"thermal": tiny_specs()["rgb"]}, threshold=0.5,
                    threshold_criterion="eer")


def test_parity_check_detects_a_wrong_reference(tiny_onnx, tiny_model):
    path, _ = tiny_onnx
    feeds = example_feeds(tiny_specs(), batch=2)
    ref = _torch_scores(tiny_model, feeds)
    assert onnx_parity(path, ref, feeds)["max_abs_error"] < 1e-5
    ref["score"] = ref["score"] + 1e-3
    with pytest.raises(ValidationError) as info:
        onnx_parity(path, ref, feeds)
    assert info.value.report["max_abs_error"] == pytest.approx(1e-3, rel=1e-2)


def test_export_keeps_training_mode_and_subset_models(tmp_path):
    model = TinyPAD(modalities=("rgb", "depth")).train()
    man = export_onnx(model, tmp_path / "rd.onnx", inputs=tiny_specs(modalities=("rgb", "depth")), threshold=0.5,
                      threshold_criterion="bpcer20", training={"epochs": 3})
    assert model.training  # restored
    assert [m.value for m in man.modalities] == ["rgb", "depth"]
    assert set(man.outputs) == {"score", "score_rgb", "score_depth"}
    assert man.training == {"epochs": 3}


SEED_METHODS = [("cmfl", None), ("flexmodal", "concat"), ("flexmodal", "se"), ("flexmodal", "xattn"),
                ("multilayer", None)]


@pytest.mark.parametrize("name,fusion", SEED_METHODS)
def test_export_each_seed_method(tmp_path, name, fusion):
    registry = pytest.importorskip("edgepad.models.registry")
    torch.manual_seed(0)
    model = registry.create_model(name, fusion=fusion, backbone_kwargs={"width": 8})
    specs = {m: s for m, s in tiny_specs(size_px=32).items() if m in model.modalities}
    man = export_onnx(model, tmp_path / f"{name}.onnx", inputs=specs, threshold=0.5, threshold_criterion="bpcer20",
                      dynamic_batch=True)
    assert man.model == name and man.model_kwargs["fusion"] == fusion
    feeds = example_feeds(specs, batch=3, seed=1)
    ref = _torch_scores(model.eval(), feeds)
    with load_backend(tmp_path / f"{name}.onnx", threads=1) as be:
        got = be.infer(feeds)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=1e-5)
