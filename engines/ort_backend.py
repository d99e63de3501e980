"""ONNX Runtime backend: the CPU reference, the fallback on a device, and the CUDA provider where installed.

Runs any ``.onnx`` artifact written by :mod:`edgepad.engines.export` (FP32), :func:`edgepad.engines.quantize.to_fp16`
or :func:`edgepad.engines.quantize.quantize_int8` (inputs and scores stay float32 in all three).
Needs ``onnxruntime`` (extra ``onnx``).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgepad._optional import lazy
from edgepad.engines.backend import BaseBackend
from edgepad.engines.manifest import ModelManifest
from edgepad.errors import ConfigError, EngineBuildError, ManifestError

ort = lazy("onnxruntime")
log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def default_providers() -> list[str]:
    """CUDA (when this onnxruntime build has it) then CPU."""
    available = ort.get_available_providers()
    return [p for p in (CUDA, CPU) if p in available]


class OnnxRuntimeBackend(BaseBackend):
    """Inference through an ``onnxruntime.InferenceSession``.

    Args:
        artifact: the ``.onnx`` file (its manifest already read/verified by :func:`load_backend`).
        manifest: the artifact's manifest.
        threads: intra-op threads (None = onnxruntime's default, all cores).
        providers: execution providers in priority order; None = CUDA when available, then CPU. A requested
            provider this build lacks raises ConfigError (never a silent CPU run).
        warmup: runs on zero feeds at activation (the first ORT run allocates).
        spin: let the intra-op threads busy-wait between runs (faster back-to-back calls, as in a benchmark
            loop; off by default because the runtime does other work between runs and the spinning takes its cores).

    Attributes:
        providers_used: providers of the live session (after ``activate``).
    """

    kind = "onnxruntime"

    def __init__(self, artifact: Path | str, manifest: ModelManifest, threads: int | None = None,
                 providers: Sequence[str] | None = None, warmup: int = 1, spin: bool = False) -> None:
        super().__init__(artifact, manifest)
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}", key="threads")
        self.threads = threads
        self.requested_providers = list(providers) if providers else None
        self.warmup = int(warmup)
        self.spin = bool(spin)
        self.providers_used: list[str] = []
        self._session = None
        self._out_names: list[str] = []

    def _activate_impl(self) -> None:
        providers = self.requested_providers or default_providers()
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise ConfigError(f"onnxruntime here lacks providers {missing} (has {ort.get_available_providers()})",
                              key="providers")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # ORT's pool threads otherwise busy-wait after each run, taking the cores from registration, face
        # location and crops between runs (docs/PERFORMANCE.md §1a: 1.85 -> 1.10 cores, pipeline cost p99 -27 %)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        try:
            sess = self._session_from_verified(opts, providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise EngineBuildError(f"onnxruntime cannot load {self.artifact}: {exc}") from exc
        got_in = {i.name for i in sess.get_inputs()}
        got_out = [o.name for o in sess.get_outputs()]
        if got_in != set(self.inputs):
            raise ManifestError(f"{self.artifact.name}: ONNX inputs {sorted(got_in)} differ from the manifest's "
                                f"{sorted(self.inputs)}", path=str(self.artifact), field="inputs")
        for i in sess.get_inputs():
            want = tuple(self.inputs[i.name].shape)
            got = tuple(i.shape)
            if len(got) != len(want) or any(isinstance(g, int) and g > 0 and w != -1 and g != w
                                            for g, w in zip(got, want)):
                raise ManifestError(f"{self.artifact.name}: ONNX input {i.name!r} has shape {list(got)}, the "
                                    f"manifest says {list(want)}", path=str(self.artifact), field="inputs")
        if not set(self.outputs) <= set(got_out):
            raise ManifestError(f"{self.artifact.name}: ONNX outputs {got_out} lack manifest outputs "
                                f"{sorted(set(self.outputs) - set(got_out))}", path=str(self.artifact),
                                field="outputs")
        self._session = sess
        self._out_names = [n for n in got_out if n in self.outputs]
        self.providers_used = list(sess.get_providers())
        for _ in range(self.warmup):
            self._infer_impl(self.zero_feed())

    def _session_from_verified(self, opts: object, providers: list[str]) -> object:
        """An InferenceSession of the verified bytes (never a re-open of the path that was hashed); with
        external-data companions, the verified bytes are written to a private temporary folder (mode 0700) and
        loaded from there. Unverified (``load_backend(verify=False)``): the path."""
        v = self.verified
        if v is None:
            return ort.InferenceSession(str(self.artifact), sess_options=opts, providers=providers)
        if not v.companions:
            return ort.InferenceSession(v.data, sess_options=opts, providers=providers)
        tmp = Path(tempfile.mkdtemp(prefix="edgepad-model-"))
        try:
            (tmp / self.artifact.name).write_bytes(v.data)
            for name, data in v.companions.items():
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            return ort.InferenceSession(str(tmp / self.artifact.name), sess_options=opts, providers=providers)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def zero_feed(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Feeds of zeros at the manifest's shapes (a dynamic batch axis becomes ``batch``)."""
        return {n: np.zeros(tuple(batch if s == -1 else s for s in spec.shape), np.dtype(spec.dtype))
                for n, spec in self.inputs.items()}

    def _deactivate_impl(self) -> None:
        self._session = None

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._session.run(self._out_names, {n: feed[n] for n in self.inputs})
        return {n: np.asarray(v, np.float32).reshape(-1) for n, v in zip(self._out_names, outs)}
