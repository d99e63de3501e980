"""Synthetic RGB / depth / near-IR scenes: faces and presentation attacks rendered through a calibrated rig.

numpy only. Every presentation (a bona fide face or a presentation-attack instrument, PAI) is a *surface*: a
heightfield ``h(x, y)`` (metres, towards the camera) over an object-local grid plus material maps on the same grid.
Each camera of the rig ray-casts that heightfield per pixel, so the RGB image and the depth / IR images come from
the same geometry seen from two real viewpoints. docs/SYNTHETIC.md documents the physics, every parameter and the
PAI × modality cues.

Modules: :mod:`~edgepad.synthesis.scene` (species, sensor / scene models, rig, subjects, presentations, pose),
:mod:`~edgepad.synthesis.surfaces` (heightfields and material maps), :mod:`~edgepad.synthesis.render`
(ray casting and the sensor models: :func:`render_frames`).
"""
from edgepad.synthesis.render import (FACE_BOX_POINTS, RenderCache, RenderedFrames, face_box, illuminant_rgb,
                                      render_frames)
from edgepad.synthesis.scene import (ATTACK_SPECIES, DOMAINS, FAMILY, GENERATOR_VERSION, GENERIC_FACE, H_REF_FACE_M,
                                     SKIN_TONES, SPECIES, Pose, Presentation, SceneConfig, SensorModel, Subject,
                                     default_rig, domain_config, frame_pose, make_subject, sample_presentation)
from edgepad.synthesis.surfaces import (GRID_NX, GRID_NY, GRID_STEP_M, GRID_X0, GRID_X1, GRID_Y0, GRID_Y1, Surface,
                                        box_blur, build_surface)

__all__ = ["ATTACK_SPECIES", "DOMAINS", "FACE_BOX_POINTS", "FAMILY", "GENERATOR_VERSION", "GENERIC_FACE",
           "GRID_NX", "GRID_NY", "GRID_STEP_M", "GRID_X0", "GRID_X1", "GRID_Y0", "GRID_Y1", "H_REF_FACE_M",
           "Pose", "Presentation", "RenderCache", "RenderedFrames", "SKIN_TONES", "SPECIES", "SceneConfig",
           "SensorModel", "Subject", "Surface", "box_blur", "build_surface", "default_rig", "domain_config",
           "face_box", "frame_pose", "illuminant_rgb", "make_subject", "render_frames", "sample_presentation"]
