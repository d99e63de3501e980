"""Losses for face PAD (needs torch): BCE, binary focal, cross-modal focal (CMFL), average-binary-centre (ABC).

Conventions: ``target`` is (B,) float with **1 = bona fide, 0 = attack**; ``logit`` is (B,) (apply σ outside);
losses are computed from logits (``BCE-with-logits``) and target confidences as ``p_t = exp(−ℓ)``, which is exact,
autocast-safe and has no ``log`` clamp. Function + ``nn.Module`` pairs; :func:`check_shapes` raises ``ShapeError``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from edgepad._optional import require

require("torch")  # torch-only module: fail with MissingDependencyError naming the extra

import torch
import torch.nn.functional as F
from torch import nn

from edgepad.config import suggest
from edgepad.errors import ConfigError, ShapeError

_REDUCTIONS = ("mean", "sum", "none")


def check_shapes(logit: torch.Tensor, target: torch.Tensor, name: str = "logit") -> None:
    """Raise :class:`ShapeError` unless ``logit`` and ``target`` are both (B,)."""
    if logit.dim() != 1:
        raise ShapeError(name, (-1,), tuple(logit.shape))
    if target.shape != logit.shape:
        raise ShapeError("target", tuple(logit.shape), tuple(target.shape))


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ConfigError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}", key="reduction")


def bce_loss(logit: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``BCE(σ(z), y) = −[y·log σ(z) + (1−y)·log(1−σ(z))]`` from logits.

    Args:
        logit: (B,) logits. target: (B,) in {0, 1} (1 = bona fide). reduction: mean | sum | none.

    Example:
        >>> bce_loss(torch.zeros(2), torch.tensor([1., 0.]))   # log 2
        tensor(0.6931)
    """
    check_shapes(logit, target)
    return _reduce(F.binary_cross_entropy_with_logits(logit, target.to(logit.dtype), reduction="none"), reduction)


def binary_focal_loss(logit: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = None,
                      reduction: str = "mean") -> torch.Tensor:
    """Binary focal loss ``FL = α_t·(1 − p_t)^γ·ℓ`` with ``ℓ = BCE(σ(z), y)``, ``p_t = exp(−ℓ)``.

    ``α_t = α`` for y = 1 and ``1 − α`` for y = 0; ``alpha=None`` means no class weighting. γ = 0 and
    ``alpha=None`` is exactly BCE.

    Args:
        logit: (B,). target: (B,) in {0, 1}. gamma: focusing parameter ≥ 0. alpha: class weight or None.
        reduction: mean | sum | none.

    Example:
        >>> binary_focal_loss(torch.zeros(1), torch.ones(1), gamma=2.0)   # 0.5² · log 2
        tensor(0.1733)
    """
    check_shapes(logit, target)
    t = target.to(logit.dtype)
    ell = F.binary_cross_entropy_with_logits(logit, t, reduction="none")
    p_t = torch.exp(-ell)
    loss = (1.0 - p_t).clamp_min(0.0) ** gamma * ell
    if alpha is not None:
        loss = (alpha * t + (1.0 - alpha) * (1.0 - t)) * loss
    return _reduce(loss, reduction)


def cross_modal_focal_loss(logit: torch.Tensor, partner_logits: torch.Tensor | Sequence[torch.Tensor],
                           target: torch.Tensor, alpha: float = 1.0, gamma: float = 3.0, binary: bool = False,
                           detach_partner: bool = False, eps: float = 1e-9, reduction: str = "mean") -> torch.Tensor:
    """Cross-modal focal loss of one modality head (George & Marcel, CVPR 2021; code form, docs/MODELS.md).

    With ``ℓ_p = BCE(σ(logit), y)``, ``p_t = exp(−ℓ_p)`` and the partner's target confidence ``q_t`` (for several
    partners: the mean of their ``exp(−ℓ)``, the edgepad 3-modality extension)::

        h   = 2·p_t·q_t / (p_t + q_t + ε)
        w   = (q_t + ε)·h                (× (1 − y) when ``binary``: modulation on attacks only)
        CMFL = α·(1 − w)^γ·ℓ_p

    Gradients flow through ``w`` (both ``p_t`` and ``q_t``) unless ``detach_partner`` (ablation: ``q_t``
    detached).

    Args:
        logit: (B,) this modality's logits. partner_logits: (B,) or a sequence of (B,). target: (B,) 1 = bona fide.
        alpha, gamma: 1 and 3 as trained in the reference (the class default there is γ = 2).
        binary: see above (always set explicitly). eps: 1e-9. reduction: mean | sum | none.

    Example:
        >>> cross_modal_focal_loss(torch.zeros(1), torch.zeros(1), torch.ones(1))  # p_t = q_t = .5, w = .25
        tensor(0.2924)
    """
    check_shapes(logit, target)
    partners = [partner_logits] if isinstance(partner_logits, torch.Tensor) else list(partner_logits)
    if not partners:
        raise ConfigError("cross_modal_focal_loss needs at least one partner modality", key="partner_logits")
    t = target.to(logit.dtype)
    ell = F.binary_cross_entropy_with_logits(logit, t, reduction="none")
    p_t = torch.exp(-ell)
    q_ts = []
    for q in partners:
        check_shapes(q, target, "partner_logit")
        q_ts.append(torch.exp(-F.binary_cross_entropy_with_logits(q, t, reduction="none")))
    q_t = torch.stack(q_ts, 0).mean(0)
    if detach_partner:
        q_t = q_t.detach()
    h = 2.0 * p_t * q_t / (p_t + q_t + eps)
    w = (q_t + eps) * h
    if binary:
        w = w * (1.0 - t)
    return _reduce(alpha * (1.0 - w) ** gamma * ell, reduction)


def center_loss(embedding: torch.Tensor, target: torch.Tensor, centers: torch.Tensor, lambda_c: float = 1e-5,
                lambda_s: float = 1e-5, sep_scale: float = 1e-5) -> torch.Tensor:
    """Average-binary-centre loss, variant (b) of mmfCNN with constant weights (edgepad choice, docs/MODELS.md).

    ``L_c = (1/B)·Σ_i ‖f_i − c_{y_i}‖²`` (ground-truth labels index the centres: row 0 attack, row 1 bona fide),
    ``L_sep = exp(−s·MSE(c_0, c_1))`` (MSE = mean over the D dims), result ``λ_c·L_c + λ_s·L_sep``.

    Args:
        embedding: (B, D). target: (B,) in {0, 1}. centers: (2, D). lambda_c, lambda_s: constant weights
            (1e-5 = the reference's effective initial values lr·0.001). sep_scale: s (1e-5).
    """
    if embedding.dim() != 2:
        raise ShapeError("embedding", (-1, -1), tuple(embedding.shape))
    if target.shape != embedding.shape[:1]:
        raise ShapeError("target", (embedding.shape[0],), tuple(target.shape))
    if centers.dim() != 2 or centers.shape[0] != 2 or centers.shape[1] != embedding.shape[1]:
        raise ShapeError("centers", (2, embedding.shape[1]), tuple(centers.shape))
    c = centers[target.long()]
    pull = ((embedding - c) ** 2).sum(1).mean()
    sep = torch.exp(-sep_scale * ((centers[0] - centers[1]) ** 2).mean())
    return lambda_c * pull + lambda_s * sep


class BCELoss(nn.Module):
    """Module form of :func:`bce_loss`."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_loss(logit, target, self.reduction)


class BinaryFocalLoss(nn.Module):
    """Module form of :func:`binary_focal_loss`."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self.gamma, self.alpha, self.reduction = gamma, alpha, reduction

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return binary_focal_loss(logit, target, self.gamma, self.alpha, self.reduction)


class CenterLoss(nn.Module):
    """Module form of :func:`center_loss` holding learnable centres ``(2, dim)`` (randn init).

    The training loop gives the centres their own optimizer parameter group (``center_lr``).
    """

    def __init__(self, dim: int, lambda_c: float = 1e-5, lambda_s: float = 1e-5, sep_scale: float = 1e-5) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(2, dim))
        self.lambda_c, self.lambda_s, self.sep_scale = lambda_c, lambda_s, sep_scale

    def forward(self, embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return center_loss(embedding, target, self.centers.to(embedding.dtype), self.lambda_c, self.lambda_s,
                           self.sep_scale)


class CrossModalFocalLoss(nn.Module):
    """The RGBD-MH multi-head objective: CMFL on the modality heads + BCE on the joint head.

    ``cmfl_inner_mean=True`` (code form): ``L = β·mean_m mean_B CMFL_m + (1−β)·mean_B BCE_joint`` — with two
    modalities and β = 0.5 this is 0.25/0.25/0.5. ``False`` (paper form): ``L = β·Σ_m mean_B CMFL_m +
    (1−β)·BCE_joint`` (0.5/0.5/0.5).

    Partners (``partner``): ``"mean"`` (edgepad 3-modality extension: the partner confidence is the mean target
    confidence of all other modalities; identical to the coded form for two modalities) or ``"pairwise"``
    (CMFL applied to the pairs (first modality, m) for every other m; all terms averaged / summed).

    Args:
        modalities: head names (``logit_<m>`` in the model output).
        alpha, gamma, binary, detach_partner, eps: see :func:`cross_modal_focal_loss`.
        beta: weight of the CMFL part (0.5).
    """

    def __init__(self, modalities: Sequence[str], alpha: float = 1.0, gamma: float = 3.0, beta: float = 0.5,
                 cmfl_inner_mean: bool = True, binary: bool = False, partner: str = "mean",
                 detach_partner: bool = False, eps: float = 1e-9) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        if len(self.modalities) < 2:
            raise ConfigError("CMFL needs at least two modality heads", key="modalities")
        if partner not in ("mean", "pairwise"):
            raise ConfigError(f"partner must be 'mean' or 'pairwise', got {partner!r}", key="partner")
        self.alpha, self.gamma, self.beta = alpha, gamma, beta
        self.inner_mean, self.binary, self.partner = cmfl_inner_mean, binary, partner
        self.detach_partner, self.eps = detach_partner, eps

    def terms(self, logits: Mapping[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch-mean CMFL term per head (key ``m`` or, pairwise, ``m|partner``)."""
        kw = dict(alpha=self.alpha, gamma=self.gamma, binary=self.binary, detach_partner=self.detach_partner,
                  eps=self.eps)
        out = {}
        if self.partner == "mean":
            for m in self.modalities:
                others = [logits[o] for o in self.modalities if o != m]
                out[m] = cross_modal_focal_loss(logits[m], others, target, **kw)
        else:
            first = self.modalities[0]
            for m in self.modalities[1:]:
                out[f"{first}|{m}"] = cross_modal_focal_loss(logits[first], logits[m], target, **kw)
                out[f"{m}|{first}"] = cross_modal_focal_loss(logits[m], logits[first], target, **kw)
        return out

    def forward(self, logit: torch.Tensor, logits: Mapping[str, torch.Tensor],
                target: torch.Tensor) -> torch.Tensor:
        """``logit``: (B,) joint head; ``logits``: ``{m: (B,)}`` modality heads; ``target``: (B,)."""
        terms = torch.stack(list(self.terms(logits, target).values()))
        cm = terms.mean() if self.inner_mean else terms.sum()
        return self.beta * cm + (1.0 - self.beta) * bce_loss(logit, target)


class PADObjective(nn.Module):
    """The training objective of a configuration: ``forward(output, target) -> (loss, parts)``.

    Kinds:
        ``bce``: BCE on ``logit`` (+ ``aux_weight`` × BCE on each ``logit_<m>``, masked to samples where the
            modality was present when modality dropout is on). Two-class CE with softmax equals BCE on the logit
            difference, so CE configurations use this.
        ``focal``: binary focal loss (``gamma``, default 2; ``alpha``) on ``logit`` (+ aux heads as for bce).
        ``cmfl``: :class:`CrossModalFocalLoss` (``gamma`` default 3, as trained) on the modality heads + joint head.
        ``abc``: BCE on ``logit`` + :class:`CenterLoss` on ``embedding`` (needs ``embedding_dim``).
    """

    KINDS = ("bce", "focal", "cmfl", "abc")
    #: γ when none is given: the focal-loss default and the CMFL value of the trained recipes
    DEFAULT_GAMMA = {"focal": 2.0, "cmfl": 3.0}

    def __init__(self, kind: str, modalities: Sequence[str] = (), embedding_dim: int | None = None,
                 aux_weight: float = 0.0, gamma: float | None = None, alpha: float | None = None, beta: float = 0.5,
                 cmfl_inner_mean: bool = True, binary: bool = False, partner: str = "mean",
                 detach_partner: bool = False, lambda_c: float = 1e-5, lambda_s: float = 1e-5,
                 sep_scale: float = 1e-5) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ConfigError(f"unknown loss kind {kind!r}; known: {list(self.KINDS)}", key="loss.kind",
                              suggestions=suggest(kind, self.KINDS))
        self.kind = kind
        self.modalities = tuple(modalities)
        self.aux_weight = aux_weight
        gamma = self.DEFAULT_GAMMA.get(kind, 2.0) if gamma is None else float(gamma)
        self.gamma, self.alpha = gamma, alpha
        if kind == "cmfl":
            self.cmfl = CrossModalFocalLoss(self.modalities, 1.0 if alpha is None else alpha, gamma, beta,
                                            cmfl_inner_mean, binary, partner, detach_partner)
        if kind == "abc":
            if not embedding_dim:
                raise ConfigError("the abc loss needs the model's embedding_dim", key="loss.kind")
            self.center = CenterLoss(embedding_dim, lambda_c, lambda_s, sep_scale)

    def _main(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "focal":
            return binary_focal_loss(logit, target, self.gamma, self.alpha)
        return bce_loss(logit, target)

    def forward(self, out: Mapping[str, torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logit = out["logit"].float()
        target = target.float()
        parts: dict[str, torch.Tensor] = {}
        if self.kind == "cmfl":
            missing = [m for m in self.modalities if f"logit_{m}" not in out]
            if missing:
                raise ConfigError(f"cmfl needs per-modality heads; the model has none for {missing}",
                                  key="loss.kind")
            heads = {m: out[f"logit_{m}"].float() for m in self.modalities}
            loss = self.cmfl(logit, heads, target)
            parts["cmfl"] = loss
            return loss, {k: float(v.detach()) for k, v in parts.items()}
        loss = self._main(logit, target)
        parts[self.kind if self.kind != "abc" else "bce"] = loss
        if self.kind == "abc":
            c = self.center(out["embedding"].float(), target)
            parts["center"] = c
            loss = loss + c
        if self.aux_weight > 0:
            for m in self.modalities:
                key = f"logit_{m}"
                if key not in out:
                    continue
                per = F.binary_cross_entropy_with_logits(out[key].float(), target, reduction="none")
                mask = out.get(f"present_{m}")
                if mask is not None:
                    mask = mask.to(per.dtype)
                    aux = (per * mask).sum() / mask.sum().clamp_min(1.0)
                else:
                    aux = per.mean()
                parts[f"aux_{m}"] = aux
                loss = loss + self.aux_weight * aux
        return loss, {k: float(v.detach()) for k, v in parts.items()}
