"""Fixtures of the robustness suite: an "always-live" ONNX model (any frame that votes is a breach)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepad.runtime.face import FixedBoxLocator
from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig
from edgepad.runtime.policy import PolicyConfig

from tests.helpers.scene import make_rig

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "edgepad" / "assets" / "default.onnx.json"
BOX = (50, 30, 56, 60)  # the face box of tests/helpers/scene.py's textured plane (160×120)
RIG = make_rig()


def write_always_live(path: Path, **manifest_changes) -> Path:
    """A real ONNX model with the default model's inputs (names, shapes) whose every output (``score``,
    ``score_<m>``) is the constant 1.0, and its sidecar manifest (the default one, ``manifest_changes`` applied
    to the JSON, artifact hash recorded). Returns ``path``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    m = json.loads(DEFAULT_MANIFEST.read_text())
    ins = [helper.make_tensor_value_info(s["name"], TensorProto.FLOAT, s["shape"]) for s in m["inputs"].values()]
    outs, nodes = [], [helper.make_node("Constant", [], ["one"], value=helper.make_tensor("v", TensorProto.FLOAT,
                                                                                           [1], [1.0]))]
    for name, spec in m["outputs"].items():
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, spec["shape"]))
        nodes.append(helper.make_node("Constant", [], [f"{name}_shape"], value=helper.make_tensor(
            f"{name}_s", TensorProto.INT64, [len(spec["shape"])], list(spec["shape"]))))
        nodes.append(helper.make_node("Reshape", ["one", f"{name}_shape"], [name]))
    graph = helper.make_graph(nodes, "always_live", ins, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    from edgepad.engines.manifest import artifact_sha256
    m.update(manifest_changes)
    m.update(artifact_sha256=artifact_sha256(path), onnx_sha256=None, artifact_files=[])
    Path(str(path) + ".json").write_text(json.dumps(m))  # written as is: a tampered manifest must reach the reader
    return path


@pytest.fixture(scope="session")
def always_live(tmp_path_factory) -> Path:
    """Path of the always-live ONNX model (manifest ``<path>.json``)."""
    return write_always_live(tmp_path_factory.mktemp("always_live") / "always_live.onnx")


@pytest.fixture(scope="module")
def live_backend(always_live):
    """The always-live model in ONNX Runtime (1 thread), activated."""
    pytest.importorskip("onnxruntime")
    from edgepad.engines.backend import load_backend
    be = load_backend(always_live, threads=1)
    be.activate()
    yield be
    be.deactivate()


def make_pipeline(capture, backend, *, rig=RIG, **config) -> LivenessPipeline:
    """The real pipeline on ``capture`` with the fixed face box; ``config``: PipelineConfig fields (``policy``
    as a PolicyConfig or a dict)."""
    pol = config.pop("policy", {})
    cfg = PipelineConfig(policy=pol if isinstance(pol, PolicyConfig) else PolicyConfig(**pol), **config)
    return LivenessPipeline(capture, backend, locator=FixedBoxLocator(BOX), rig=rig, config=cfg)
