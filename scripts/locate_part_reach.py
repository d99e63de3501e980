#!/usr/bin/env python3
"""How far each part of the learned locator's spread full search reaches (docs/FACE_DETECTOR.md §5): bona fide faces
of the synthetic camera at fixed distances (3 subjects each); per distance, the whole-pyramid MTCNN box side (px)
and the first part (0 = coarse ``[2..6]``, 1 = ``[1]``, 2 = ``[0]`` at 640×480) that finds the face.

    .venv/bin/python scripts/locate_part_reach.py
"""
import dataclasses, numpy as np
from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
from edgepad.runtime.detector import LearnedFaceDetector, pyramid_parts
from edgepad.types import Modality
rig = default_rig(); det = LearnedFaceDetector()
parts = pyramid_parts(det.scales(480, 640), 3)[::-1]
print(parts)
for dist in (0.6, 0.9, 1.1, 1.3, 1.5, 1.8, 2.0, 2.2, 2.4):
    found = []
    for seed in (11, 12, 13):
        p = dataclasses.replace(sample_presentation(1, "bonafide", 2, seed=seed, domain="nominal"), distance_m=dist, offset_m=(0.0, 0.0))
        rgb = render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1)).rgb
        full = det.largest(rgb)
        first = next((i for i, lv in enumerate(parts) if det.largest(rgb, levels=lv) is not None), None)
        found.append((None if full is None else round(full.box[2]), first))
    print(dist, found)
