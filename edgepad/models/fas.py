"""MultiModalFASNet and the registered factories of the three seed methods (needs torch).

One network family covers all methods; the method is a configuration:

========== =========================================================================================
fusion     layout
========== =========================================================================================
``late``   one trunk per modality → GAP (→ σ, CMFL) → a head per modality + a joint head on the
           concatenated features (CMFL / RGBD-MH; preset edge-MH)
``concat`` trunks (per-modality stems, shared or separate stages) up to ``fuse_stage`` → fusion
``se``     module → GAP → Dropout → Linear (Flexible-Modal; preset edge-Flex)
``xattn``
``mwb``    one trunk per modality; modal weighting blocks on stages 1/2/3 (fused maps at strides
           8/16/32) → post-fusion ResNet stage (option) → GAP → embedding → Linear(no bias) → σ → Linear
           (mmfCNN; edge-MWB)
========== =========================================================================================

Every model optionally applies :class:`~edgepad.models.fusion.ModalityDropout` to its inputs in training.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from edgepad._optional import require

require("torch")  # torch-only module: fail with MissingDependencyError naming the extra

import torch
from torch import nn

from edgepad.config import suggest
from edgepad.errors import ConfigError, ShapeError
from edgepad.models.backbones import Backbone, BasicBlock, create_backbone
from edgepad.models.fusion import FUSIONS, ModalityDropout, ModalWeightingBlock, SqueezeExcite, get_fusion
from edgepad.models.registry import register_model

IN_CHANS = {"rgb": 3, "depth": 1, "ir": 1}
#: colour spaces the rgb stream can see (``colour_spaces``); each adds 3 channels to the rgb stream's input
COLOUR_SPACES = ("rgb", "hsv", "ycbcr")


def colour_channels(x: torch.Tensor, spaces: Sequence[str], mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    """B×3×S×S normalised RGB → B×(3·k)×S×S: the ``spaces`` (``rgb`` | ``hsv`` | ``ycbcr``) concatenated, each
    channel in [0, 1] then normalised with the same ``(c − mean) / std`` as the rgb input (``mean``/``std`` must be
    the rgb ``InputSpec``'s). HSV: hue in turns (0–1), saturation ``(max − min) / max``, value ``max``; YCbCr:
    BT.601 full range, Cb/Cr offset by 0.5."""
    u = (x * std + mean).clamp(0.0, 1.0)
    r, g, b = u[:, 0:1], u[:, 1:2], u[:, 2:3]
    out = []
    for sp in spaces:
        if sp == "rgb":
            out.append(u)
        elif sp == "hsv":
            mx, mn = u.max(1, keepdim=True).values, u.min(1, keepdim=True).values
            d = mx - mn
            dd = torch.where(d > 0, d, torch.ones_like(d))
            h = torch.where(mx == r, ((g - b) / dd) % 6.0,
                            torch.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0)) / 6.0
            h = torch.where(d > 0, h, torch.zeros_like(h))
            s = torch.where(mx > 0, d / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.zeros_like(mx))
            out.append(torch.cat([h, s, mx], 1))
        else:
            y = 0.299 * r + 0.587 * g + 0.114 * b
            cb = 0.5 - 0.168736 * r - 0.331264 * g + 0.5 * b
            cr = 0.5 + 0.5 * r - 0.418688 * g - 0.081312 * b
            out.append(torch.cat([y, cb, cr], 1))
    return (torch.cat(out, 1) - mean) / std


class MultiModalFASNet(nn.Module):
    """Multi-modal face PAD network: a stream per modality name, a fusion module and the stages it fuses at.

    Args:
        modalities: input names (``rgb`` first when present).
        backbone: trunk name; ``backbone_kwargs`` are passed to it (e.g. ``{"width": 16}``).
        fusion: ``late`` | ``concat`` | ``se`` | ``xattn`` | ``mwb``.
        fuse_stage: index of the stage whose outputs are fused (concat/se/xattn); default the stride-16 stage.
        shared_trunk: concat/se/xattn only: modality-specific stems + ONE shared trunk, run on the modalities as
            one batch (Flexible-Modal); False = a separate trunk per modality.
        modality_heads: add a head per modality (``logit_<m>``).
        feature_sigmoid: late fusion: σ on the pooled features before the heads (RGBD-MH, METHODS pitfall 4).
        fusion_kwargs: options of the fusion module (e.g. ``{"scaled": True}`` for xattn, ``{"form": "paper"}``
            for mwb).
        dropout: dropout before the final linear layer.
        head_hidden: mwb: hidden size of the ``Linear → σ → Linear`` head (128 in mmfCNN).
        modality_dropout: probability of dropping each non-RGB modality in training (0 = off).
        post_stage: mwb: a ResNet stage (2 basic blocks, first stride 2, same width) on the last fused map before
            GAP, as mmfCNN's layer4. Without it the embedding is the raw gated map ``U ⊙ v`` whose scale is that
            of the gate (≈ 1e-2 at init): scores stay constant (docs/MODELS.md, "why mwb did not train").
        stream_se: mwb: a squeeze-excitation block (reduction 16, no-bias FCs) on each stream's stage 1–3 output,
            as mmfCNN.
        missing_fill: fill value per modality (or one float for all) written by modality dropout; must equal
            the ``InputSpec.missing_fill`` the data pipeline and runtime use.
        colour_spaces: what the rgb stream sees (:data:`COLOUR_SPACES`, :func:`colour_channels`): e.g.
            ``["rgb", "hsv", "ycbcr"]`` = a 9-channel rgb stream computed inside the graph from the 3-channel rgb
            input (the runtime feeds RGB as before). ``rgb_norm``: the rgb ``InputSpec`` ``(mean, std)``.
        input_standardise: modalities whose input is standardised per sample inside the network,
            ``(x − mean) / sqrt(var + 1e-4)`` over C×H×W of each crop: removes a sensor's gain and offset (and with
            them the absolute level); part of the exported graph, so evaluation and the runtime do the same. A
            constant (missing-modality fill) crop becomes 0.
        input_gain_norm: modalities whose input is divided by its own per-crop, per-channel mean in linear units
            inside the network: ``u = x·std + mean`` (the ``InputSpec`` normalisation, (0.5, 0.5) for every
            shipped input; ``rgb_norm`` for rgb), ``x' = u / (mean_HW(u) + 1e-3) − 1``. Removes a multiplicative
            sensor gain (NIR gain / exposure, a white-balance error per channel) and keeps the contrast (an
            offset is not removed, unlike ``input_standardise``); a constant crop becomes ≈ 0.
        input_lowpass: ``{modality: k}``, a k×k box mean (odd k px, stride 1, edges averaged over the pixels
            inside) on that input inside the network: the detail a coarser native resolution (depth), defocus,
            sharpening, JPEG blocks or projector dots change is removed alike in training and at run time.

    Forward:
        ``feed``: ``{"rgb": B×3×S×S, "depth": B×1×S×S, "ir": B×1×S×S}`` (normalised, extra keys ignored) →
        ``{"logit": (B,), "logit_<m>": (B,), "embedding": (B, D)}``; in training with modality dropout also
        ``"present_<m>"``: (B,) bool.
    """

    def __init__(self, modalities: Sequence[str] = ("rgb", "depth", "ir"), backbone: str = "resnet18h",
                 fusion: str = "late", backbone_kwargs: Mapping[str, Any] | None = None,
                 fuse_stage: int | None = None, shared_trunk: bool = False, modality_heads: bool = True,
                 feature_sigmoid: bool = False, fusion_kwargs: Mapping[str, Any] | None = None,
                 dropout: float = 0.0, head_hidden: int = 128, modality_dropout: float = 0.0,
                 missing_fill: float | Mapping[str, float] = 0.0, post_stage: bool = False,
                 stream_se: bool = False, input_standardise: Sequence[str] = (),
                 input_gain_norm: Sequence[str] = (), input_lowpass: Mapping[str, int] | None = None,
                 colour_spaces: Sequence[str] = ("rgb",), rgb_norm: Sequence[float] = (0.5, 0.5)) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        if not self.modalities:
            raise ConfigError("a model needs at least one modality", key="modalities")
        self.input_standardise = tuple(input_standardise)
        if not set(self.input_standardise) <= set(self.modalities):
            raise ConfigError(f"input_standardise {list(self.input_standardise)} names modalities the model lacks "
                              f"({list(self.modalities)})", key="input_standardise")
        self.input_gain_norm = tuple(input_gain_norm)
        self.input_lowpass = {str(m): int(k) for m, k in (input_lowpass or {}).items()}
        for key, names in (("input_gain_norm", self.input_gain_norm), ("input_lowpass", self.input_lowpass)):
            if not set(names) <= set(self.modalities):
                raise ConfigError(f"{key} {list(names)} names modalities the model lacks ({list(self.modalities)})",
                                  key=key)
        if any(k < 1 or k % 2 == 0 for k in self.input_lowpass.values()):
            raise ConfigError(f"input_lowpass sizes must be odd and ≥ 1, got {self.input_lowpass}", key="input_lowpass")
        self.colour_spaces = tuple(colour_spaces)
        self.rgb_norm = (float(rgb_norm[0]), float(rgb_norm[1]))
        if (not self.colour_spaces or not set(self.colour_spaces) <= set(COLOUR_SPACES)
                or len(set(self.colour_spaces)) != len(self.colour_spaces)):
            raise ConfigError(f"colour_spaces must be distinct names among {list(COLOUR_SPACES)}, got "
                              f"{list(self.colour_spaces)}", key="colour_spaces")
        if self.colour_spaces != ("rgb",) and "rgb" not in self.modalities:
            raise ConfigError("colour_spaces needs the rgb modality", key="colour_spaces")
        in_chans = {**IN_CHANS, "rgb": 3 * len(self.colour_spaces)}
        unknown = [m for m in self.modalities if m not in IN_CHANS]
        if unknown:
            raise ConfigError(f"unknown modalities {unknown}; known: {list(IN_CHANS)}", key="modalities")
        if fusion not in ("late", "mwb", *FUSIONS):
            raise ConfigError(f"unknown fusion {fusion!r}; known: late, mwb, {', '.join(FUSIONS)}", key="fusion",
                              suggestions=suggest(str(fusion), ["late", "mwb", *FUSIONS]))
        if fusion == "xattn" and self.modalities[0] != "rgb":
            raise ConfigError("cross-attention fusion needs rgb as the first modality", key="modalities")
        self.fusion_kind = fusion
        self.modality_heads = bool(modality_heads)
        self.feature_sigmoid = bool(feature_sigmoid)
        self.shared_trunk = bool(shared_trunk) and fusion in FUSIONS
        bkw = dict(backbone_kwargs or {})
        fkw = dict(fusion_kwargs or {})
        fill = (dict(missing_fill) if isinstance(missing_fill, Mapping)
                else {m: float(missing_fill) for m in self.modalities})
        self.missing_fill = {m: float(fill.get(m, 0.0)) for m in self.modalities}
        self.modality_dropout = ModalityDropout(modality_dropout, keep=("rgb",), fill=self.missing_fill)
        m_count = len(self.modalities)

        # ---- trunks
        if self.shared_trunk:
            self.trunk = create_backbone(backbone, in_chans=3, **bkw)
            self.stems = nn.ModuleDict({m: self.trunk.make_stem(in_chans[m]) for m in self.modalities})
            self.trunk.stem = nn.Identity()   # per-modality stems replace it
            self.streams = None
            ref: Backbone = self.trunk
        else:
            self.streams = nn.ModuleDict({m: create_backbone(backbone, in_chans=in_chans[m], **bkw)
                                          for m in self.modalities})
            ref = self.streams[self.modalities[0]]
        chans, strides = ref.channels, ref.strides

        # ---- fusion + heads
        if fusion == "late":
            self.fuse_stage = len(chans) - 1
            feat = chans[-1]
            self.embedding_dim = feat * m_count
            self.joint = nn.Linear(self.embedding_dim, 1)
        elif fusion == "mwb":
            if len(chans) < 3:
                raise ConfigError(f"mwb fusion needs a backbone with ≥ 3 stages; {backbone} has {len(chans)}",
                                  key="backbone")
            self.fuse_stage = 2
            outs = [chans[1], chans[2], chans[3] if len(chans) > 3 else 2 * chans[2]]
            form = fkw.get("form", "code")
            self.mwb = nn.ModuleList([
                ModalWeightingBlock(chans[0], m_count, outs[0], form=form, k=fkw.get("k")),
                ModalWeightingBlock(chans[1], m_count + 1, outs[1], form=form, k=fkw.get("k")),
                ModalWeightingBlock(chans[2], m_count + 1, outs[2], form=form, k=fkw.get("k")),
            ])
            feat = chans[2]
            self.embedding_dim = outs[2]
            self.post = (nn.Sequential(BasicBlock(outs[2], outs[2], stride=2), BasicBlock(outs[2], outs[2]))
                         if post_stage else None)
            self.stream_se = (nn.ModuleDict({m: nn.ModuleList(SqueezeExcite(c, 16, bias=False) for c in chans[:3])
                                             for m in self.modalities}) if stream_se else None)
            self.joint = nn.Sequential(nn.Linear(self.embedding_dim, head_hidden, bias=False), nn.Sigmoid(),
                                       nn.Linear(head_hidden, 1))
        else:
            if fuse_stage is None:
                fuse_stage = strides.index(16) if 16 in strides else len(chans) - 1
            if not 0 <= fuse_stage < len(chans):
                raise ConfigError(f"fuse_stage {fuse_stage} out of range 0..{len(chans) - 1}", key="fuse_stage")
            self.fuse_stage = int(fuse_stage)
            feat = chans[self.fuse_stage]
            self.fusion = get_fusion(fusion, feat, m_count, **fkw)
            self.embedding_dim = self.fusion.out_channels
            self.joint = nn.Linear(self.embedding_dim, 1)
        if fusion != "late":   # stages after the fusion point are never run: do not build parameters for them
            for trunk in ([self.trunk] if self.shared_trunk else list(self.streams.values())):
                trunk.stages = trunk.stages[:self.fuse_stage + 1]
        self.drop = nn.Dropout(dropout)
        if self.modality_heads:
            self.heads = nn.ModuleDict({m: nn.Linear(feat, 1) for m in self.modalities})
        self._init_heads()

    def _init_heads(self) -> None:
        # N(0, 0.01) for the heads only; the MWB gate FCs and stream SE FCs keep PyTorch's default (fan-in) init:
        # at N(0, 0.01) the ReLU gate v is ≈ 1e-2 and multiplies the fused map (mwb did not train, docs/MODELS.md)
        skip: set[int] = set()
        if self.fusion_kind == "mwb":
            for sub in (self.mwb, self.stream_se):
                if sub is not None:
                    skip |= {id(x) for x in sub.modules()}
        for m in self.modules():
            if id(m) in skip:
                continue
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ forward
    def _check_feed(self, feed: Mapping[str, torch.Tensor]) -> None:
        missing = [m for m in self.modalities if m not in feed]
        if missing:
            raise ConfigError(f"model input lacks {missing}: pass every modality, an absent one filled with its "
                              f"missing_fill (preprocess.normalise does this)", key="feed")
        b = None
        for m in self.modalities:
            x = feed[m]
            if x.dim() != 4 or x.shape[1] != IN_CHANS[m]:
                raise ShapeError(m, (-1, IN_CHANS[m], -1, -1), tuple(x.shape))
            if b is not None and x.shape[0] != b:
                raise ShapeError(m, (b, IN_CHANS[m], -1, -1), tuple(x.shape))
            b = x.shape[0]

    def _stage_feats(self, feed: Mapping[str, torch.Tensor], upto: int) -> dict[str, list[torch.Tensor]]:
        if self.shared_trunk:
            stemmed = [self.stems[m](feed[m]) for m in self.modalities]
            b = stemmed[0].shape[0]
            outs = self.trunk.forward_features(torch.cat(stemmed, 0), upto=upto)
            return {m: [o[i * b:(i + 1) * b] for o in outs] for i, m in enumerate(self.modalities)}
        return {m: self.streams[m].forward_features(feed[m], upto=upto) for m in self.modalities}

    def forward(self, feed: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._check_feed(feed)
        feed, present = self.modality_dropout({m: feed[m] for m in self.modalities})
        for m, k in self.input_lowpass.items():
            if k > 1:
                feed[m] = nn.functional.avg_pool2d(feed[m], k, 1, k // 2, count_include_pad=False)
        for m in self.input_gain_norm:
            mean, std = self.rgb_norm if m == "rgb" else (0.5, 0.5)
            u = feed[m] * std + mean
            feed[m] = u / (u.mean((2, 3), keepdim=True) + 1e-3) - 1.0
        for m in self.input_standardise:
            x = feed[m]
            mu = x.mean((1, 2, 3), keepdim=True)
            feed[m] = (x - mu) / torch.sqrt(((x - mu) ** 2).mean((1, 2, 3), keepdim=True) + 1e-4)
        if self.colour_spaces != ("rgb",):
            feed["rgb"] = colour_channels(feed["rgb"], self.colour_spaces, *self.rgb_norm)
        feats = self._stage_feats(feed, self.fuse_stage + 1)
        out: dict[str, torch.Tensor] = {}
        if self.fusion_kind == "late":
            pooled = {m: feats[m][-1].mean((2, 3)) for m in self.modalities}
            if self.feature_sigmoid:
                pooled = {m: torch.sigmoid(v) for m, v in pooled.items()}
            emb = torch.cat([pooled[m] for m in self.modalities], 1)
        elif self.fusion_kind == "mwb":
            if self.stream_se is not None:
                feats = {m: [self.stream_se[m][i](f) if i < 3 else f for i, f in enumerate(feats[m])]
                         for m in self.modalities}
            g = None
            for lvl, block in enumerate(self.mwb):
                g = block([feats[m][lvl] for m in self.modalities], g)
            if self.post is not None:
                g = self.post(g)
            emb = g.mean((2, 3))
            pooled = {m: feats[m][self.fuse_stage].mean((2, 3)) for m in self.modalities}
        else:
            fused = self.fusion([feats[m][self.fuse_stage] for m in self.modalities])
            emb = fused.mean((2, 3))
            pooled = {m: feats[m][self.fuse_stage].mean((2, 3)) for m in self.modalities}
        out["logit"] = self.joint(self.drop(emb)).squeeze(1)
        if self.modality_heads:
            for m in self.modalities:
                out[f"logit_{m}"] = self.heads[m](self.drop(pooled[m])).squeeze(1)
        out["embedding"] = emb
        if self.training and self.modality_dropout.p > 0:
            for m in self.modalities:
                out[f"present_{m}"] = present[m]
        return out


# ------------------------------------------------------------------------------------------- factories

@register_model("cmfl")
def cmfl(*, modalities=("rgb", "depth"), backbone="resnet18h", fusion=None, **kw) -> MultiModalFASNet:
    """RGBD-MH / edge-MH: separate trunks, σ on pooled features, a head per modality + joint head.

    Train with ``loss.kind: cmfl``. The reference configuration is ``backbone="densenet"`` (DenseNet-161 layout
    truncated after transition 2) on rgb + depth at 224 px.
    """
    kw.setdefault("feature_sigmoid", True)
    kw.setdefault("modality_heads", True)
    return MultiModalFASNet(modalities, backbone, fusion or "late", **kw)


@register_model("flexmodal")
def flexmodal(*, modalities=("rgb", "depth", "ir"), backbone="resnet18h", fusion=None, **kw) -> MultiModalFASNet:
    """Flexible-Modal / edge-Flex: per-modality stems, shared trunk, concat | se | xattn fusion at stride 16,
    modality dropout p = 0.5 (RGB kept) with the single fill value."""
    kw.setdefault("shared_trunk", True)
    kw.setdefault("modality_heads", False)
    kw.setdefault("modality_dropout", 0.5)
    kw.setdefault("dropout", 0.3)
    return MultiModalFASNet(modalities, backbone, fusion or "concat", **kw)


@register_model("multilayer")
def multilayer(*, modalities=("rgb", "depth", "ir"), backbone="resnet18h", fusion=None, **kw) -> MultiModalFASNet:
    """mmfCNN / edge-MWB: separate trunks, modal weighting blocks at three depths, a post-fusion ResNet stage,
    embedding for the ABC loss (``post_stage=False``: the pre-fix layout that does not train, docs/MODELS.md)."""
    kw.setdefault("modality_heads", False)
    kw.setdefault("post_stage", True)
    return MultiModalFASNet(modalities, backbone, fusion or "mwb", **kw)
