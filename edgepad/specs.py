"""Tensor and input specifications: what a model consumes and the preprocessing that produces it.

The lowest layer (L0): preprocessing, training, evaluation, the engines and the runtime all read these, and the
model manifest (``edgepad.engines.manifest``) records them beside every artifact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgepad.errors import ConfigError

__all__ = ["TensorSpec", "InputSpec", "ALIGN_MODES", "DEFAULT_MARGIN"]

#: crop alignment modes (:attr:`InputSpec.align`)
ALIGN_MODES = ("none", "eyes")
#: crop margin of models and data that record none (:attr:`InputSpec.margin`; the only margin before it existed)
DEFAULT_MARGIN = 0.25


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: ``shape`` uses -1 for a dynamic axis; ``dtype`` is a numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class InputSpec(TensorSpec):
    """A model input and the preprocessing that produces it (shared by training and the runtime).

    Attributes:
        mean, std: per-channel ``x_norm = (x_scaled - mean) / std`` where ``x_scaled`` is in [0, 1].
        clip: raw-value range mapped to [0, 1] before normalising (e.g. depth ``(0.2, 1.5)`` metres relative
            band or ``(0, 255)`` for 8-bit images); None = dtype range.
        missing_fill: value written to the whole tensor, in normalised space, when the modality is absent.
        depth_norm: depth normalisation ("face_relative": metres relative to the face median, "mad": CMFL MAD).
        distance_ref_m: IR only: emitter fall-off compensation, raw ``x · (z_face / distance_ref_m)²`` before
            ``clip`` (active NIR falls as 1/r², so the compensated value tracks reflectance, not distance);
            None = off.
        align: crop alignment: ``"none"`` (axis-aligned window, the shipped model) or ``"eyes"`` (the window is
            rotated about its centre by the roll of the eye line, from the face's 5 landmarks, so the eyes are
            horizontal in every modality's crop; needs landmarks at training, evaluation and run time).
            Manifests without it read as ``"none"``.
        margin: crop margin the model was trained on: the crop window's side is ``max(w, h) · (1 + margin)`` of
            the face box (``preprocess.crop_window``; in [0, 4]). The runtime crops with it. Manifests without it
            read as 0.25 (:data:`DEFAULT_MARGIN`).
    """

    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    clip: tuple[float, float] | None = None
    missing_fill: float = 0.0
    depth_norm: str = "none"
    distance_ref_m: float | None = None
    align: str = "none"
    margin: float = DEFAULT_MARGIN

    def __post_init__(self) -> None:
        if self.align not in ALIGN_MODES:
            raise ConfigError(f"input {self.name!r}: align must be one of {ALIGN_MODES}, got {self.align!r}",
                              key="align")
        m = self.margin
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or not 0.0 <= m <= 4.0:
            raise ConfigError(f"input {self.name!r}: margin must be a finite number in [0, 4], got {m!r}",
                              key="margin")
        object.__setattr__(self, "margin", float(m))
