"""The one reader of training checkpoints (``.pt`` files written by ``edgepad.training``; see docs/MODELS.md).

A checkpoint is a dict ``{"model", "model_kwargs", "state_dict", "inputs", "objective", "optimizer",
"scheduler", "scaler", "epoch", "best", "rng", "config"}``; only the first four are needed to rebuild the network
(``edgepad.models.registry.create_model(ck["model"], **ck["model_kwargs"])``).

Reading never runs pickled code: ``torch.load(..., weights_only=True)`` with an allow-list of the few non-tensor
types a checkpoint legitimately holds (numpy arrays, dtypes and scalars: the numpy RNG state of ``rng``). Anything
else is refused with :class:`~edgepad.errors.CheckpointError` before it is constructed. Needs ``torch`` when
called; importable without it.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgepad._optional import lazy
from edgepad.config import from_mapping
from edgepad.errors import CheckpointError
from edgepad.models.registry import create_model
from edgepad.specs import InputSpec

torch = lazy("torch")

#: the keys a checkpoint must have to rebuild its network
MODEL_KEYS = ("model", "model_kwargs", "state_dict", "inputs")


def _numpy_globals() -> list[Any]:
    """numpy's pickle entry points for arrays, dtypes and scalars (no object dtype). Under numpy 2 the numpy 1.x
    names (``numpy.core.multiarray.*``, what a checkpoint written with numpy 1.x refers to) map to the same
    functions."""
    try:
        from numpy._core import multiarray
        legacy = True
    except ImportError:    # numpy < 2
        from numpy.core import multiarray
        legacy = False
    dtypes = {type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"}
    out: list[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar, *sorted(dtypes, key=str)]
    if legacy:
        out += [(multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                (multiarray.scalar, "numpy.core.multiarray.scalar")]
    return out


def read_checkpoint(path: Path | str, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path``, unpickled with the allow-list (tensors on ``map_location``).

    Raises:
        CheckpointError: unreadable file, a pickled object outside the allow-list (its code is never run), not a
            mapping, or one of :data:`MODEL_KEYS` missing.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ck = torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        refused = next((ln for ln in lines if "GLOBAL" in ln or "but got" in ln), None)
        if refused is None:     # not a pickle torch can read (truncated, corrupt, another format)
            detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[-1] if lines else exc)
            raise CheckpointError(f"{path}: cannot read checkpoint: {detail}", path=str(path)) from exc
        raise CheckpointError(f"{path}: refused to unpickle: the checkpoint holds objects other than tensors, "
                              f"plain containers and numpy arrays; its code was not run ({refused})",
                              path=str(path)) from exc
    except (OSError, RuntimeError, EOFError, ValueError, struct.error) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}", path=str(path)) from exc
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path}: a checkpoint is a dict, got {type(ck).__name__}", path=str(path))
    missing = [k for k in MODEL_KEYS if k not in ck]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}", path=str(path), field=missing[0])
    return ck


def load_checkpoint(path: Path | str, map_location: Any = "cpu") -> tuple[Any, dict[str, InputSpec], dict]:
    """Rebuild the network of a checkpoint: ``(model in eval mode on CPU, {name: InputSpec}, checkpoint dict)``.

    Raises:
        CheckpointError: see :func:`read_checkpoint`; ConfigError: unknown model name or options.
    """
    ck = read_checkpoint(path, map_location)
    model = create_model(ck["model"], **dict(ck["model_kwargs"]))
    model.load_state_dict(ck["state_dict"])
    model.eval()
    inputs = {k: from_mapping(InputSpec, v) for k, v in ck["inputs"].items()}
    return model, inputs, ck
