"""SensorJitter (augment.sensor_*): another camera per training sample — deterministic from the generator, each
effect on its own modality only, hand values, typed errors for bad config values."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.data.transforms import SensorJitter, build_transform
from edgepad.errors import ConfigError, ShapeError


def _crops(s=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.integers(0, 256, (s, s, 3), dtype=np.uint8),
            "depth": rng.integers(400, 700, (s, s)).astype(np.uint16),
            "ir": rng.integers(0, 256, (s, s), dtype=np.uint8)}


FULL = SensorJitter(ir_gain=(0.5, 2.0), rgb_gain=0.25, tone=1.0, blur_px=2, noise_dn=4.0, depth_block=4)


def test_deterministic_from_the_generator_and_varies_with_it():
    c = _crops()
    a, b = FULL(c, np.random.default_rng([3, 1, 7])), FULL(c, np.random.default_rng([3, 1, 7]))
    for m in c:
        np.testing.assert_array_equal(a[m], b[m])
        assert a[m].dtype == c[m].dtype and a[m].shape == c[m].shape
    others = [FULL(c, np.random.default_rng([3, 1, k])) for k in range(8, 12)]
    for m in c:
        assert any(not np.array_equal(a[m], o[m]) for o in others), m


@pytest.mark.parametrize("kw, changed", [
    ({"ir_gain": (1.5, 2.0)}, {"ir"}),
    ({"rgb_gain": 0.3}, {"rgb"}),
    ({"tone": 1.0}, {"rgb"}),
    ({"blur_px": 2}, {"rgb", "ir"}),
    ({"noise_dn": 5.0}, {"rgb", "ir"}),
    ({"depth_block": 4}, {"depth"}),
])
def test_each_effect_changes_its_modalities_and_nothing_else(kw, changed):
    c = _crops()
    t = SensorJitter(**kw)
    assert t.active
    seen: set[str] = set()
    for k in range(6):                          # a draw can be the identity (blur radius 0, block 1): over several
        out = t(c, np.random.default_rng(k))
        for m in c:
            if m not in changed:
                np.testing.assert_array_equal(out[m], c[m])
            elif not np.array_equal(out[m], c[m]):
                seen.add(m)
    assert seen == changed
    part = t({"depth": c["depth"]} if "depth" not in changed else {"rgb": c["rgb"]}, np.random.default_rng(0))
    assert set(part) == ({"depth"} if "depth" not in changed else {"rgb"})    # an absent modality is no error


def test_hand_values():
    ir = np.array([[0, 50, 100, 200]], np.uint8)
    assert SensorJitter(ir_gain=(2.0, 2.0))({"ir": ir}, np.random.default_rng(0))["ir"].tolist() == [[0, 100, 200, 255]]
    assert SensorJitter(ir_gain=(0.5, 0.5))({"ir": ir}, np.random.default_rng(0))["ir"].tolist() == [[0, 25, 50, 100]]
    # tone: x + t·x(1−x)(2x−1) keeps 0, ½ and 1 and darkens the shadows / brightens the highlights
    rgb = np.array([[[0, 64, 128], [191, 255, 255]]], np.uint8)
    out = SensorJitter(tone=1.0)({"rgb": rgb}, np.random.default_rng(1))["rgb"]
    assert out[0, 0, 0] == 0 and out[0, 1, 1] == 255 and abs(int(out[0, 0, 2]) - 128) <= 1
    assert out[0, 0, 1] < 64 and out[0, 1, 0] > 191
    # defocus and noise-free: a flat image stays flat; the box mean keeps the interior sum of an impulse
    flat = {"rgb": np.full((9, 9, 3), 77, np.uint8), "ir": np.full((9, 9), 33, np.uint8)}
    for k in range(4):
        o = SensorJitter(blur_px=2)(flat, np.random.default_rng(k))
        assert (o["rgb"] == 77).all() and (o["ir"] == 33).all()
    # depth blocks: constant blocks stay, a block with fewer than half its pixels valid becomes a hole
    d = np.full((8, 8), 600, np.uint16)
    d[:4, :4] = 0
    d[0, 0] = d[0, 1] = 640                         # 2 of 16 valid: hole at s = 4
    got = {SensorJitter(depth_block=4)({"depth": d}, np.random.default_rng(k))["depth"].tobytes() for k in range(20)}
    want4 = np.full((8, 8), 600, np.uint16)
    want4[:4, :4] = 0
    assert want4.tobytes() in got


def test_noise_scale_and_off_means_no_transform():
    c = {"ir": np.full((64, 64), 100, np.uint8)}
    o = SensorJitter(noise_dn=4.0)(c, np.random.default_rng(5))["ir"].astype(float)
    assert abs(o.mean() - 100) < 0.5 and 0 < o.std() <= 4.5
    assert not SensorJitter().active
    t = build_transform(16, train=True, flip=0.0, sensor=SensorJitter())
    assert not any(isinstance(x, SensorJitter) for x in t.transforms)
    t = build_transform(16, train=True, flip=0.0, sensor=FULL)
    assert any(isinstance(x, SensorJitter) for x in t.transforms)
    assert not any(isinstance(x, SensorJitter) for x in build_transform(16, train=False, sensor=FULL).transforms)
    with pytest.raises(ShapeError):
        FULL({"ir": np.zeros((4, 4), np.uint16)}, np.random.default_rng(0))


@pytest.mark.parametrize("kw, key", [
    ({"ir_gain": (0.0, 2.0)}, "sensor_ir_gain"), ({"ir_gain": (2.0, 1.0)}, "sensor_ir_gain"),
    ({"rgb_gain": 1.0}, "sensor_rgb_gain"), ({"rgb_gain": -0.1}, "sensor_rgb_gain"),
    ({"tone": 1.5}, "sensor_tone"), ({"blur_px": -1}, "sensor_blur_px"), ({"blur_px": 1.5}, "sensor_blur_px"),
    ({"noise_dn": -1.0}, "sensor_noise_dn"), ({"depth_block": 0}, "sensor_depth_block"),
])
def test_bad_values_are_config_errors(kw, key):
    with pytest.raises(ConfigError, match=key) as e:
        SensorJitter(**kw)
    assert e.value.key == f"augment.{key}"


def test_config_keys_reach_the_training_transform(tmp_path):
    from edgepad.training.build import train_transform
    from edgepad.training.config import load_train_config
    from tests.helpers.datasets import write_cfg

    cfg = load_train_config(write_cfg(tmp_path, tmp_path, **{"augment.sensor_ir_gain": [0.5, 2.0],
                                                              "augment.sensor_depth_block": 3}))
    t = [x for x in train_transform(cfg).transforms if isinstance(x, SensorJitter)]
    assert t == [SensorJitter(ir_gain=(0.5, 2.0), depth_block=3)]
    assert not any(isinstance(x, SensorJitter) for x in train_transform(load_train_config(
        write_cfg(tmp_path, tmp_path))).transforms)
    with pytest.raises(ConfigError, match="sensor_tone"):
        train_transform(load_train_config(write_cfg(tmp_path, tmp_path, **{"augment.sensor_tone": 2.0})))
