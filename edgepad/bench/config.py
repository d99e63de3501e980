"""What the device benchmark runs: :class:`DeviceBenchConfig` and the model artifact (resolved, described)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepad.assets import default_model_path
from edgepad.config import suggest
from edgepad.engines.manifest import manifest_path, read_manifest, sha256_file
from edgepad.errors import ConfigError, EdgePadError


@dataclass(frozen=True)
class DeviceBenchConfig:
    """Settings of one device-benchmark run (``edgepad bench``; recorded in the JSON).

    Attributes:
        source: source URI (``synthetic://default``, a recording, ``realsense://``).
        model: model artifact (``.onnx``/``.engine``/``.pt`` with its manifest); None = the embedded default.
        backend: ``auto|onnxruntime|trt|torch``.
        warmup_s: warm-up time whose decisions are discarded (at least one decision is).
        budget_s: measurement time; frames: stop after this many measured decisions (0 = budget only).
        clip_k: k of the k-sigma outlier clipping reported beside raw figures (None = off).
        locator: face locator (``learned`` default, ``haar``, ``truth``, ``fixed:x,y,w,h``).
        threads: ONNX Runtime intra-op threads (None = all cores).
        threaded: run the pipeline's threaded mode.
        components: run the component benchmarks; component_s: time per component measurement.
        soak_min: thermal soak length in minutes (0 = off; replaces ``budget_s``); soak_bucket_s: bucket length.
        peak_gflops: override of the CPU peak estimate.
        results: metrics.json files of ``edgepad evaluate`` runs (ACER in the model table).
        table_models: further ONNX artifacts for the model table.
        seed_models: include the seed methods' edge configurations in the model table (needs torch).
        int8_samples: calibration feeds used for the INT8 timing variant.
        plots: write PNG plots (needs matplotlib).
    """

    source: str = "synthetic://default"
    model: str | None = None
    backend: str = "auto"
    warmup_s: float = 3.0
    budget_s: float = 20.0
    frames: int = 0
    clip_k: float | None = None
    locator: str = "learned"
    threads: int | None = None
    threaded: bool = False
    components: bool = False
    component_s: float = 2.0
    soak_min: float = 0.0
    soak_bucket_s: float = 60.0
    peak_gflops: float | None = None
    results: tuple[str, ...] = ()
    table_models: tuple[str, ...] = ()
    seed_models: bool = True
    int8_samples: int = 16
    plots: bool = True

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "onnxruntime", "trt", "torch"):
            raise ConfigError(f"unknown backend {self.backend!r}", key="backend",
                              suggestions=suggest(self.backend, ("auto", "onnxruntime", "trt", "torch")))
        if self.warmup_s < 0 or self.budget_s <= 0 or self.frames < 0:
            raise ConfigError("need warmup_s >= 0, budget_s > 0 and frames >= 0", key="budget_s")
        if self.soak_min < 0 or self.soak_bucket_s <= 0 or self.component_s <= 0:
            raise ConfigError("need soak_min >= 0, soak_bucket_s > 0 and component_s > 0", key="soak_min")
        if self.clip_k is not None and not self.clip_k > 0:
            raise ConfigError("clip_outliers k must be > 0", key="clip_outliers")


def resolve_model(model: str | Path | None) -> Path:
    """The artifact to benchmark: ``model`` or the embedded default (ConfigError when neither exists)."""
    path = Path(model) if model else default_model_path()
    if not path.exists():
        what = "the embedded default model" if not model else "model"
        raise ConfigError(f"{what} {path} does not exist; pass --model PATH (an .onnx/.engine/.pt with its "
                          "manifest)", key="model")
    return path


def manifest_info(path: Path) -> dict[str, Any]:
    """Path, sha256 of the artifact and of its manifest, and the manifest's model / precision / inputs (recorded in
    the result; ``manifest_error`` instead of the manifest fields when it cannot be read)."""
    info: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path) if path.exists() else None}
    mp = manifest_path(path)
    info["manifest_path"] = str(mp)
    info["manifest_sha256"] = sha256_file(mp) if mp.exists() else None
    try:
        man = read_manifest(path)
        info.update({"model": man.model, "precision": man.precision, "format": man.format,
                     "modalities": [m.value for m in man.modalities], "onnx_sha256": man.onnx_sha256,
                     "artifact_sha256": man.artifact_sha256, "threshold": man.threshold,
                     "inputs": {k: list(v.shape) for k, v in man.inputs.items()}})
    except EdgePadError as exc:
        info["manifest_error"] = str(exc)
    return info
