"""Model registry (needs torch): ``register_model`` / ``create_model`` / ``list_models``.

A registered factory takes ``modalities``, ``backbone``, ``fusion`` and method options; ``create_model`` records the
name and the keyword arguments on the module (``model.edgepad_spec``) so a checkpoint or manifest can rebuild it:
``create_model(spec["model"], **spec["model_kwargs"])``.
"""
from __future__ import annotations

from typing import Any, Callable

from edgepad.config import suggest
from edgepad.errors import ConfigError
from edgepad.types import parse_modalities

_MODELS: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable:
    """Decorator registering ``fn(*, modalities, backbone, fusion, **kw) -> nn.Module`` under ``name``."""
    def deco(fn: Callable) -> Callable:
        _MODELS[name] = fn
        return fn
    return deco


def _ensure_builtin() -> None:
    import edgepad.models.fas  # noqa: F401  (registers the built-in factories; needs torch, so imported on use)


def list_models() -> list[str]:
    """Names of the registered models (``cmfl``, ``flexmodal``, ``multilayer`` …)."""
    _ensure_builtin()
    return sorted(_MODELS)


def create_model(name: str, *, modalities=("rgb", "depth", "ir"), backbone: str = "resnet18h",
                 fusion: str | None = None, **kw: Any):
    """Build a registered multi-modal PAD model.

    Args:
        name: registered model (see :func:`list_models`).
        modalities: input modality names; RGB first when present.
        backbone: trunk name (``resnet18h`` | ``mobilenetv2`` | ``densenet``).
        fusion: fusion kind (``late`` | ``concat`` | ``se`` | ``xattn`` | ``mwb``); None = the method's default.
        **kw: method options (e.g. ``backbone_kwargs``, ``modality_dropout``, ``missing_fill``).

    Returns:
        an ``nn.Module`` whose ``forward({"rgb": B×3×S×S, "depth": B×1×S×S, "ir": B×1×S×S})`` returns
        ``{"logit": (B,), "logit_<m>": (B,) (per-modality heads), "embedding": (B, D)}``.

    Raises:
        ConfigError: unknown model name (with suggestions) or invalid options.

    Example:
        >>> m = create_model("flexmodal", fusion="se", backbone_kwargs={"width": 8})
    """
    _ensure_builtin()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {sorted(_MODELS)}", key="model",
                          suggestions=suggest(name, _MODELS))
    mods = tuple(m.value for m in parse_modalities(modalities))
    kwargs = dict(kw)
    try:
        model = _MODELS[name](modalities=mods, backbone=backbone, fusion=fusion, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}", key="model_kwargs") from exc
    spec_kwargs = {"modalities": list(mods), "backbone": backbone, "fusion": fusion, **kwargs}
    model.edgepad_spec = {"model": name, "model_kwargs": _plain(spec_kwargs)}
    return model


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
