"""edgepad.engines: ONNX export, FP16/INT8 conversion, TensorRT builds and inference backends."""
from edgepad.engines.backend import BaseBackend, InferenceBackend, load_backend
from edgepad.engines.manifest import InputSpec, ModelManifest, TensorSpec, read_manifest, write_manifest

__all__ = ["BaseBackend", "InferenceBackend", "load_backend", "InputSpec", "ModelManifest", "TensorSpec",
           "read_manifest", "write_manifest"]
