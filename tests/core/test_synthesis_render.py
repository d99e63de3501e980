"""The synthetic renderer's pixels are pinned: sha256 of one rendered frame set per species.

The digests were computed on the single-module renderer (edgepad/synthesis.py) before it became the
``edgepad.synthesis`` package; a change in the rendering must change ``GENERATOR_VERSION`` and these digests
together (docs/SYNTHETIC.md). numpy's float32 arithmetic is reproducible on one platform; the digests are
those of x86_64 (the test is skipped elsewhere).
"""
from __future__ import annotations

import hashlib
import platform

import numpy as np
import pytest

from edgepad.synthesis import (GENERATOR_VERSION, SPECIES, RenderCache, default_rig, face_box, frame_pose,
                               render_frames, sample_presentation)
from edgepad.types import Modality

#: species -> sha256 of (rgb, depth, ir, depth_true_m, face_mask_rgb, face_mask_ir, face box) of frame 1 of
#: presentation i (seed 9, subject 2, nominal domain) rendered at 320×240 with seed 3
DIGESTS = {
    "bonafide": "408e0fe416a871018afdb6af1962d1a048bd20fe06cd25a7ecc31e9a7b41413e",
    "print_flat": "83b6b19235c8df94b1cb3cd4f8bafc3f684785ed9cca3fda902bf52fd6a3bc9c",
    "print_bent": "ab82b221e9baf6f2fef880c2384a02468dd1ae5f8bd588b5a6aa18d881c10164",
    "print_glossy": "ea0a373d71acd93c99ccec300fa437a5994aa168031b7368aeb09c0057f3db9f",
    "replay": "824062c5f25e44e211229d326cee409fcaaafb6ff057da7c37165fd8f4bd2a30",
    "papermask": "5bebc277d1ce6b32a560d0e2bd62f4f48d66003f3f0621dd98217cbcccce1227",
    "rigidmask": "401a21a0e33372b50f3c20d51db5fed11b09d18dca602ae1869f96cfc511bd75",
    "flexiblemask": "dbbab7ed6dcbc0613525577e0872d735d550dd1985bdec04199597535e620de9",
}

RIG = default_rig(320, 240)


def _digest(r) -> str:
    h = hashlib.sha256()
    for a in (r.rgb, r.depth, r.ir, r.depth_true_m, r.face_mask_rgb, r.face_mask_ir):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(r.truth.face_box_rgb).encode())
    return h.hexdigest()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="digests pinned on x86_64")
def test_renders_are_bit_identical_to_the_pinned_digests():
    assert GENERATOR_VERSION == "1.0.0"  # a new version comes with new digests
    cache = RenderCache(RIG, 3)
    got = {}
    for i, sp in enumerate(SPECIES):
        p = sample_presentation(i, sp, 2, seed=9, domain="nominal")
        got[sp] = _digest(render_frames(p, RIG, frame=1, seed=3, cache=cache))
    assert got == DIGESTS


def test_face_box_is_the_box_render_frames_reports():
    cache = RenderCache(RIG, 3)
    p = sample_presentation(4, "replay", 2, seed=9)
    r = render_frames(p, RIG, frame=2, seed=3, cache=cache)
    pose = frame_pose(p, 2)
    box = face_box(p, cache.surface(p), pose.r, pose.t, RIG.intrinsics[Modality.RGB])
    assert box is not None and box == r.truth.face_box_rgb
