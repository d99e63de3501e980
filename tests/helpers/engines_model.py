"""A tiny real multi-modal torch model (TinyPAD), its input specs and class-carrying feeds for engine tests."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from edgepad.engines.manifest import InputSpec  # noqa: E402

SIZE_PX = 16
MODALITIES = ("rgb", "depth", "ir")
CHANS = {"rgb": 3, "depth": 1, "ir": 1}


class TinyPAD(nn.Module):
    """Conv-BN-ReLU stem per modality → GAP → per-modality heads + joint head (the engine output names: logit, logit_<m>, embedding)."""

    def __init__(self, modalities=MODALITIES, width: int = 8, attention: bool = False) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.stems = nn.ModuleDict({m: nn.Sequential(
            nn.Conv2d(CHANS[m], width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()) for m in self.modalities})
        self.attention = attention
        self.heads = nn.ModuleDict({m: nn.Linear(width, 1) for m in self.modalities})
        self.joint = nn.Linear(width * len(self.modalities), 1)
        # non-trivial BN statistics so that folding matters
        for mod in self.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)

    def forward(self, feed):
        feats = {m: self.stems[m](feed[m]) for m in self.modalities}
        if self.attention:  # channel cross-attention island (softmax over C×C), as in the xattn fusion
            rgb = feats[self.modalities[0]]
            b, c, h, w = rgb.shape
            x0 = rgb.reshape(b, c, h * w)
            for m in self.modalities[1:]:
                xm = feats[m].reshape(b, c, h * w)
                attn = torch.softmax(torch.bmm(xm, x0.transpose(1, 2)) / (h * w) ** 0.5, dim=-1)
                feats[m] = feats[m] + torch.bmm(attn, x0).reshape(b, c, h, w)
        pooled = {m: f.mean(dim=(2, 3)) for m, f in feats.items()}
        out = {"logit": self.joint(torch.cat([pooled[m] for m in self.modalities], 1)).reshape(-1),
               "embedding": torch.cat(list(pooled.values()), 1)}
        for m in self.modalities:
            out[f"logit_{m}"] = self.heads[m](pooled[m]).reshape(-1)
        return out


def tiny_specs(size_px: int = SIZE_PX, modalities=MODALITIES) -> dict[str, InputSpec]:
    return {m: InputSpec(m, (1, CHANS[m], size_px, size_px), "float32", mean=(0.5,) * CHANS[m],
                         std=(0.5,) * CHANS[m], clip=(0.0, 255.0), missing_fill=0.0) for m in modalities}


def signal_data(n: int, seed: int, size_px: int = SIZE_PX, strength: float = 0.15):
    """Feeds whose class is carried by a vertical ramp (bona fide +, attacks −) under unit noise."""
    g = np.random.default_rng(seed)
    live = g.random(n) < 0.5
    species = np.where(live, "bonafide", g.choice(["print_flat", "replay", "rigidmask"], n))
    ramp = np.linspace(-1, 1, size_px, dtype=np.float32)[None, None, :, None]
    sign = np.where(live, strength, -strength).astype(np.float32)[:, None, None, None]
    feeds = {m: (g.standard_normal((n, CHANS[m], size_px, size_px)).astype(np.float32) + sign * ramp)
             for m in MODALITIES}
    return feeds, live, [str(s) for s in species]
