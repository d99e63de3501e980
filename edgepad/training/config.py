"""Training configuration: the ``*Config`` dataclasses of a run and :func:`load_train_config` (no torch needed).

Relative paths in a config file resolve against the file's folder; keys are strict (typos get suggestions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from edgepad.config import from_mapping, read_mapping
from edgepad.data.sources import DataSourceConfig
from edgepad.errors import ConfigError
from edgepad.metrics import DEFAULT_THRESHOLD_RULE, THRESHOLD_RULES

DEFAULT_SUBSETS = (("rgb", "depth", "ir"), ("rgb", "depth"), ("rgb", "ir"), ("rgb",))


#: the ``data`` section of a training config: one class with evaluation's ``--data`` (edgepad.data.sources)
DataConfig = DataSourceConfig


@dataclass(frozen=True)
class InputConfig:
    """Model inputs: ``preprocess.default_input_specs(size_px)`` with optional overrides.

    Attributes:
        clip: raw-value range per modality name, e.g. ``{ir: [0, 160]}`` (InputSpec.clip).
        ir_distance_ref_m: IR emitter fall-off compensation reference distance (m; InputSpec.distance_ref_m).
        align: crop alignment of every input, ``"none"`` | ``"eyes"`` (InputSpec.align); "eyes" needs crops cut
            with face landmarks: stored datasets (no landmarks) refuse it with a ConfigError.
        margin: crop margin of every input (InputSpec.margin; window side ``max(w, h)·(1 + margin)``, in [0, 4]):
            the margin the training data's crops were cut with (a synthetic benchmark's ``meta.json``
            ``config.margin``, ``edgepad synth --margin``); data of another margin is refused with a ConfigError.
            The benchmark matrix sets it to its ``data.margin`` unless its ``train.inputs`` names one.
    """

    size_px: int = 112
    missing_fill: float = 0.0
    depth_norm: str | None = None
    clip: Mapping[str, tuple[float, float]] | None = None
    ir_distance_ref_m: float | None = None
    align: str = "none"
    margin: float = 0.25


@dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation (see ``edgepad.data.transforms.build_transform``).

    ``sensor_*``: another camera per sample (``edgepad.data.transforms.SensorJitter``, all off by default):
    ``sensor_ir_gain`` [lo, hi] NIR gain (log-uniform, saturating at 255 DN), ``sensor_rgb_gain`` e per-channel
    linear gain U(1 ± e), ``sensor_tone`` t_max tone-curve strength, ``sensor_blur_px`` r_max defocus radius (px),
    ``sensor_noise_dn`` σ_max read noise (DN, rgb and ir), ``sensor_depth_block`` s_max native depth block (px).
    """

    flip: float = 0.5
    crop_scale: tuple[float, float] | None = None
    cutout_px: int = 0
    jitter_offset: float = 0.0
    jitter_gamma: tuple[float, float] | None = None
    jitter_modalities: tuple[str, ...] = ("rgb", "ir")
    sensor_ir_gain: tuple[float, float] | None = None
    sensor_rgb_gain: float = 0.0
    sensor_tone: float = 0.0
    sensor_blur_px: int = 0
    sensor_noise_dn: float = 0.0
    sensor_depth_block: int = 1


@dataclass(frozen=True)
class ModelConfig:
    """``create_model(name, modalities=..., backbone=..., fusion=..., **kwargs)``."""

    name: str = "flexmodal"
    modalities: tuple[str, ...] = ("rgb", "depth", "ir")
    backbone: str = "resnet18h"
    fusion: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """``edgepad.losses.PADObjective`` options; ``center_lr`` is the learning rate of the ABC centres.

    ``gamma`` None = the kind's trained default (focal 2, cmfl 3 as in configs/cmfl_rgbd.yaml).
    """

    kind: Literal["bce", "focal", "cmfl", "abc"] = "bce"
    aux_weight: float = 0.0
    gamma: float | None = None
    alpha: float | None = None
    beta: float = 0.5
    cmfl_inner_mean: bool = True
    binary: bool = False
    partner: Literal["mean", "pairwise"] = "mean"
    detach_partner: bool = False
    lambda_c: float = 1e-5
    lambda_s: float = 1e-5
    sep_scale: float = 1e-5
    center_lr: float = 0.01


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and LR schedule (stepped per epoch)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["none", "step", "exp", "cosine"] = "none"
    step_size: int = 10
    gamma: float = 0.5


@dataclass(frozen=True)
class ExportConfig:
    """Export of ``best.pt`` (``edgepad train CONFIG --export PATH``): thresholds fitted on dev.

    ``criterion`` gives the manifest's default threshold; ``extra_criteria`` (e.g. ``["bpcer100", "eer"]``) add
    further operating points (same subsets) that the runtime can select by name. ``threshold_rule`` places each
    fitted τ off the extreme dev score (:func:`edgepad.metrics.place_threshold`: ``gap_logit`` = the logit-space
    middle of the dev gap or decision interval; ``edge`` = the criterion's τ as is); the manifest records it in
    ``training.threshold_rule`` (the runtime reads only the numbers).
    """

    criterion: str = "bpcer20"
    subsets: tuple[tuple[str, ...], ...] = DEFAULT_SUBSETS
    opset: int = 17
    extra_criteria: tuple[str, ...] = ()
    threshold_rule: str = DEFAULT_THRESHOLD_RULE

    def __post_init__(self) -> None:
        if self.threshold_rule not in THRESHOLD_RULES:
            raise ConfigError(f"unknown export.threshold_rule {self.threshold_rule!r}; known: {list(THRESHOLD_RULES)}",
                              key="export.threshold_rule")


@dataclass(frozen=True)
class TrainConfig:
    """A training run. ``out`` is the run folder (relative paths resolve against the config file)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    workers: int = 0
    #: training batches built ahead of the step: by a background thread when ``workers`` = 0 (0 = no thread, each
    #: batch built in the loop), else per worker process (DataLoader ``prefetch_factor``, ≥ 1); see
    #: ``training.loop.TrainBatches``
    prefetch: int = 2
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    select: str = "bpcer20"
    out: Path = Path("runs/train")
    log_every: int = 10
    threads: int | None = None
    max_steps_per_epoch: int | None = None
    #: before each dev evaluation, re-estimate BatchNorm statistics over this many training batches (0 = off;
    #: training.loop.recalibrate_bn)
    bn_recalibrate: int = 0
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}", key="workers")
        if self.prefetch < (1 if self.workers > 0 else 0):
            raise ConfigError(f"prefetch must be >= {1 if self.workers > 0 else 0} with workers {self.workers}, "
                              f"got {self.prefetch}", key="prefetch")


def load_train_config(path: Path | str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Load a :class:`TrainConfig` from YAML/JSON (strict keys, suggestions on typos).

    ``overrides`` are dotted keys (``{"epochs": 1, "data.root": "..."}``) applied before validation.
    """
    path = Path(path)
    data = read_mapping(path)
    for key, value in (overrides or {}).items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return from_mapping(TrainConfig, data, base=path.resolve().parent)

