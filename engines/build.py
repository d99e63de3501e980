"""ONNX → TensorRT engine through the TensorRT Python API (8.6, 10.x, 11.x), cached and never loaded stale.

Version switch (docs/ENGINES.md, "How an engine is typed"):

* 8.6: ``EXPLICIT_BATCH`` network flag; weakly typed: ``BuilderFlag.FP16`` / ``INT8`` (Q/DQ ONNX) with Sigmoid,
  Softmax and the protected nodes pinned to FP32 (``OBEY_PRECISION_CONSTRAINTS``).
* 10.x (JetPack 6.x = 10.3): explicit batch implied; an FP16 ONNX (:func:`~edgepad.engines.quantize.to_fp16`) and
  an INT8 Q/DQ ONNX whose float layers are FP16 (``quantizer="modelopt"``) are built ``STRONGLY_TYPED``; an INT8
  Q/DQ ONNX with FP32 float layers (ORT's quantizer) is built weakly typed with ``INT8`` + ``FP16`` flags and the
  protected nodes pinned to FP32, so its unquantized layers run FP16, not FP32; an FP32 ONNX with
  ``precision="fp16"`` uses the FP16 flag (weak typing, deprecated from 10.12).
* 11.x: always strongly typed, no precision flags: the ONNX's precision must equal the requested one; INT8 with
  FP16 float layers needs the modelopt ONNX (an ORT Q/DQ ONNX runs its float layers in FP32, recorded as
  ``float_layers: "fp32"``).

All versions: ``build_serialized_network``, workspace pool limit, one optimisation profile with a range per
dynamic input, a persistent timing cache per device, DLA core with optional GPU fallback, version-compatible
plans. Engines go to an :class:`EngineCache` with a sidecar manifest; the key is
``onnx sha × precision × TensorRT version × device × build-config hash × calibration hash`` (ModelManifest.cache_key).
Nothing here imports TensorRT before a build is requested.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from edgepad._optional import require
from edgepad.engines.manifest import (ModelManifest, manifest_path, read_manifest, verify_artifact,
                                      write_manifest)
from edgepad.errors import (ConfigError, EngineBuildError, EngineMismatchError, IntegrityError, ManifestError,
                            PrecisionUnsupportedError)

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BuildConfig:
    """How to convert and build (one place for the defaults; loaded strictly with ``edgepad.config``).

    Attributes:
        precision: target precision; never downgraded (unsupported → PrecisionUnsupportedError).
        workspace_mib: TensorRT workspace pool limit.
        opset: ONNX opset of exports (17: TensorRT 8.6/10.x/11.x and the ORT quantizer).
        dla_core: DLA core (Jetson AGX Orin / Orin NX; TensorRT <= 10.7 or 11.4.1+); None = GPU.
        allow_gpu_fallback: let DLA-unsupported layers run on the GPU (default on: every edgepad model has such
            layers, e.g. the attention Softmax/MatMuls and the σ score); the layers that fall back are recorded
            in the engine manifest (``build.gpu_fallback_layers``).
        version_compatible: build a version-compatible plan (runs on later TensorRT with the lean runtime).
        strongly_typed: None = automatic (TRT >= 11 always; 10.x when the ONNX carries FP16/Q/DQ).
        timing_cache: timing-cache file; None = ``<cache>/timing-<device>-trt<version>.cache``.
        max_batch / opt_batch: optimisation-profile batch range for dynamic-batch ONNX (min 1).
        builder_optimization_level: TensorRT 8.6+ builder level (None = TensorRT's default 3).
        calibration: calibration data (dataset root or .npz) for INT8; calibration_samples: how many.
        keep_fp32: op types kept out of FP16/INT8 (the score head and attention islands always are).
        atol / min_cosine: optional extra gates on the score (None = reported only).
        min_decision_agreement: accuracy gate, fraction (0.995 = 99.5 %).
        max_acer_increase: accuracy gate, fraction (0.005 = 0.5 ACER point).
        refit_threshold: re-fit the converted artifact's threshold on dev (recorded in its manifest).
    """

    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    workspace_mib: int = 1024
    opset: int = 17
    dla_core: int | None = None
    allow_gpu_fallback: bool = True
    version_compatible: bool = False
    strongly_typed: bool | None = None
    timing_cache: Path | None = None
    max_batch: int = 1
    opt_batch: int = 1
    builder_optimization_level: int | None = None
    calibration: Path | None = None
    calibration_samples: int = 512
    keep_fp32: tuple[str, ...] = ("Sigmoid", "Softmax")
    atol: float | None = None
    min_cosine: float | None = None
    min_decision_agreement: float = 0.995
    max_acer_increase: float = 0.005
    refit_threshold: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            from edgepad.config import suggest
            raise ConfigError(f"unknown precision {self.precision!r}", key="precision",
                              suggestions=suggest(str(self.precision), PRECISIONS))
        if self.workspace_mib < 1:
            raise ConfigError("workspace_mib must be >= 1", key="workspace_mib")
        if not (1 <= self.opt_batch <= self.max_batch):
            raise ConfigError(f"need 1 <= opt_batch <= max_batch, got {self.opt_batch}, {self.max_batch}",
                              key="max_batch")
        if self.dla_core is not None and (self.dla_core < 0 or self.precision == "fp32"):
            raise ConfigError("DLA needs dla_core >= 0 and precision fp16 or int8", key="dla_core")
        if self.dla_core is not None and self.max_batch != self.opt_batch:
            raise ConfigError("DLA needs static shapes: set max_batch == opt_batch", key="max_batch")
        if self.dla_core is not None and not self.allow_gpu_fallback:
            log.warning("DLA without GPU fallback: the build fails on the first layer DLA cannot run (every edgepad "
                        "model has some: Sigmoid score, attention MatMul/Softmax, reshapes)")
        if not (0.0 < self.min_decision_agreement <= 1.0):
            raise ConfigError("min_decision_agreement is a fraction in (0, 1]", key="min_decision_agreement")

    def engine_settings(self) -> dict[str, Any]:
        """The fields that change the plan (hashed into the cache key)."""
        return {"precision": self.precision, "workspace_mib": self.workspace_mib, "dla_core": self.dla_core,
                "allow_gpu_fallback": self.allow_gpu_fallback, "version_compatible": self.version_compatible,
                "strongly_typed": self.strongly_typed, "max_batch": self.max_batch, "opt_batch": self.opt_batch,
                "builder_optimization_level": self.builder_optimization_level}

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.engine_settings(), sort_keys=True).encode()).hexdigest()[:16]


def trt_major(version: str) -> int:
    return int(str(version).split(".")[0])


def plan_precision_mode(onnx_precision: str, requested: str, trt_version: str,
                        strongly_typed: bool | None = None, float_dtype: str = "fp32") -> dict[str, Any]:
    """Decide how TensorRT ``trt_version`` builds ``requested`` from an ONNX of ``onnx_precision`` (pure logic).

    Args:
        float_dtype: for an INT8 Q/DQ ONNX, the type of its unquantized layers (``build.quantization.float_dtype``:
            ``fp32`` from ORT's quantizer, ``fp16`` from modelopt).

    Returns:
        ``{"strongly_typed": bool, "flags": ["FP16", "INT8", …], "pin_fp32": bool, "float_layers": str}`` where
        ``float_layers`` is the precision the unquantized layers run in (``fp32`` / ``fp16``).

    Raises:
        ConfigError: the combination cannot give the requested precision (e.g. INT8 without a Q/DQ ONNX,
            or TensorRT 11 asked for FP16 from an FP32 ONNX): the message says which conversion to run.
    """
    major = trt_major(trt_version)
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}", key="precision")
    if float_dtype not in ("fp32", "fp16"):
        raise ConfigError(f"unknown float_dtype {float_dtype!r}", key="float_dtype")
    if requested == "int8" and onnx_precision != "int8":
        raise ConfigError("INT8 engines are built from an explicit Q/DQ ONNX: run `edgepad export --precision int8 "
                          "--calib DATA` (quantize_int8) first; implicit calibrators are not used", key="precision")
    if onnx_precision not in ("fp32", requested):
        raise ConfigError(f"ONNX is {onnx_precision} but {requested} was requested; build from the matching ONNX",
                          key="precision")
    onnx_float = float_dtype if onnx_precision == "int8" else ("fp16" if onnx_precision == "fp16" else "fp32")
    if major >= 11:
        if onnx_precision != requested:
            raise ConfigError(f"TensorRT {trt_version} builds only strongly typed networks: convert the ONNX to "
                              f"{requested} first (to_fp16 / quantize_int8)", key="precision")
        return {"strongly_typed": True, "flags": [], "pin_fp32": False, "float_layers": onnx_float}
    if strongly_typed is None:
        # INT8 with FP32 float layers: weak typing + FP16 flag gives FP16 float layers (strong typing would keep FP32)
        strong = major >= 10 and onnx_precision == requested and requested != "fp32" and onnx_float == "fp16"
    else:
        strong = bool(strongly_typed)
    if strong and major < 10:
        raise ConfigError(f"strongly typed networks need TensorRT >= 10 (have {trt_version})", key="strongly_typed")
    if strong:
        if onnx_precision != requested:
            raise ConfigError("a strongly typed build runs the ONNX's own precision; convert it first",
                              key="strongly_typed")
        return {"strongly_typed": True, "flags": [], "pin_fp32": False, "float_layers": onnx_float}
    flags = []
    if requested in ("fp16", "int8"):
        flags.append("FP16")
    if requested == "int8":
        flags.append("INT8")
    return {"strongly_typed": False, "flags": flags, "pin_fp32": bool(flags),
            "float_layers": "fp16" if flags else "fp32"}


def dla_fallback_layers(network: Any, cfg: Any) -> list[str]:
    """Names of the layers of ``network`` that ``cfg`` (DLA default device) cannot place on DLA, i.e. that run on
    the GPU with ``GPU_FALLBACK`` (``IBuilderConfig.can_run_on_DLA`` per layer, before the build)."""
    return [network.get_layer(i).name for i in range(network.num_layers)
            if not cfg.can_run_on_DLA(network.get_layer(i))]


# ------------------------------------------------------------------------------------------------ cache
class EngineCache:
    """Folder of ``<cache_key>.engine`` plans, each with its sidecar ``.engine.json`` manifest.

    ``get`` returns a cached engine only if its manifest matches the expected one field by field and its bytes
    hash to ``artifact_sha256``; anything else is reported (EngineMismatchError / IntegrityError), never loaded.
    """

    FIELDS = ("onnx_sha256", "precision", "trt_version", "device", "calibration_set_sha256")

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_for(self, manifest: ModelManifest) -> Path:
        return self.root / f"{manifest.cache_key()}.engine"

    def timing_cache_path(self, trt_version: str, device: str) -> Path:
        from edgepad.engines.manifest import _slug
        return self.root / f"timing-{_slug(device)}-trt{trt_version}.cache"

    def get(self, expected: ModelManifest) -> tuple[Path, ModelManifest] | None:
        """The cached engine for ``expected`` (a manifest with trt_version/device/build filled), or None.

        Raises:
            EngineMismatchError: a plan under this key was built for something else (field named).
            IntegrityError: the plan's bytes differ from its manifest.
        """
        path = self.path_for(expected)
        if not path.exists():
            return None
        found = verify_artifact(path)
        for f in self.FIELDS:
            if getattr(found, f) != getattr(expected, f):
                raise EngineMismatchError(f, getattr(expected, f), getattr(found, f))
        if dict(found.build).get("settings_hash") != dict(expected.build).get("settings_hash"):
            raise EngineMismatchError("build", dict(expected.build).get("settings_hash"),
                                      dict(found.build).get("settings_hash"))
        return path, found

    def put(self, plan: bytes, manifest: ModelManifest, key: ModelManifest | None = None
            ) -> tuple[Path, ModelManifest]:
        """Write ``plan`` and its manifest atomically under ``key``'s cache key (default: the manifest's)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key or manifest)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(bytes(plan))
        os.replace(tmp, path)
        return path, write_manifest(manifest, path)

    def evict(self, manifest: ModelManifest) -> None:
        """Delete the plan (and manifest) stored under ``manifest``'s key."""
        path = self.path_for(manifest)
        for p in (path, manifest_path(path)):
            if p.exists():
                p.unlink()

    def entries(self) -> list[tuple[Path, ModelManifest | None]]:
        """Every ``.engine`` in the cache with its manifest (None when unreadable)."""
        out = []
        for p in sorted(self.root.glob("*.engine")):
            try:
                out.append((p, read_manifest(p)))
            except ManifestError:
                out.append((p, None))
        return out

    def stale(self, onnx_sha256: str, trt_version: str, device: str) -> list[Path]:
        """Engines of the same ONNX built for another TensorRT version or device (candidates for removal)."""
        return [p for p, m in self.entries() if m is not None and m.onnx_sha256 == onnx_sha256
                and (m.trt_version, m.device) != (trt_version, device)]


# ------------------------------------------------------------------------------------------------ build
def engine_manifest(onnx_manifest: ModelManifest, config: BuildConfig, trt_version: str, device: str,
                    mode: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> ModelManifest:
    """The manifest an engine built from ``onnx_manifest`` with ``config`` will carry (pure logic)."""
    dev = device + (f" DLA{config.dla_core}" if config.dla_core is not None else "")
    inputs = onnx_manifest.inputs
    build = {"settings_hash": config.settings_hash(), **config.engine_settings(),
             "strongly_typed_effective": bool(mode["strongly_typed"]), "flags": list(mode["flags"]),
             "pin_fp32": bool(mode["pin_fp32"]), "float_layers": mode.get("float_layers"),
             "onnx_precision": onnx_manifest.precision,
             "source_build": dict(onnx_manifest.build), **dict(extra or {})}
    return onnx_manifest.replace(format="tensorrt", precision=config.precision, trt_version=trt_version,
                                 device=dev, inputs=inputs, build=build, artifact_sha256=None,
                                 artifact_files=(), onnx_sha256=onnx_manifest.artifact_sha256)


def device_string(memory: Any | None = None) -> str:
    """Name + compute capability of CUDA device 0 (creates a CudaMemory unless one is given)."""
    if memory is not None:
        return memory.device_name()
    from edgepad.engines.cuda_mem import CudaMemory
    with CudaMemory() as mem:
        return mem.device_name()


def build_engine(onnx_path: Path | str, config: BuildConfig | None = None, cache: EngineCache | Path | str | None = None,
                 *, rebuild: Literal["never", "on_mismatch", "always"] = "on_mismatch") -> tuple[Path, ModelManifest]:
    """Build (or fetch from the cache) the TensorRT engine of ``onnx_path``.

    Args:
        onnx_path: ONNX with its manifest (FP32, FP16 from to_fp16, or INT8 Q/DQ from quantize_int8).
        config: build settings (default BuildConfig(): FP16).
        cache: engine cache folder (default ``<onnx dir>/engines``).
        rebuild: ``on_mismatch`` rebuilds a cached plan that is stale or altered; ``never`` raises instead;
            ``always`` rebuilds.

    Returns:
        (engine path, its manifest). The engine is not validated here: run :func:`validate_artifact` against the
        ONNX on held-out feeds (``edgepad build --validate`` does).

    Raises:
        MissingDependencyError: TensorRT / cuda-python missing. PrecisionUnsupportedError: FP16/INT8/DLA not on
        this device. EngineMismatchError: a cached plan mismatches and ``rebuild="never"``. EngineBuildError:
        parse or build failure (parser errors listed).
    """
    config = config or BuildConfig()
    onnx_path = Path(onnx_path)
    onnx_manifest = verify_artifact(onnx_path)
    if onnx_manifest.format != "onnx":
        raise ConfigError(f"{onnx_path.name} is not an ONNX artifact ({onnx_manifest.format})", key="onnx")
    cache = cache if isinstance(cache, EngineCache) else EngineCache(cache or onnx_path.parent / "engines")
    trt = require("tensorrt", extra="trt")
    version = str(trt.__version__)
    float_dtype = dict(dict(onnx_manifest.build).get("quantization") or {}).get("float_dtype", "fp32")
    mode = plan_precision_mode(onnx_manifest.precision, config.precision, version, config.strongly_typed,
                               float_dtype)
    from edgepad.engines.cuda_mem import CudaMemory
    with CudaMemory() as mem:
        device = mem.device_name()
    expected = engine_manifest(onnx_manifest, config, version, device, mode)
    if rebuild != "always":
        try:
            hit = cache.get(expected)
        except (EngineMismatchError, IntegrityError, ManifestError) as exc:
            if rebuild == "never":
                raise
            log.warning("cached engine for %s unusable (%s): rebuilding", onnx_path.name, exc)
            cache.evict(expected)
            hit = None
        if hit is not None:
            log.info("engine cache hit %s", hit[0].name)
            return hit
    for p in cache.stale(expected.onnx_sha256 or "", version, expected.device or ""):
        log.info("cache holds %s built for another TensorRT/device; it will not be loaded here", p.name)
    plan, extra = _build_plan(trt, onnx_path, onnx_manifest, config, mode, cache, version, device)
    manifest = expected.replace(build={**dict(expected.build), **extra})
    return cache.put(plan, manifest, key=expected)


def _build_plan(trt: Any, onnx_path: Path, onnx_manifest: ModelManifest, config: BuildConfig,
                mode: Mapping[str, Any], cache: EngineCache, version: str, device: str) -> tuple[bytes, dict]:
    major = trt_major(version)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if builder is None:
        raise EngineBuildError("TensorRT could not create a builder (no usable GPU?)")
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if mode["strongly_typed"] and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {version} cannot parse {onnx_path.name}: " + "; ".join(errors[:5]))
    cfg = builder.create_builder_config()
    cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_mib) << 20)
    if config.builder_optimization_level is not None:
        cfg.builder_optimization_level = int(config.builder_optimization_level)
    for name in mode["flags"]:
        if name == "FP16" and hasattr(builder, "platform_has_fast_fp16") and not builder.platform_has_fast_fp16:
            raise PrecisionUnsupportedError("fp16", device)
        if name == "INT8" and hasattr(builder, "platform_has_fast_int8") and not builder.platform_has_fast_int8:
            raise PrecisionUnsupportedError("int8", device)
        cfg.set_flag(getattr(trt.BuilderFlag, name))
    pinned = []
    fallback: list[str] = []
    if mode["pin_fp32"]:
        pinned = _pin_fp32(trt, network, onnx_manifest, config.keep_fp32)
        cfg.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if config.dla_core is not None:
        n_dla = int(getattr(builder, "num_DLA_cores", 0))
        if config.dla_core >= n_dla:
            raise PrecisionUnsupportedError(f"{config.precision} on DLA core {config.dla_core}",
                                            f"{device} ({n_dla} DLA cores)")
        cfg.default_device_type = trt.DeviceType.DLA
        cfg.DLA_core = int(config.dla_core)
        if config.allow_gpu_fallback:
            cfg.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        fallback = dla_fallback_layers(network, cfg)
        if fallback and not config.allow_gpu_fallback:
            raise EngineBuildError(f"{len(fallback)} layers cannot run on DLA and GPU fallback is off: "
                                   + ", ".join(fallback[:10]))
        log.info("DLA core %d: %d of %d layers fall back to the GPU: %s", config.dla_core, len(fallback),
                 network.num_layers, ", ".join(fallback[:20]))
    if config.version_compatible:
        cfg.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    profiles = _add_profile(trt, builder, network, cfg, config)
    tc_path = Path(config.timing_cache) if config.timing_cache else cache.timing_cache_path(version, device)
    blob = tc_path.read_bytes() if tc_path.exists() else b""
    timing_cache = cfg.create_timing_cache(blob)
    cfg.set_timing_cache(timing_cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, cfg)
    if plan is None:
        raise EngineBuildError(f"TensorRT {version} failed to build {onnx_path.name} ({config.precision}); "
                               "see the TensorRT log above")
    tc_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tc_path.with_name(tc_path.name + ".tmp")
    tmp.write_bytes(bytes(cfg.get_timing_cache().serialize()))
    os.replace(tmp, tc_path)
    extra = {"profiles": profiles, "pinned_fp32_layers": pinned, "gpu_fallback_layers": fallback,
             "timing_cache": tc_path.name,
             "timing_cache_reused": bool(blob), "trt_major": major}
    return bytes(plan), extra


def _pin_fp32(trt: Any, network: Any, onnx_manifest: ModelManifest, keep_ops: tuple[str, ...]) -> list[str]:
    """Weakly typed builds: pin Sigmoid/Softmax layers and the ONNX's FP32-kept nodes to FP32."""
    build = dict(onnx_manifest.build)
    keep_names = set(build.get("fp32_nodes", [])) | set(dict(build.get("quantization", {})).get("excluded_nodes", []))
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = layer.type
        hit = kind == trt.LayerType.SOFTMAX and "Softmax" in keep_ops
        if kind == trt.LayerType.ACTIVATION and "Sigmoid" in keep_ops:
            layer.__class__ = trt.IActivationLayer  # the subclass exposes the activation kind as `.type`
            hit = layer.type == trt.ActivationType.SIGMOID
        hit = hit or any(n and layer.name.startswith(n) for n in keep_names)
        if hit and kind not in (trt.LayerType.CONSTANT, trt.LayerType.SHAPE):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                if layer.get_output(j).dtype in (trt.float32, trt.float16):
                    layer.set_output_type(j, trt.float32)
            pinned.append(layer.name)
    return pinned


def _add_profile(trt: Any, builder: Any, network: Any, cfg: Any, config: BuildConfig) -> dict[str, list]:
    profile = None
    shapes: dict[str, list] = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = tuple(t.shape)
        if all(d >= 0 for d in shape):
            continue
        if any(d < 0 for d in shape[1:]):
            raise EngineBuildError(f"input {t.name} has a dynamic non-batch axis {shape}; export with fixed S")
        profile = profile or builder.create_optimization_profile()
        mn, opt, mx = ((b, *shape[1:]) for b in (1, config.opt_batch, config.max_batch))
        profile.set_shape(t.name, mn, opt, mx)
        shapes[t.name] = [list(mn), list(opt), list(mx)]
    if profile is not None:
        cfg.add_optimization_profile(profile)
    return shapes


def config_dict(config: BuildConfig) -> dict[str, Any]:
    d = asdict(config)
    d["timing_cache"] = str(config.timing_cache) if config.timing_cache else None
    d["calibration"] = str(config.calibration) if config.calibration else None
    return d


__all__ = ["BuildConfig", "EngineCache", "build_engine", "plan_precision_mode", "engine_manifest", "config_dict",
           "device_string", "dla_fallback_layers"]
