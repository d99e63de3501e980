"""Builders of a training run from its config: input specs, transforms, datasets, model, objective, optimizer."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from edgepad._optional import lazy
from edgepad.data.transforms import SensorJitter, build_transform
from edgepad.errors import ConfigError
from edgepad.models.registry import create_model
from edgepad.preprocess import default_input_specs
from edgepad.training.config import TrainConfig

torch = lazy("torch")


def input_specs(cfg: TrainConfig) -> dict:
    """The model's ``{name: InputSpec}``: the runtime's default specs with the config's overrides."""
    specs = default_input_specs(cfg.inputs.size_px)
    out = {}
    for m in cfg.model.modalities:
        if m not in specs:
            raise ConfigError(f"no input spec for modality {m!r}", key="model.modalities")
        s = replace(specs[m], missing_fill=float(cfg.inputs.missing_fill), align=cfg.inputs.align,
                    margin=cfg.inputs.margin)
        if m == "depth" and cfg.inputs.depth_norm:
            s = replace(s, depth_norm=cfg.inputs.depth_norm)
        if m == "ir" and cfg.inputs.ir_distance_ref_m is not None:
            if not cfg.inputs.ir_distance_ref_m > 0:
                raise ConfigError("inputs.ir_distance_ref_m must be > 0 m", key="inputs.ir_distance_ref_m")
            s = replace(s, distance_ref_m=float(cfg.inputs.ir_distance_ref_m))
        clip = (cfg.inputs.clip or {}).get(m)
        if clip is not None:
            if not clip[1] > clip[0]:
                raise ConfigError(f"inputs.clip.{m} must be [lo, hi] with hi > lo, got {list(clip)}",
                                  key=f"inputs.clip.{m}")
            s = replace(s, clip=(float(clip[0]), float(clip[1])))
        out[m] = s
    unknown = set(cfg.inputs.clip or {}) - set(out)
    if unknown:
        raise ConfigError(f"inputs.clip names modalities the model does not have: {sorted(unknown)}",
                          key="inputs.clip", suggestions=sorted(out))
    return out


def train_transform(cfg: TrainConfig):
    """The training augmentation of ``cfg.augment`` (``edgepad.data.transforms.build_transform``)."""
    ac = cfg.augment
    bad = [m for m in ac.jitter_modalities if m not in ("rgb", "ir")]
    if bad:
        raise ConfigError(f"augment.jitter_modalities: photometric jitter applies to 8-bit rgb / ir only, got {bad}",
                          key="augment.jitter_modalities", suggestions=["rgb", "ir"])
    sensor = SensorJitter(ir_gain=ac.sensor_ir_gain, rgb_gain=ac.sensor_rgb_gain, tone=ac.sensor_tone,
                          blur_px=ac.sensor_blur_px, noise_dn=ac.sensor_noise_dn, depth_block=ac.sensor_depth_block)
    return build_transform(cfg.inputs.size_px, train=True, flip=ac.flip, crop_scale=ac.crop_scale,
                           cutout_px=ac.cutout_px, jitter_offset=ac.jitter_offset, jitter_gamma=ac.jitter_gamma,
                           jitter_modalities=ac.jitter_modalities, sensor=sensor)


def build_model(cfg: TrainConfig, inputs: Mapping[str, Any]):
    """``create_model`` from the config, with the fill values of ``inputs`` (recorded in ``model_kwargs``)."""
    kw = dict(cfg.model.kwargs)
    kw.setdefault("missing_fill", {m: float(s.missing_fill) for m, s in inputs.items()})
    return create_model(cfg.model.name, modalities=cfg.model.modalities, backbone=cfg.model.backbone,
                        fusion=cfg.model.fusion, **kw)


def build_objective(cfg: TrainConfig, model):
    """``edgepad.losses.PADObjective`` of ``cfg.loss`` (imported here: the losses module needs torch at import)."""
    from edgepad.losses import PADObjective
    lc = cfg.loss
    return PADObjective(lc.kind, cfg.model.modalities, getattr(model, "embedding_dim", None), lc.aux_weight,
                        lc.gamma, lc.alpha, lc.beta, lc.cmfl_inner_mean, lc.binary, lc.partner, lc.detach_partner,
                        lc.lambda_c, lc.lambda_s, lc.sep_scale)


def build_optimizer(cfg: TrainConfig, model, objective):
    """``(optimizer, scheduler or None)`` of ``cfg.optim``; the objective's own parameters (ABC centres) get
    ``cfg.loss.center_lr`` and no weight decay."""
    oc = cfg.optim
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    extra = [p for p in objective.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": cfg.loss.center_lr, "weight_decay": 0.0})
    if oc.name == "adam":
        opt = torch.optim.Adam(groups, lr=oc.lr, weight_decay=oc.weight_decay)
    elif oc.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=oc.lr, weight_decay=oc.weight_decay)
    else:
        opt = torch.optim.SGD(groups, lr=oc.lr, momentum=oc.momentum, weight_decay=oc.weight_decay)
    if oc.scheduler == "step":
        sch = torch.optim.lr_scheduler.StepLR(opt, oc.step_size, oc.gamma)
    elif oc.scheduler == "exp":
        sch = torch.optim.lr_scheduler.ExponentialLR(opt, oc.gamma)
    elif oc.scheduler == "cosine":
        sch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.epochs))
    else:
        sch = None
    return opt, sch

