"""PyTorch backend for ``.pt`` training checkpoints: CPU or CUDA, FP32 or FP16, optional CUDA graph.

A checkpoint ``{"model", "model_kwargs", "state_dict", "inputs", …}`` is rebuilt by
``edgepad.models.checkpoint.load_checkpoint`` (allow-listed unpickling, docs/MODELS.md); scores are σ(logit)
exactly as the exported ONNX computes them. :func:`write_checkpoint_manifest` gives a checkpoint the sidecar
manifest that :func:`load_backend` requires. Needs ``torch``. The checkpoint is unpickled only after
:func:`load_backend` verified its sha256.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgepad._optional import lazy
from edgepad.engines.backend import BaseBackend
from edgepad.engines.manifest import ModelManifest, TensorSpec, write_manifest
from edgepad.errors import ConfigError, PrecisionUnsupportedError
from edgepad.models.checkpoint import load_checkpoint
from edgepad.types import Modality

torch = lazy("torch")

log = logging.getLogger(__name__)


def write_checkpoint_manifest(path: Path | str, *, threshold: float, threshold_criterion: str,
                              operating_points: Mapping[str, Mapping[str, float]] | None = None,
                              training: Mapping[str, Any] | None = None) -> ModelManifest:
    """Write ``<checkpoint>.json`` so the checkpoint can be opened with :func:`load_backend` (kind ``torch``)."""
    model, inputs, ck = load_checkpoint(path)
    names = [m.value for m in Modality if m.value in inputs]
    inputs = {n: replace(inputs[n], shape=(-1, *tuple(inputs[n].shape)[1:])) for n in names}   # any batch
    feed = {n: torch.zeros((1, *tuple(inputs[n].shape)[1:])) for n in names}
    with torch.no_grad():
        out = model(feed)
    heads = [m for m in names if f"logit_{m}" in out]
    outputs = {"score": TensorSpec("score", (-1,))} | {f"score_{m}": TensorSpec(f"score_{m}", (-1,)) for m in heads}
    manifest = ModelManifest(model=ck["model"], modalities=tuple(names), inputs=inputs, outputs=outputs,
                             threshold=float(threshold), threshold_criterion=threshold_criterion,
                             model_kwargs=dict(ck["model_kwargs"]),
                             operating_points={k: dict(v) for k, v in (operating_points or {}).items()},
                             format="torch", precision="fp32", training=dict(training or {}))
    return write_manifest(manifest, path)


class TorchBackend(BaseBackend):
    """Inference with the PyTorch model of a checkpoint.

    Args:
        artifact: ``.pt`` checkpoint with a manifest.
        manifest: its manifest.
        device: ``cpu`` or ``cuda[:i]``.
        fp16: run in half precision (CUDA only; on CPU raises PrecisionUnsupportedError — never downgraded).
        cuda_graph: capture the forward into a CUDA graph (CUDA, static shapes).
        threads: torch intra-op threads on CPU (None = torch's default).
    """

    kind = "torch"

    def __init__(self, artifact: Path | str, manifest: ModelManifest, device: str = "cpu", fp16: bool = False,
                 cuda_graph: bool = False, threads: int | None = None) -> None:
        super().__init__(artifact, manifest)
        self.device = str(device)
        self.fp16 = bool(fp16)
        self.cuda_graph = bool(cuda_graph)
        self.threads = threads
        self._model = None
        self._graph = None

    def _activate_impl(self) -> None:
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} requested but torch sees no CUDA GPU", key="device")
        if self.fp16 and not self.device.startswith("cuda"):
            raise PrecisionUnsupportedError("fp16", self.device)
        if self.cuda_graph and not self.device.startswith("cuda"):
            raise ConfigError("CUDA graphs need device='cuda'", key="cuda_graph")
        if self.threads:
            torch.set_num_threads(int(self.threads))
        model, _, _ = load_checkpoint(self.artifact, "cpu")
        model = model.to(self.device)
        if self.fp16:
            model = model.half()
        self._model = model
        self._dtype = torch.float16 if self.fp16 else torch.float32
        self._heads = [n[len("score_"):] for n in self.outputs if n.startswith("score_")]
        if self.cuda_graph:
            if any(-1 in spec.shape for spec in self.inputs.values()):
                raise ConfigError("CUDA graphs need static input shapes", key="cuda_graph")
            self._static_in = {n: torch.zeros(spec.shape, dtype=self._dtype, device=self.device)
                               for n, spec in self.inputs.items()}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):
                    self._forward(self._static_in)
            torch.cuda.current_stream().wait_stream(stream)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph), torch.inference_mode():
                self._static_out = self._forward(self._static_in)

    def _forward(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        out = self._model(dict(feed))
        res = {"score": torch.sigmoid(out["logit"].reshape(-1).float())}
        for m in self._heads:
            res[f"score_{m}"] = torch.sigmoid(out[f"logit_{m}"].reshape(-1).float())
        return res

    def _infer_impl(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._graph is not None:
            for n, t in self._static_in.items():
                t.copy_(torch.from_numpy(feed[n]))
            self._graph.replay()
            out = self._static_out
        else:
            with torch.inference_mode():
                tens = {n: torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device, self._dtype)
                        for n in self.inputs}
                out = self._forward(tens)
        return {k: v.detach().cpu().numpy().astype(np.float32, copy=False) for k, v in out.items()}

    def _deactivate_impl(self) -> None:
        self._model = None
        self._graph = None
