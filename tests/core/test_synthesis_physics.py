"""Optional camera physics of the synthetic renderer (edgepad.synthesis.physics): each effect does what its
docstring says, deterministic from the seed; the nominal domains stay untouched (digests: test_synthesis_render)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepad.errors import ConfigError
from edgepad.synthesis import DOMAINS, RenderCache, default_rig, render_frames, sample_presentation
from edgepad.synthesis.physics import (DR_PHYSICS, X_PHYSICS, SensorPhysics, draw_physics, jpeg_like, nir_sensor,
                                       rgb_pipeline, stereo_depth)

FX = 200.0
OFF = draw_physics(SensorPhysics(), 0, 0)


def _v(**kw) -> dict:
    return {**OFF, **kw}


def _plane(z: float, h: int = 64, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    return np.full((h, w), z, np.float32), np.ones((h, w), bool)


def test_disparity_noise_grows_as_z_squared_and_is_window_correlated():
    stds = {}
    for z in (0.5, 1.0):
        zz, ok = stereo_depth(*_plane(z), _v(disparity_sigma_px=0.1), FX, np.random.default_rng(0))
        stds[z] = float(zz.std())
    assert stds[1.0] / stds[0.5] == pytest.approx(4.0, rel=0.15)
    # σ_z ≈ z²·σ_d/(f·b)
    assert stds[1.0] == pytest.approx(1.0 * 0.1 / (FX * 0.05), rel=0.15)

    def corr(win: int) -> float:
        zz, _ = stereo_depth(*_plane(1.0), _v(disparity_sigma_px=0.1, match_window_px=win), FX,
                             np.random.default_rng(1))
        a = zz - zz.mean()
        return float((a[:, 1:] * a[:, :-1]).mean() / a.var())
    assert abs(corr(1)) < 0.1 and corr(7) > 0.6


def test_subpixel_quantisation_puts_disparity_on_the_grid():
    z = np.linspace(0.4, 1.2, 64 * 64, dtype=np.float32).reshape(64, 64)
    zz, ok = stereo_depth(z, np.ones_like(z, bool), _v(subpixel=8.0), FX, np.random.default_rng(0))
    d = FX * 0.05 / zz[ok]
    assert np.allclose(d * 8, np.round(d * 8), atol=1e-3)
    assert len(np.unique(np.round(zz, 6))) < 0.2 * z.size


def test_flying_pixels_only_at_depth_edges_between_the_two_depths():
    z, ok = _plane(1.0)
    z[:, 32:] = 0.6
    zz, ok2 = stereo_depth(z, ok, _v(flying_p=1.0), FX, np.random.default_rng(0))
    mixed = (zz > 0.61) & (zz < 0.99)
    assert mixed.any() and np.all(np.nonzero(mixed)[1] == 32)   # the first column behind the jump


def test_projector_shadow_beside_a_near_object_has_the_predicted_width():
    z, ok = _plane(1.0)
    z[:, 30:40] = 0.5                                          # a near bar (the nose)
    bp = 0.03
    zz, ok2 = stereo_depth(z, ok, _v(projector_offset_m=bp), FX, np.random.default_rng(0))
    holes = ~ok2[0]
    width = FX * bp * (1 / 0.5 - 1 / 1.0)                      # 6 px
    assert holes[:30].sum() == pytest.approx(width, abs=1)     # on the side away from the projector
    assert not holes[30:].any()


def test_native_depth_resolution_is_blocky():
    z = np.linspace(0.4, 1.2, 64 * 64, dtype=np.float32).reshape(64, 64)
    zz, ok = stereo_depth(z, np.ones_like(z, bool), _v(depth_downscale=4.0), FX, np.random.default_rng(0))
    blocks = zz.reshape(16, 4, 16, 4)
    assert np.all(blocks.max((1, 3)) == blocks.min((1, 3)))
    assert zz.mean() == pytest.approx(z.mean(), rel=1e-3)


def test_nir_gain_saturation_banding_and_dots():
    ir = np.full((32, 32), 100, np.uint8)
    assert nir_sensor(ir, _v(nir_gain=1.5), np.random.default_rng(0)).mean() == pytest.approx(150, abs=0.6)
    assert nir_sensor(ir, _v(nir_gain=3.0, nir_full_well=180.0), np.random.default_rng(0)).max() == 180
    band = nir_sensor(ir, _v(nir_banding=3.0), np.random.default_rng(0)).astype(float)
    assert band.std(1).max() == 0 and band.mean(1).std() > 1.5    # whole rows move together
    dots = nir_sensor(ir, _v(nir_dots=0.3, dot_seed=5.0), np.random.default_rng(0))
    again = nir_sensor(ir, _v(nir_dots=0.3, dot_seed=5.0), np.random.default_rng(9))
    assert (dots == 130).mean() == pytest.approx(0.02, abs=0.015) and np.array_equal(dots, again)


def test_rgb_pipeline_effects():
    rng = np.random.default_rng(0)
    img = (rng.random((32, 32, 3)) * 200 + 20).astype(np.uint8)
    same = rgb_pipeline(img, OFF, np.random.default_rng(0))
    assert np.abs(same.astype(int) - img).max() <= 1           # all off: the image (up to rounding)
    dark = np.full((16, 16, 3), 80, np.uint8)
    ae = rgb_pipeline(dark, _v(ae_target=0.2, ae_strength=1.0), np.random.default_rng(0))
    assert abs(float(np.power(ae / 255.0, 2.2).mean()) - 0.2) < 0.01
    blur = rgb_pipeline(img, _v(defocus_px=2.0), np.random.default_rng(0))
    assert blur.astype(float).std() < 0.6 * img.astype(float).std()
    sharp = rgb_pipeline(img, _v(sharpen=1.0), np.random.default_rng(0))
    assert sharp.astype(float).std() > img.astype(float).std()
    wb = rgb_pipeline(dark, _v(wb_error=0.2), np.random.default_rng(3))
    assert len(set(wb[0, 0].tolist())) > 1                     # grey is no longer grey


def test_jpeg_error_falls_with_quality_and_chroma_is_subsampled():
    rng = np.random.default_rng(0)
    img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    err = {q: float(np.abs(jpeg_like(img, q).astype(float) - img).mean()) for q in (20, 50, 95)}
    assert err[20] > err[50] > err[95] > 0
    flat = np.full((16, 16, 3), (120, 80, 60), np.uint8)
    assert np.abs(jpeg_like(flat, 50).astype(int) - flat).max() <= 2


def test_ranges_are_validated_and_draws_are_deterministic():
    with pytest.raises(ConfigError):
        SensorPhysics(flying_p=(0.5, 0.1))
    with pytest.raises(ConfigError):
        SensorPhysics(jpeg_quality=(50, 120))
    a, b, c = draw_physics(DR_PHYSICS, 0, 7), draw_physics(DR_PHYSICS, 0, 7), draw_physics(DR_PHYSICS, 0, 8)
    assert a == b and a != c
    for f in dataclasses.fields(DR_PHYSICS):
        lo, hi = getattr(DR_PHYSICS, f.name)
        assert lo - 0.5 <= a[f.name] <= hi + 0.5
    # the reserved cross-domain combination lies outside the training ranges in its key settings
    assert X_PHYSICS.depth_downscale[0] > DR_PHYSICS.depth_downscale[1]
    assert X_PHYSICS.jpeg_quality[1] < DR_PHYSICS.jpeg_quality[0]


def test_physics_domains_render_deterministically_and_nominal_has_none():
    assert all(DOMAINS[d].physics is None for d in ("nominal", "demo", "x_sensor", "x_illuminant"))
    rig = default_rig(160, 120)
    cache = RenderCache(rig, 0)
    outs = []
    for dom in ("nominal", "dr", "dr", "x_phys"):
        p = sample_presentation(3, "bonafide", 1, seed=0, domain=dom)
        outs.append(render_frames(p, rig, frame=0, seed=0, cache=cache))
    nominal, dr1, dr2, xp = outs
    assert np.array_equal(dr1.rgb, dr2.rgb) and np.array_equal(dr1.depth, dr2.depth)
    assert np.array_equal(dr1.ir, dr2.ir)
    assert not np.array_equal(xp.depth, nominal.depth) and not np.array_equal(xp.rgb, nominal.rgb)
    blocks = xp.depth[:120 // 4 * 4, :160 // 4 * 4].reshape(30, 4, 40, 4)   # x_phys: native depth at 1/4
    assert np.all(blocks.max((1, 3)) == blocks.min((1, 3)))
    assert xp.ir.max() <= 180


def test_continuous_skin_is_weakly_tied_to_nir_and_reaches_the_render():
    from edgepad.synthesis.scene import SKIN_TONES, continuous_skin, skin_group
    draws = [continuous_skin(0, i) for i in range(400)]
    t = np.array([d["skin_tone"] for d in draws])
    rho = np.array([d["skin_rho"] for d in draws])
    r = float(np.corrcoef(t, rho)[0, 1])
    assert -0.5 < r < -0.1                                      # darker skin: slightly lower ρ, weakly
    assert rho.min() >= 0.42 and rho.max() <= 0.60
    assert np.ptp(t) > 0.9 and len({skin_group(x) for x in t}) == 3
    light = continuous_skin(0, int(np.argmin(t)))
    assert light["skin_r"] == pytest.approx(SKIN_TONES[0][1][0], rel=0.02)
    assert continuous_skin(0, 5) == continuous_skin(0, 5)
    p = sample_presentation(11, "bonafide", 2, seed=0, domain="dr")
    nominal = sample_presentation(11, "bonafide", 2, seed=0, domain="nominal")
    assert "skin_rho" in p.params and "skin_rho" not in nominal.params
    assert p.group == skin_group(p.params["skin_tone"])
    from edgepad.synthesis import build_surface
    surf = build_surface(p)
    assert np.isclose(np.median(surf.rho[surf.rho > 0.4]), p.params["skin_rho"], atol=0.03)
