"""The compiled model-input arithmetic (``native.InputArithmetic``) against ``preprocess.normalise``'s numpy path:
equal bit for bit on every spec form it takes, and the same errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.drivers.registration.native import input_arithmetic
from edgepad.errors import ConfigError, ShapeError
from edgepad.preprocess import normalise
from edgepad.specs import InputSpec

KERNEL = input_arithmetic()
pytestmark = pytest.mark.skipif(KERNEL is None, reason="no C compiler: the compiled kernel is unavailable")
S = 48


def _specs(rgb_clip=(0.0, 255.0), ir_clip=(0.0, 160.0), depth_norm="face_relative", depth_clip=(-0.1, 0.1),
           mean=(0.5,), std=(0.5,), ref=0.6):
    return {"rgb": InputSpec("rgb", (1, 3, S, S), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             clip=rgb_clip),
            "depth": InputSpec("depth", (1, 1, S, S), mean=mean, std=std, clip=depth_clip, depth_norm=depth_norm),
            "ir": InputSpec("ir", (1, 1, S, S), mean=mean, std=std, clip=ir_clip, distance_ref_m=ref)}


def _crops(rng, holes=0.2, depth=True):
    out = {"rgb": rng.integers(0, 256, (S, S, 3), np.uint8), "ir": rng.integers(0, 256, (S, S), np.uint8)}
    if depth:
        out["depth"] = (rng.integers(250, 1600, (S, S)) * (rng.random((S, S)) >= holes)).astype(np.uint16)
    return out


def _same_bits(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype == np.float32 and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32)), (k, float(np.abs(a[k] - b[k]).max()))


@pytest.mark.parametrize("form", [
    {}, {"rgb_clip": (10.0, 240.0), "ir_clip": (3.0, 97.5)}, {"depth_norm": "absolute", "depth_clip": (0.2, 1.5)},
    {"depth_norm": "none", "depth_clip": None}, {"depth_clip": (-0.05, 0.13)}, {"ref": None},
    {"mean": (0.0,), "std": (1.0,)}, {"mean": (0.3,), "std": (0.07,)}, {"rgb_clip": (0, 255)}])
def test_compiled_inputs_equal_numpys_bit_for_bit(form):
    rng = np.random.default_rng(len(str(form)))
    specs = _specs(**form)
    for i in range(25):
        crops = _crops(rng, holes=(0.0, 0.2, 0.97)[i % 3], depth=i % 5 != 4)
        z = (None, 0.45, 1.7, float("nan"))[i % 4]
        for scale in (0.001, 0.000125):
            _same_bits(normalise(crops, specs, scale, face_depth_m=z),
                       normalise(crops, specs, scale, face_depth_m=z, kernel=KERNEL))


def test_empty_depth_saturated_images_and_the_numpy_only_forms():
    rng = np.random.default_rng(3)
    crops = _crops(rng)
    crops["depth"][:] = 0  # no valid depth: the input is absent (missing_fill), both ways
    crops["rgb"][:8] = 255
    crops["ir"][:, :8] = 0
    for specs in (_specs(), _specs(depth_norm="mad"), _specs(rgb_clip=(np.float32(5), np.float32(250)))):
        a = normalise(crops, specs, 0.001)
        _same_bits(a, normalise(crops, specs, 0.001, kernel=KERNEL))
    assert np.all(a["depth"] == 0.0)


class _Refuse:
    def image(self, *a, **k):
        raise AssertionError("the kernel ran")

    depth = image


def test_forms_the_kernel_does_not_take_run_numpy_and_errors_are_the_same():
    rng = np.random.default_rng(4)
    crops = _crops(rng)
    # mad depth and numpy-typed clip bounds never reach the kernel
    normalise(crops, {"depth": _specs(depth_norm="mad")["depth"]}, 0.001, kernel=_Refuse())
    normalise(crops, {"rgb": _specs(rgb_clip=(np.float64(0), np.float64(255)))["rgb"]}, 0.001, kernel=_Refuse())
    for kernel in (None, KERNEL):
        with pytest.raises(ConfigError):
            normalise(crops, _specs(std=(0.0,)), 0.001, kernel=kernel)
        with pytest.raises(ShapeError):
            normalise(crops, {"ir": InputSpec("ir", (1, 3, S, S))}, 0.001, kernel=kernel)
        with pytest.raises(ConfigError):
            normalise(crops, _specs(ir_clip=(5.0, 5.0)), 0.001, kernel=kernel)


def test_the_pipeline_feeds_the_model_through_the_compiled_arithmetic():
    from pathlib import Path
    from edgepad.runtime.pipeline import open_pipeline
    model = Path(__file__).resolve().parents[2] / "edgepad" / "assets" / "default.onnx"
    if not model.is_file():
        pytest.skip("edgepad/assets/default.onnx not built")
    with open_pipeline("synthetic://default", str(model), threads=1) as p:
        assert p._inputs_kernel is KERNEL
