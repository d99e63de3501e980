"""Fusion modules and modality dropout (needs torch).

All fusion modules take a list of per-modality feature maps ``[F_rgb, F_m2, ...]`` (each B×C×H×W, RGB first) and
return one fused map B×C_out×H×W:

- :class:`ConcatFusion`: ``ReLU(BN(Conv3×3(concat(F_m))))`` (Flexible-Modal "concatenation").
- :class:`SEFusion`: a squeeze-excitation gate per modality (reduction 8, separate weights), then concat fusion.
- :class:`CrossAttentionFusion`: channel-wise cross-attention, RGB gives the values:
  ``A_m = softmax(X_m·X_rgbᵀ)`` (C×C), ``H = X_rgb + Σ_m A_m·X_rgb`` then ``ReLU(BN(Conv3×3(Dropout2d(H))))``.
- :class:`ModalWeightingBlock`: the mmfCNN MWB (strided fused conv gated by learnt channel weights).

:class:`ModalityDropout` replaces whole modalities by the model's single fill value (``InputSpec.missing_fill``).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from edgepad._optional import require

require("torch")  # torch-only module: fail with MissingDependencyError naming the extra

import torch
import torch.nn.functional as F
from torch import nn

from edgepad.config import suggest
from edgepad.errors import ConfigError


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConcatFusion(nn.Module):
    """``F = ReLU(BN(Conv3×3(concat(F_1..F_M))))``: M·C → ``out_channels``.

    Args:
        channels: channels C of each input map.
        num_modalities: M.
        out_channels: output channels (default C).
    """

    def __init__(self, channels: int, num_modalities: int, out_channels: int | None = None, **_: object) -> None:
        super().__init__()
        self.out_channels = out_channels or channels
        self.fuse = _conv_bn_relu(channels * num_modalities, self.out_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.fuse(torch.cat(list(feats), 1))


class SqueezeExcite(nn.Module):
    """``x ⊙ σ(FC_2(ReLU(FC_1(GAP(x)))))`` with reduction ``reduction``."""

    def __init__(self, channels: int, reduction: int = 8, bias: bool = True) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * g[:, :, None, None]


class SEFusion(ConcatFusion):
    """One squeeze-excitation gate per modality (separate weights, reduction 8), then concat fusion."""

    def __init__(self, channels: int, num_modalities: int, out_channels: int | None = None, reduction: int = 8,
                 **_: object) -> None:
        super().__init__(channels, num_modalities, out_channels)
        self.se = nn.ModuleList(SqueezeExcite(channels, reduction) for _ in range(num_modalities))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return super().forward([se(f) for se, f in zip(self.se, feats)])


class CrossAttentionFusion(nn.Module):
    """Channel-wise cross-attention of Flexible-Modal FAS (RGB = values, other modalities shape the mixing).

    ``X_m`` is F_m flattened to C×N. ``A_m = softmax_lastdim(s·X_m·X_rgbᵀ)``, ``CA_m = A_m·X_rgb``,
    ``H = X_rgb + Σ_m CA_m``, output ``ReLU(BN(Conv3×3(Dropout2d(p)(H))))``.

    Args:
        channels: C.
        num_modalities: M (≥ 1; with M = 1 the module is the conv head on RGB alone).
        out_channels: output channels (default C).
        dropout: Dropout2d probability before the conv (0.3 in the reference).
        scaled: ``s = 1/√N`` (safer for FP16) instead of the reference's ``s = 1``; a model must be trained the way
            it is exported. The attention logits and softmax are always computed in float32.
    """

    def __init__(self, channels: int, num_modalities: int, out_channels: int | None = None, dropout: float = 0.3,
                 scaled: bool = False, **_: object) -> None:
        super().__init__()
        self.out_channels = out_channels or channels
        self.scaled = bool(scaled)
        self.drop = nn.Dropout2d(dropout)
        self.fuse = nn.Sequential(nn.Conv2d(channels, self.out_channels, 3, 1, 1, bias=True),
                                  nn.BatchNorm2d(self.out_channels), nn.ReLU(inplace=True))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        rgb = feats[0]
        b, c, h, w = rgb.shape
        x_rgb = rgb.reshape(b, c, h * w).float()
        out = x_rgb
        scale = 1.0 / math.sqrt(h * w) if self.scaled else 1.0
        for f in feats[1:]:
            x_m = f.reshape(b, c, h * w).float()
            attn = torch.softmax(torch.bmm(x_m, x_rgb.transpose(1, 2)) * scale, dim=-1)   # B×C×C, float32
            out = out + torch.bmm(attn, x_rgb)
        return self.fuse(self.drop(out.reshape(b, c, h, w).to(rgb.dtype)))


FUSIONS: dict[str, type[nn.Module]] = {"concat": ConcatFusion, "se": SEFusion, "xattn": CrossAttentionFusion}


def get_fusion(kind: str, channels: int, num_modalities: int, **kw) -> nn.Module:
    """Build a fusion module by name: ``concat`` | ``se`` | ``xattn``.

    Raises:
        ConfigError: unknown kind (with suggestions).
    """
    if kind not in FUSIONS:
        raise ConfigError(f"unknown fusion {kind!r}; known: {sorted(FUSIONS)}", key="fusion",
                          suggestions=suggest(str(kind), FUSIONS))
    return FUSIONS[kind](channels, num_modalities, **kw)


class ModalWeightingBlock(nn.Module):
    """mmfCNN modal weighting block (MWB) at one level.

    ``U = ReLU(BN(Conv3×3/2(concat(F_1..F_M [, G_prev]))))``; ``d_k = GAP(ReLU(Conv3×3(C→K)(F_k)))`` with one conv
    shared by all inputs (``G_prev`` included; it must have C channels too); weights ``v``:

    - ``form="code"`` (default, reference code): ``K = 16``, ``v = ReLU(Linear(n·K → C_out, no bias)(concat d_k))``;
    - ``form="paper"``: ``K = 1``, ``v = σ(Linear(n → C_out)(softmax(concat d_k)))``.

    Output ``G = U ⊙ v`` (B×C_out×⌈H/2⌉×⌈W/2⌉).

    Args:
        channels: C of each per-modality map (and of ``G_prev``).
        num_inputs: number of maps to fuse (modalities, plus 1 when a previous fused map is given).
        out_channels: C_out.
        form: ``code`` | ``paper``.
        k: descriptor channels per input (default 16 for code, 1 for paper).
    """

    def __init__(self, channels: int, num_inputs: int, out_channels: int, form: str = "code",
                 k: int | None = None) -> None:
        super().__init__()
        if form not in ("code", "paper"):
            raise ConfigError(f"MWB form must be 'code' or 'paper', got {form!r}", key="mwb_form")
        self.form = form
        self.k = int(k if k is not None else (16 if form == "code" else 1))
        self.fuse = _conv_bn_relu(channels * num_inputs, out_channels, stride=2)
        self.desc = nn.Conv2d(channels, self.k, 3, 1, 1, bias=True)
        self.fc = nn.Linear(num_inputs * self.k, out_channels, bias=(form == "paper"))

    def forward(self, feats: Sequence[torch.Tensor], prev: torch.Tensor | None = None) -> torch.Tensor:
        inputs = list(feats)
        if prev is not None:
            if prev.shape[-2:] != inputs[0].shape[-2:]:
                prev = F.adaptive_avg_pool2d(prev, inputs[0].shape[-2:])
            inputs.append(prev)
        u = self.fuse(torch.cat(inputs, 1))
        d = torch.cat([F.relu(self.desc(x)).mean((2, 3)) for x in inputs], 1)
        if self.form == "code":
            v = F.relu(self.fc(d))
        else:
            v = torch.sigmoid(self.fc(torch.softmax(d, dim=1)))
        return u * v[:, :, None, None]


class ModalityDropout(nn.Module):
    """Drop whole modalities per sample during training, writing the model's single fill value.

    Active only in training mode. Each modality not in ``keep`` is replaced, independently per sample with
    probability ``p``, by a tensor filled with ``fill[m]`` (the input's ``InputSpec.missing_fill``, in normalised
    input space). Inputs arrive already augmented and normalised, so a dropped input is exactly constant — the
    same tensor ``preprocess.normalise`` builds for an absent modality at run time.

    Args:
        p: drop probability per droppable modality (0.5: {rgb}, {rgb,d}, {rgb,ir}, {rgb,d,ir} 25 % each).
        keep: modalities never dropped (RGB).
        fill: fill value per modality name (default 0.0).
    """

    def __init__(self, p: float = 0.5, keep: Sequence[str] = ("rgb",), fill: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"modality dropout p must be in [0, 1], got {p}", key="modality_dropout")
        self.p = float(p)
        self.keep = tuple(keep)
        self.fill = dict(fill or {})

    def forward(self, feed: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Returns ``(feed', kept)`` where ``kept[m]`` is a (B,) bool tensor (True = modality present)."""
        out = dict(feed)
        kept: dict[str, torch.Tensor] = {}
        for name, x in feed.items():
            b = x.shape[0]
            if not self.training or self.p == 0.0 or name in self.keep:
                kept[name] = torch.ones(b, dtype=torch.bool, device=x.device)
                continue
            drop = torch.rand(b, device=x.device) < self.p
            kept[name] = ~drop
            fill = torch.full_like(x, float(self.fill.get(name, 0.0)))
            out[name] = torch.where(drop[:, None, None, None], fill, x)
        return out, kept

    def extra_repr(self) -> str:
        return f"p={self.p}, keep={self.keep}, fill={self.fill}"
