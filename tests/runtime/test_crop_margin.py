"""The crop margin follows the model, like the crop alignment: ``InputSpec.margin`` is recorded in the manifest
(absent: 0.25), checked between data and model in training and evaluation, and the runtime crops with it."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace as dc_replace
from pathlib import Path

import numpy as np
import pytest

from edgepad import preprocess
from edgepad.errors import ConfigError
from edgepad.runtime.face import FixedBoxLocator
from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig, open_pipeline
from edgepad.specs import InputSpec

from tests.helpers.scene import make_rig, plane_frameset

ROOT = Path(__file__).resolve().parents[2]
BOX = (50, 30, 56, 60)
RIG = make_rig()


def _wide(specs, margin=0.6):
    return {k: dc_replace(v, margin=margin) for k, v in specs.items()}


class WithManifest:
    """The tiny backend under another manifest (same network; only the recorded preprocessing differs)."""

    def __init__(self, backend, manifest):
        self.backend, self.manifest, self.inputs = backend, manifest, backend.inputs

    def infer(self, feed):
        return self.backend.infer(feed)

    def activate(self):
        pass

    def deactivate(self):
        pass


# ------------------------------------------------------------------------------------------- spec and manifest
@pytest.mark.parametrize("bad", [-0.1, 4.5, float("nan"), float("inf"), "0.6", True, None])
def test_bad_spec_margin_is_a_config_error(bad):
    with pytest.raises(ConfigError) as e:
        InputSpec("rgb", (1, 3, 8, 8), margin=bad)
    assert e.value.key == "margin"


def test_spec_margin_default_and_the_margin_of_a_model():
    assert InputSpec("rgb", (1, 3, 8, 8)).margin == 0.25
    one = InputSpec("rgb", (1, 3, 8, 8), margin=1)
    assert one.margin == 1.0 and isinstance(one.margin, float)
    specs = preprocess.default_input_specs(16)
    assert preprocess.crop_margin(specs) == 0.25
    assert preprocess.crop_margin(_wide(specs)) == 0.6
    with pytest.raises(ConfigError) as e:   # one crop window serves every modality
        preprocess.crop_margin({"rgb": _wide(specs)["rgb"], "ir": specs["ir"]})
    assert e.value.key == "margin"
    preprocess.require_crop_margin(_wide(specs), 0.6, "training data")
    with pytest.raises(ConfigError, match=r"margin 0\.6 .*margin 0\.25") as e:
        preprocess.require_crop_margin(_wide(specs), 0.25, "training data")
    assert e.value.key == "margin"


def test_manifest_records_the_margin_and_old_manifests_read_025():
    from edgepad.engines.manifest import ModelManifest, read_manifest
    from edgepad.engines.quantize import preprocessing_sha256
    shipped = ROOT / "edgepad" / "assets" / "default.onnx"
    raw = json.loads((ROOT / "edgepad" / "assets" / "default.onnx.json").read_text())
    assert all("margin" not in s for s in raw["inputs"].values())          # the shipped asset is unchanged
    old = read_manifest(shipped)
    assert preprocess.crop_margin(old.inputs) == 0.25
    wide = old.replace(inputs=_wide(old.inputs))
    d = wide.to_dict()
    assert {s["margin"] for s in d["inputs"].values()} == {0.6}
    assert ModelManifest.from_dict(d) == wide
    # 0.25 keeps the preprocessing hash of manifests written before the field (INT8 calibration caches)
    spec = {k: {f: v for f, v in raw["inputs"][k].items() if f not in ("align", "margin")} for k in sorted(raw["inputs"])}
    assert preprocessing_sha256(old) == preprocessing_sha256(ModelManifest.from_dict(raw))
    import hashlib
    assert preprocessing_sha256(old) == hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
    assert preprocessing_sha256(wide) != preprocessing_sha256(old)


# ------------------------------------------------------------------------------------------- runtime
def test_pipeline_crops_with_the_models_margin(backend, monkeypatch):
    seen = []
    real = preprocess.crop_face

    def spy(*a, **kw):
        res = real(*a, **kw)
        seen.append((kw.get("margin"), res.window_rgb))
        return res

    monkeypatch.setattr(preprocess, "crop_face", spy)
    fs = plane_frameset(RIG, t_ns=33_333_333, offset=60.0, noise_seed=1)
    p = LivenessPipeline(None, backend, locator=FixedBoxLocator(BOX), rig=RIG)
    assert PipelineConfig().margin is None and p.margin == 0.25          # a manifest without margin: 0.25
    p.process(fs, now_ns=fs.timestamp_ns)
    assert seen[-1] == (0.25, preprocess.crop_window(BOX, 0.25))
    wide = WithManifest(backend, backend.manifest.replace(inputs=_wide(backend.manifest.inputs)))
    p = LivenessPipeline(None, wide, locator=FixedBoxLocator(BOX), rig=RIG)
    assert p.margin == 0.6
    d = p.process(fs, now_ns=fs.timestamp_ns)
    assert seen[-1] == (0.6, preprocess.crop_window(BOX, 0.6)) and d.score is not None
    assert preprocess.crop_window(BOX, 0.6)[2] == pytest.approx(60 * 1.6)   # the 0.6 window, not the 0.25 one


def test_an_explicit_margin_must_be_the_models(backend):
    wide = WithManifest(backend, backend.manifest.replace(inputs=_wide(backend.manifest.inputs)))
    with pytest.raises(ConfigError, match="0.25.*0.6") as e:
        LivenessPipeline(None, wide, locator=FixedBoxLocator(BOX), rig=RIG, config=PipelineConfig(margin=0.25))
    assert e.value.key == "margin"
    with pytest.raises(ConfigError) as e:   # the other way round: a wider crop for a model of margin 0.25
        LivenessPipeline(None, backend, locator=FixedBoxLocator(BOX), rig=RIG, config=PipelineConfig(margin=0.6))
    assert e.value.key == "margin"
    assert LivenessPipeline(None, wide, rig=RIG, locator=FixedBoxLocator(BOX),
                            config=PipelineConfig(margin=0.6)).margin == 0.6
    for bad in (-0.1, 4.5, float("nan"), "0.6"):
        with pytest.raises(ConfigError) as e:
            PipelineConfig(margin=bad)
        assert e.value.key == "margin"


def test_a_model_file_with_margin_06_registers_and_crops_the_06_window(tiny_model, tmp_path, monkeypatch):
    """On disk: the manifest's margin reaches the window registration of unregistered depth and the crops."""
    from edgepad.engines.backend import load_backend
    model = tmp_path / "wide.onnx"
    shutil.copy(tiny_model, model)
    man = json.loads(Path(f"{tiny_model}.json").read_text())
    for spec in man["inputs"].values():
        spec["margin"] = 0.6
    Path(f"{model}.json").write_text(json.dumps(man))
    be = load_backend(model, threads=1)
    assert preprocess.crop_margin(be.manifest.inputs) == 0.6
    margins = []
    real = preprocess.crop_window

    def spy(box, margin=0.25):
        margins.append(margin)
        return real(box, margin)

    monkeypatch.setattr(preprocess, "crop_window", spy)
    with open_pipeline("synthetic://default", be, locator="truth", config=PipelineConfig(overlap=False)) as p:
        assert p.margin == 0.6 and p.config.registration == "window"
        for _ in range(2):
            d = p.process(p.capture.read(2.0))
        assert d.face_box is not None
        x0, y0, side = real(d.face_box, 0.6)
        assert p._last_window[:2] == (max(0, math.floor(x0) - 2), max(0, math.floor(y0) - 2))
    assert margins and set(margins) == {0.6}      # registration window and crop window alike


# ------------------------------------------------------------------------------------------- training data
@pytest.fixture()
def wide_bench(tmp_path):
    pytest.importorskip("h5py")
    from tests.helpers.datasets import make_synthbench
    root = make_synthbench(tmp_path / "bench", videos_per_class=1, frames=1, size=16)
    meta = json.loads((root / "meta.json").read_text())
    meta["config"] = {"margin": 0.6}                      # what `edgepad synth --margin 0.6` records
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_training_data_of_another_margin_is_refused(wide_bench, tmp_path):
    from edgepad.data.datasets import SynthBenchDataset
    from edgepad.data.transforms import PADDataset
    from tests.helpers.datasets import make_synthbench
    ds = SynthBenchDataset(wide_bench, split="train")
    assert ds.crop_margin == 0.6
    assert SynthBenchDataset(make_synthbench(tmp_path / "old", 1, 1, 16), split="train").crop_margin == 0.25
    specs = preprocess.default_input_specs(16)
    with pytest.raises(ConfigError, match=r"margin 0\.25 .*margin 0\.6") as e:
        PADDataset(ds, specs)
    assert e.value.key == "margin"
    assert len(PADDataset(ds, _wide(specs))) == len(ds)
    pytest.importorskip("torch")
    from edgepad.training.export import WithoutModalities
    with pytest.raises(ConfigError):                       # the dev subsets' view keeps the base's margin
        PADDataset(WithoutModalities(ds, {"ir"}), specs)


def test_training_config_margin_reaches_every_input_spec():
    from dataclasses import replace

    from edgepad.training.build import input_specs
    from edgepad.training.config import InputConfig, TrainConfig
    cfg = TrainConfig()
    assert {s.margin for s in input_specs(cfg).values()} == {0.25}
    wide = input_specs(replace(cfg, inputs=InputConfig(margin=0.6)))
    assert {s.margin for s in wide.values()} == {0.6} and preprocess.crop_margin(wide) == 0.6
    with pytest.raises(ConfigError):
        input_specs(replace(cfg, inputs=InputConfig(margin=-1.0)))


def test_benchmark_runs_train_at_the_datas_margin(tmp_path):
    from edgepad.benchmark.matrix import deep_merge, load_matrix
    from edgepad.benchmark.runs import train_mapping
    from edgepad.config import from_mapping
    from edgepad.training.build import input_specs
    from edgepad.training.config import TrainConfig
    bench = ROOT / "configs" / "benchmark"
    wide, base = load_matrix(bench / "x_physics_wide.yaml"), load_matrix(bench / "x_physics.yaml")
    m = train_mapping(wide, "s8_wide_cmfl_e60", 0, tmp_path, "X_physics", tmp_path / "run")
    specs = input_specs(from_mapping(TrainConfig, m))
    assert preprocess.crop_margin(specs) == 0.6 and m["inputs"]["size_px"] == 64
    m = train_mapping(base, "s7_cmfl_e60", 0, tmp_path, "X_physics", tmp_path / "run")
    assert preprocess.crop_margin(input_specs(from_mapping(TrainConfig, m))) == 0.25
    # a margin the matrix names is kept (and refused at training if the data's differs)
    named = dc_replace(wide, train=deep_merge(wide.train, {"inputs": {"margin": 0.25}}))
    assert train_mapping(named, "s8_wide_cmfl_e60", 0, tmp_path, "X_physics", tmp_path / "r")["inputs"]["margin"] == 0.25


def test_evaluation_data_of_another_margin_is_refused(backend, wide_bench):
    from edgepad.evaluation import score_protocol
    with pytest.raises(ConfigError) as e:
        score_protocol(backend, wide_bench, "grandtest", folds=("eval",), max_frames=1)
    assert e.value.key == "margin"
    wide = WithManifest(backend, backend.manifest.replace(inputs=_wide(backend.manifest.inputs)))
    scores = score_protocol(wide, wide_bench, "grandtest", folds=("eval",), max_frames=1)["eval"]
    assert scores.score.size > 0 and np.isfinite(scores.score).all()
