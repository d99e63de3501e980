"""The domain-randomised benchmark set (camera physics drawn per video) and its X_physics protocol."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad import benchmark as B
from edgepad.benchmark.dataset import (DR_DOMAIN, X_PHYSICS_DOMAIN, SynthDatasetConfig, config_mapping, plan_videos,
                                       protocols, render_video)

DATA = {"videos_per_species": 2, "frames_per_video": 1, "size_px": 16, "width": 160, "height": 120,
        "subjects_per_fold": 4, "species": ("bonafide", "print_flat", "rigidmask"), "cross_videos_per_species": 1}


def test_randomised_plan_appends_without_moving_the_nominal_videos():
    base = plan_videos(SynthDatasetConfig(**DATA))
    dr = plan_videos(SynthDatasetConfig(**DATA, randomised=True))
    assert dr[:len(base)] == base                                   # same ids, indices, subjects, victims
    extra = dr[len(base):]
    assert {s.domain for s in extra} == {DR_DOMAIN, X_PHYSICS_DOMAIN}
    assert sorted({s.fold for s in extra if s.domain == DR_DOMAIN}) == ["dev", "eval", "train"]
    assert {s.fold for s in extra if s.domain == X_PHYSICS_DOMAIN} == {"eval"}
    no_x = plan_videos(SynthDatasetConfig(**dict(DATA, cross_domain=False), randomised=True))
    assert {s.domain for s in no_x} == {"nominal", DR_DOMAIN}


def test_randomised_protocols():
    specs = plan_videos(SynthDatasetConfig(**DATA, randomised=True))
    metas = {s.video_id: {"distance_m": 0.5} for s in specs}
    pr = protocols(specs, metas, DATA["species"])
    dr = {s.video_id: s for s in specs if s.domain == DR_DOMAIN}
    xp = {s.video_id: s for s in specs if s.domain == X_PHYSICS_DOMAIN}
    ids = lambda rows: {r[0].split("/")[1] for r in rows}           # noqa: E731
    assert ids(pr["DR_grandtest"]) == set(dr)
    xrows = pr["X_physics"]
    assert ids([r for r in xrows if r[3] != "eval"]) == {v for v, s in dr.items() if s.fold != "eval"}
    assert ids([r for r in xrows if r[3] == "eval"]) == set(xp)
    assert ids(pr["grandtest"]).isdisjoint(dr)                      # grandtest is unchanged
    xn = pr["X_physics_nominal"]
    assert ids([r for r in xn if r[3] == "eval"]) == set(xp)
    assert ids([r for r in xn if r[3] != "eval"]) == ids([r for r in pr["grandtest"] if r[3] != "eval"])


def test_data_hash_unchanged_unless_randomised():
    cfg = SynthDatasetConfig(**DATA)
    assert "randomised" not in config_mapping(cfg)
    assert config_mapping(SynthDatasetConfig(**DATA, randomised=True))["randomised"] is True
    assert B.data_hash(dict(DATA, randomised=True)) != B.data_hash(DATA)


def test_randomised_videos_render_deterministically_and_differ_from_nominal():
    cfg = SynthDatasetConfig(**DATA, randomised=True)
    specs = plan_videos(cfg)
    spec = next(s for s in specs if s.domain == X_PHYSICS_DOMAIN)
    a, meta = render_video(spec, cfg)
    b, _ = render_video(spec, cfg)
    assert meta["domain"] == X_PHYSICS_DOMAIN and len(a) == 1
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    nominal = dict(spec.__dict__, domain="nominal")
    c, _ = render_video(type(spec)(**nominal), cfg)
    assert not np.array_equal(a[0], c[0])
