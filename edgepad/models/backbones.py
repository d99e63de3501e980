"""Convolutional trunks written for edgepad (needs torch): half-width ResNet-18, MobileNetV2-style, DenseNet-style.

Every trunk is a ``Backbone``: a ``stem`` (built by :meth:`Backbone.make_stem` for any number of input channels, so
depth and IR get 1-channel stems) followed by ``stages`` (an ``nn.ModuleList``). ``forward_features`` returns the
output of every stage; ``channels[i]`` / ``strides[i]`` describe stage ``i``. Fusion models pick stages by index.

Shapes (resnet18h, 112 px input, width 32): stem 32×28×28 (stride 4), stages 32×28×28, 64×14×14, 128×7×7,
256×4×4 (strides 4/8/16/32).
"""
from __future__ import annotations

from typing import Callable, Sequence

from edgepad._optional import require

require("torch")  # torch-only module: fail with MissingDependencyError naming the extra

import torch
from torch import nn

from edgepad.config import suggest
from edgepad.errors import ConfigError, ShapeError

BACKBONES: dict[str, Callable[..., "Backbone"]] = {}


def register_backbone(name: str) -> Callable:
    """Decorator: register a backbone factory ``fn(in_chans, **kw) -> Backbone`` under ``name``."""
    def deco(fn: Callable) -> Callable:
        BACKBONES[name] = fn
        return fn
    return deco


def create_backbone(name: str, in_chans: int = 3, **kw) -> "Backbone":
    """Build a registered backbone.

    Args:
        name: ``resnet18h`` | ``mobilenetv2`` | ``densenet`` (see :data:`BACKBONES`).
        in_chans: input channels of the stem (3 for RGB, 1 for depth / IR).
        **kw: backbone options (e.g. ``width``, ``num_stages``).

    Raises:
        ConfigError: unknown backbone name (with suggestions).
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}", key="backbone",
                          suggestions=suggest(name, BACKBONES))
    return BACKBONES[name](in_chans=in_chans, **kw)


def adapt_stem_weight(weight: torch.Tensor, in_chans: int, mode: str = "mean") -> torch.Tensor:
    """Adapt a pretrained RGB stem kernel ``(C_out, 3, k, k)`` to ``in_chans`` inputs.

    ``mode="mean"`` averages over the input channels (CMFL), ``"sum"`` sums them (timm); for ``in_chans > 1``
    the 1-channel kernel is repeated and divided by ``in_chans`` so that a replicated grey image gives the same
    response as the sum.
    """
    if weight.dim() != 4:
        raise ShapeError("stem weight", "(C_out, C_in, k, k)", tuple(weight.shape))
    one = weight.mean(dim=1, keepdim=True) if mode == "mean" else weight.sum(dim=1, keepdim=True)
    if in_chans == 1:
        return one
    return one.repeat(1, in_chans, 1, 1) / in_chans


class Backbone(nn.Module):
    """Base class: ``stem`` + ``stages``; ``forward_features(x) -> list of stage outputs``.

    Attributes:
        stem_channels: channels out of the stem.
        channels: output channels per stage.
        strides: total stride per stage output (relative to the input).
    """

    stem_channels: int
    channels: tuple[int, ...]
    strides: tuple[int, ...]

    def make_stem(self, in_chans: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor, stem: nn.Module | None = None,
                         upto: int | None = None) -> list[torch.Tensor]:
        """Stage outputs for ``x`` (B×C×H×W); ``stem`` overrides the own stem (shared-trunk use), ``upto``
        stops after that many stages."""
        x = (stem or self.stem)(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if upto is not None and i >= upto:
                break
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1]


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------- ResNet

class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs with BN, identity or 1×1/stride shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class ResNet(Backbone):
    """ResNet-18 layout with configurable width (``width=32`` = half width: 32/64/128/256 channels).

    Args:
        in_chans: stem input channels.
        width: channels of the first stage; stage i has ``width·2^i``.
        blocks: basic blocks per stage (ResNet-18: 2, 2, 2, 2).
    """

    def __init__(self, in_chans: int = 3, width: int = 32, blocks: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.width = int(width)
        self.stem_channels = self.width
        chans = [self.width * 2 ** i for i in range(len(blocks))]
        self.channels = tuple(chans)
        self.strides = tuple(4 * 2 ** i for i in range(len(blocks)))
        self.stem = self.make_stem(in_chans)
        stages, cin = [], self.width
        for i, (n, c) in enumerate(zip(blocks, chans)):
            layers = [BasicBlock(cin, c, 1 if i == 0 else 2)] + [BasicBlock(c, c) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = c
        self.stages = nn.ModuleList(stages)
        _init_weights(self)

    def make_stem(self, in_chans: int) -> nn.Module:
        """7×7/2 conv → BN → ReLU → 3×3/2 max-pool (stride 4)."""
        stem = nn.Sequential(nn.Conv2d(in_chans, self.width, 7, 2, 3, bias=False), nn.BatchNorm2d(self.width),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        _init_weights(stem)
        return stem


@register_backbone("resnet18h")
def resnet18h(in_chans: int = 3, width: int = 32, blocks: Sequence[int] = (2, 2, 2, 2)) -> ResNet:
    """Half-width ResNet-18 (32/64/128/256 channels): ≈0.16 GMAC per branch at 128 px."""
    return ResNet(in_chans, width, blocks)


# -------------------------------------------------------------------------------------------- MobileNetV2

class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand → 3×3 depthwise → 1×1 linear projection, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _make_div(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


class MobileNetV2(Backbone):
    """MobileNetV2-style trunk; stages end at strides 4/8/16/32.

    Args:
        in_chans: stem input channels.
        width_mult: channel multiplier (1.0 → 24/32/96/320 stage channels).
        expand: expansion ratio of the inverted residuals.
    """

    #: (expansion override or None, out channels, repeats, stride) per stage, after the stem
    _CFG = (((16, 1, 1), (24, 2, 2)), ((32, 3, 2),), ((64, 4, 2), (96, 3, 1)), ((160, 3, 2), (320, 1, 1)))

    def __init__(self, in_chans: int = 3, width_mult: float = 1.0, expand: int = 6) -> None:
        super().__init__()
        self.width_mult = float(width_mult)
        self.stem_channels = _make_div(32 * self.width_mult)
        self.stem = self.make_stem(in_chans)
        stages, cin, chans = [], self.stem_channels, []
        for groups in self._CFG:
            layers: list[nn.Module] = []
            for c, n, s in groups:
                cout = _make_div(c * self.width_mult)
                for j in range(n):
                    layers.append(InvertedResidual(cin, cout, s if j == 0 else 1, 1 if c == 16 else expand))
                    cin = cout
            stages.append(nn.Sequential(*layers))
            chans.append(cin)
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(chans)
        self.strides = (4, 8, 16, 32)
        _init_weights(self)

    def make_stem(self, in_chans: int) -> nn.Module:
        """3×3/2 conv → BN → ReLU6 (stride 2; the first stage adds the second stride)."""
        stem = nn.Sequential(nn.Conv2d(in_chans, self.stem_channels, 3, 2, 1, bias=False),
                             nn.BatchNorm2d(self.stem_channels), nn.ReLU6(inplace=True))
        _init_weights(stem)
        return stem


@register_backbone("mobilenetv2")
def mobilenetv2(in_chans: int = 3, width_mult: float = 1.0, expand: int = 6) -> MobileNetV2:
    """MobileNetV2-style trunk (inverted residuals, ReLU6, linear bottlenecks)."""
    return MobileNetV2(in_chans, width_mult, expand)


# ----------------------------------------------------------------------------------------------- DenseNet

class DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv (bottleneck ``bn_size·growth``) → BN-ReLU-3×3 conv (``growth``); output concatenated."""

    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        mid = bn_size * growth
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
                                  nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, growth, 3, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(Backbone):
    """DenseNet-style trunk as in the CMFL reference: stem, dense blocks each followed by a transition.

    The reference configuration (DenseNet-161 truncated after transition 2) is ``init_features=96, growth=48,
    bn_size=4, block_config=(6, 12)``: 384×56×56 → 192×28×28 → 768×28×28 → **384×14×14** at 224 px.

    Args:
        in_chans: stem input channels.
        init_features: stem channels.
        growth: growth rate of each dense layer.
        bn_size: bottleneck multiplier.
        block_config: dense layers per block; each block is followed by a transition (1×1 conv halving the
            channels, 2×2 average pool).
    """

    def __init__(self, in_chans: int = 3, init_features: int = 96, growth: int = 48, bn_size: int = 4,
                 block_config: Sequence[int] = (6, 12)) -> None:
        super().__init__()
        self.init_features = int(init_features)
        self.stem_channels = self.init_features
        self.stem = self.make_stem(in_chans)
        stages, c, chans = [], self.init_features, []
        for n in block_config:
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(DenseLayer(c, growth, bn_size))
                c += growth
            out = c // 2
            layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, out, 1, bias=False), nn.AvgPool2d(2)]
            stages.append(nn.Sequential(*layers))
            c = out
            chans.append(c)
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(chans)
        self.strides = tuple(8 * 2 ** i for i in range(len(block_config)))
        _init_weights(self)

    def make_stem(self, in_chans: int) -> nn.Module:
        """7×7/2 conv (no bias) → BN → ReLU → 3×3/2 max-pool."""
        stem = nn.Sequential(nn.Conv2d(in_chans, self.init_features, 7, 2, 3, bias=False),
                             nn.BatchNorm2d(self.init_features), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        _init_weights(stem)
        return stem


@register_backbone("densenet")
def densenet(in_chans: int = 3, init_features: int = 96, growth: int = 48, bn_size: int = 4,
             block_config: Sequence[int] = (6, 12)) -> DenseNet:
    """DenseNet-161-style trunk truncated after transition 2 (the CMFL reference stream)."""
    return DenseNet(in_chans, init_features, growth, bn_size, block_config)
