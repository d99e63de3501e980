"""Model manifests: the sidecar JSON (``<artifact>.json``) that travels with every ``.pt``/``.onnx``/``.engine``.

The manifest is the single source of truth for preprocessing, missing-modality fill values, thresholds
(per operating point and per modality subset), precision, and the sha256 of every artifact.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from edgepad.config import from_mapping, to_mapping
from edgepad.errors import ConfigError, EngineMismatchError, IntegrityError, ManifestError
from edgepad.specs import InputSpec, TensorSpec
from edgepad.types import Modality, parse_modalities

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
Precision = Literal["fp32", "fp16", "int8"]


def subset_key(modalities: Iterable[Modality | str]) -> str:
    """Canonical name of a modality subset, e.g. ``"rgb+depth+ir"`` (rgb, depth, ir order)."""
    ms = set(parse_modalities(list(modalities)))
    return "+".join(m.value for m in Modality if m in ms)


@dataclass(frozen=True)
class ModelManifest:
    """Sidecar manifest of a model artifact.

    Attributes:
        model: registered model name; ``model_kwargs`` recreate it with ``create_model``.
        modalities: inputs the model was trained with.
        inputs / outputs: tensor specs by name; ``score_output`` holds P(live) in [0, 1].
        threshold / threshold_criterion / threshold_split: the default operating point (fitted on dev).
        operating_points: ``{criterion: {subset_key: threshold}}`` for named operating points and degraded
            modality subsets; a subset absent here has no calibrated threshold (runtime answers unknown).
        format / precision: ``onnx|torch|tensorrt`` and ``fp32|fp16|int8``.
        onnx_sha256 / artifact_sha256: hashes of the source ONNX and of this artifact (with ``artifact_files``).
    """

    model: str
    modalities: tuple[Modality, ...]
    inputs: Mapping[str, InputSpec]
    outputs: Mapping[str, TensorSpec]
    threshold: float
    threshold_criterion: str = "bpcer20"
    threshold_split: str = "dev"
    score_output: str = "score"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    operating_points: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    format: str = "onnx"
    precision: Precision = "fp32"
    trt_version: str | None = None
    device: str | None = None
    onnx_sha256: str | None = None
    artifact_sha256: str | None = None
    artifact_files: tuple[str, ...] = ()
    calibration_set_sha256: str | None = None
    build: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", parse_modalities(self.modalities))
        _check_threshold(self.threshold, "threshold")
        if not isinstance(self.operating_points, Mapping):
            raise ManifestError("manifest operating_points must map criteria to {subset: threshold}",
                                field="operating_points")
        for crit, table in self.operating_points.items():
            if not isinstance(table, Mapping):
                raise ManifestError(f"manifest operating_points.{crit} must map modality subsets to thresholds",
                                    field=f"operating_points.{crit}")
            for key, thr in table.items():
                _check_threshold(thr, f"operating_points.{crit}.{key}")
        if self.score_output not in self.outputs:
            raise ManifestError(f"score output {self.score_output!r} is not among outputs {list(self.outputs)}",
                                field="score_output")
        for m in self.modalities:
            if m.value not in self.inputs:
                raise ManifestError(f"modality {m} has no input spec", field="inputs")

    # ------------------------------------------------------------------ thresholds
    def threshold_for(self, modalities: Iterable[Modality | str], criterion: str | None = None) -> float | None:
        """Threshold for a modality subset at an operating point; None when none was calibrated.

        The full modality set at the default criterion always has ``self.threshold``.
        """
        crit = criterion or self.threshold_criterion
        key = subset_key(modalities)
        table = self.operating_points.get(crit, {})
        if key in table:
            return float(table[key])
        if crit == self.threshold_criterion and key == subset_key(self.modalities):
            return float(self.threshold)
        return None

    def cache_key(self) -> str:
        """Engine-cache key: ONNX sha × precision × TensorRT version × device × build-config hash."""
        build_hash = hashlib.sha256(json.dumps(dict(self.build), sort_keys=True, default=str).encode()).hexdigest()
        parts = [(self.onnx_sha256 or "none")[:16], self.precision, self.trt_version or "none",
                 _slug(self.device or "none"), build_hash[:8], (self.calibration_set_sha256 or "nocal")[:8]]
        return ".".join(parts)

    def check_compatible(self, trt_version: str, device: str) -> None:
        """Refuse a plan built for another device, or for another TensorRT unless it was built version-compatible
        for a runtime like this one (:func:`version_compatible_runs`): EngineMismatchError naming the field."""
        if self.trt_version != trt_version:
            vc = bool(dict(self.build).get("version_compatible"))
            if not (vc and version_compatible_runs(str(self.trt_version), trt_version)):
                raise EngineMismatchError("trt_version", trt_version, self.trt_version)
            log.info("version-compatible plan built with TensorRT %s runs on %s", self.trt_version, trt_version)
        if self.device != device:
            raise EngineMismatchError("device", device, self.device)

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict:
        return to_mapping(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: str | None = None) -> "ModelManifest":
        if not isinstance(d, Mapping):
            raise ManifestError("manifest must be a JSON object", path=path)
        if d.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ManifestError(f"unsupported manifest schema_version {d.get('schema_version')}", path=path,
                                field="schema_version")
        try:
            return from_mapping(cls, d)
        except ConfigError as exc:
            raise ManifestError(f"{path or 'manifest'}: {exc}", path=path, field=exc.key) from exc
        except ManifestError as exc:
            if exc.path is not None or path is None:
                raise
            raise ManifestError(f"{path}: {exc}", path=path, field=exc.field) from exc

    def replace(self, **changes: Any) -> "ModelManifest":
        return replace(self, **changes)


#: the range of the score output, P(live): every threshold must lie in it (a threshold outside it makes every
#: frame live, or none)
SCORE_RANGE = (0.0, 1.0)


def _check_threshold(value: Any, name: str) -> None:
    """Raise ManifestError naming ``name`` unless ``value`` is a finite number in :data:`SCORE_RANGE`."""
    lo, hi = SCORE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
            lo <= value <= hi):
        raise ManifestError(f"manifest {name} must be a finite score threshold in [{lo:g}, {hi:g}] (P(live)), "
                            f"got {value!r}", field=name)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in s)[:40]


#: (build major, runtime major) pairs across which a version-compatible plan runs (TensorRT support matrix 11.4.1)
CROSS_MAJOR_COMPATIBLE = frozenset({(8, 9), (8, 10), (10, 11)})


def _version(v: str) -> tuple[int, ...]:
    parts = []
    for p in str(v).split(".")[:3]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def version_compatible_runs(built: str, running: str) -> bool:
    """Whether a plan built ``VERSION_COMPATIBLE`` by TensorRT ``built`` runs on TensorRT ``running``: the runtime
    is the same or later, both >= 8.6, and the majors are equal or a pair TensorRT supports (8→9, 8→10, 10→11)."""
    b, r = _version(built), _version(running)
    if b < (8, 6, 0) or r < b:
        return False
    return b[0] == r[0] or (b[0], r[0]) in CROSS_MAJOR_COMPATIBLE


def manifest_path(artifact: Path | str) -> Path:
    """Sidecar path of an artifact: ``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _combine(hexdigests: Sequence[str]) -> str:
    """The artifact hash scheme: one file's sha256; of several, the sha256 over their hex digests in order."""
    if len(hexdigests) == 1:
        return hexdigests[0]
    return hashlib.sha256("".join(hexdigests).encode()).hexdigest()


def artifact_sha256(artifact: Path | str, extra_files: Iterable[str] = ()) -> str:
    """sha256 of an artifact and its companion files (e.g. ONNX external ``.data``), in order."""
    artifact = Path(artifact)
    return _combine([sha256_file(p) for p in [artifact] + [artifact.parent / f for f in extra_files]])


def read_manifest(artifact: Path | str) -> ModelManifest:
    """Read the sidecar manifest of ``artifact``.

    Raises:
        ManifestError: missing, unparsable or invalid manifest.
    """
    mp = manifest_path(artifact)
    try:
        data = json.loads(mp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest next to {artifact} (expected {mp.name})", path=str(mp)) from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest {mp}: {exc}", path=str(mp)) from exc
    return ModelManifest.from_dict(data, path=str(mp))


def write_manifest(manifest: ModelManifest, artifact: Path | str, *, hash_artifact: bool = True) -> ModelManifest:
    """Write ``<artifact>.json``; with ``hash_artifact`` the artifact's sha256 is computed and recorded first."""
    if hash_artifact:
        manifest = manifest.replace(artifact_sha256=artifact_sha256(artifact, manifest.artifact_files))
    mp = manifest_path(artifact)
    tmp = mp.with_name(mp.name + ".tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(mp)
    return manifest


@dataclass(frozen=True)
class VerifiedArtifact:
    """An artifact's bytes (and its companions'), read once and hashed: what was checked is what is loaded.

    Attributes:
        data: the artifact file's bytes.
        sha256: the hash of exactly these bytes (:func:`artifact_sha256`'s scheme).
        companions: companion file name (relative to the artifact's folder) -> bytes, e.g. ONNX external data.
    """

    data: bytes
    sha256: str
    companions: Mapping[str, bytes] = field(default_factory=dict)


def read_verified(artifact: Path | str, manifest: ModelManifest | None = None) -> VerifiedArtifact:
    """Read ``artifact`` and its companions once, hash those bytes and compare with the manifest's sha256.

    A backend loads these bytes, never the path again, so a file swapped after this check is not run
    (docs/SERVICE.md, "Model integrity").

    Raises:
        IntegrityError: no sha256 recorded, a companion outside the folder, a file unreadable, or the hash differs.
        ManifestError: ``manifest`` not given and the sidecar missing or invalid.
    """
    artifact = Path(artifact)
    manifest = manifest or read_manifest(artifact)
    if not manifest.artifact_sha256:
        raise IntegrityError(f"manifest of {artifact} records no artifact_sha256; refusing to load",
                             field="artifact_sha256", path=str(manifest_path(artifact)))
    for f in manifest.artifact_files:
        if Path(f).is_absolute() or ".." in Path(f).parts:
            raise IntegrityError(f"manifest of {artifact} names companion {f!r} outside the artifact's folder",
                                 field="artifact_files", path=str(manifest_path(artifact)))
    try:
        data = artifact.read_bytes()
        companions = {f: (artifact.parent / f).read_bytes() for f in manifest.artifact_files}
    except OSError as exc:
        raise IntegrityError(f"cannot read artifact {artifact}: {exc}", path=str(artifact)) from exc
    actual = _combine([hashlib.sha256(b).hexdigest() for b in (data, *companions.values())])
    if actual != manifest.artifact_sha256:
        raise IntegrityError(f"{artifact}: sha256 {actual[:12]}… differs from the manifest's "
                             f"{manifest.artifact_sha256[:12]}…; refusing to load", path=str(artifact),
                             field="artifact_sha256")
    return VerifiedArtifact(data, actual, companions)


def verify_artifact(artifact: Path | str, manifest: ModelManifest | None = None) -> ModelManifest:
    """Check that ``artifact`` (and companions) hash to the manifest's ``artifact_sha256`` (:func:`read_verified`).

    Raises:
        IntegrityError: hash differs or is not recorded.
        ManifestError: manifest missing or invalid.
    """
    manifest = manifest or read_manifest(artifact)
    read_verified(artifact, manifest)
    return manifest