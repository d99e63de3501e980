"""Polygraphy-style comparison of two backends on the same feeds (``edgepad build --compare``; docs/ENGINES.md).

:func:`compare_backends` runs a candidate and a reference — any two edgepad backends: a TensorRT engine against
its ONNX in ONNX Runtime on the device, or here on a CPU an FP16 / INT8 ONNX against the FP32 ONNX, both in ONNX
Runtime — over the same feeds and reports, per output, max / mean abs error, max rel error and cosine, and the
live/spoof decision agreement at the reference threshold. It applies no gate (that is
:func:`edgepad.engines.validate.validate_artifact`). :func:`comparison_feeds` draws the feeds (a benchmark split
or seeded random normal inputs); :func:`format_comparison` prints the table. Only numpy here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgepad.engines.backend import BaseBackend
from edgepad.engines.validate import compare_outputs, decisions, run_pair, stack_feeds
from edgepad.errors import ConfigError


def comparison_feeds(inputs: Mapping[str, Any], samples: int = 64, *, data: Path | str | None = None,
                     protocol: str = "grandtest", split: str = "eval", seed: int = 0) -> dict[str, np.ndarray]:
    """Feeds ``{name: N×C×S×S}`` float32 for a comparison: ``samples`` frames of ``data``'s ``split``
    (normalised as at run time), or, without ``data``, ``samples`` standard-normal inputs drawn with ``seed``."""
    if samples < 1:
        raise ConfigError("compare needs at least one sample", key="compare")
    if data is not None:
        from edgepad.engines.feeds import load_feeds
        return dict(load_feeds(data, inputs, protocol=protocol, split=split, limit=samples, seed=seed).feeds)
    from edgepad.engines.export import example_feeds
    return example_feeds(inputs, batch=samples, seed=seed) if all(s.shape[0] == -1 for s in inputs.values()) \
        else stack_feeds([example_feeds(inputs, seed=seed + i) for i in range(samples)])


def compare_backends(candidate: BaseBackend | Path | str, reference: BaseBackend | Path | str,
                     feeds: Mapping[str, np.ndarray], *, threshold: float | None = None, batch: int | None = None,
                     backend_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run both backends on ``feeds`` and compare their outputs (no gate).

    Args:
        candidate / reference: open backends or artifact paths with manifests (e.g. ``model.engine`` and
            ``model.onnx``; on a CPU ``model8.onnx`` and ``model.fp32.onnx``).
        feeds: ``{name: N×C×S×S}`` float32.
        threshold: decision threshold on ``score`` (default: the reference manifest's).
        batch: batch size for dynamic-batch models.
        backend_options: options for :func:`load_backend` (e.g. ``{"threads": 2}``).

    Returns:
        ``{"candidate", "reference", "samples", "threshold", "outputs": {name: {max_abs_error, mean_abs_error,
        max_rel_error, cosine, mean_shift}}, "decision_agreement" (fraction), "flipped" (count)}``.
    """
    cand, ref, c_out, r_out = run_pair(candidate, reference, feeds, batch, backend_options)
    outputs = compare_outputs(c_out, {k: v for k, v in r_out.items() if k in c_out})
    score = ref.manifest.score_output
    thr = float(ref.manifest.threshold if threshold is None else threshold)
    rs = r_out[score]
    flipped = int(np.count_nonzero((rs >= thr) != decisions(c_out[score], thr)))
    n = int(rs.size)
    return {"candidate": f"{cand.manifest.precision}/{cand.kind}", "reference": f"{ref.manifest.precision}/{ref.kind}",
            "samples": n, "threshold": thr, "outputs": outputs,
            "decision_agreement": 1.0 - flipped / max(n, 1), "flipped": flipped}


def format_comparison(report: Mapping[str, Any]) -> str:
    """The report as a text table: one row per output, then the decision agreement."""
    lines = [f"{report['candidate']} vs {report['reference']} on {report['samples']} samples",
             f"{'output':<16} {'max abs':>10} {'mean abs':>10} {'max rel':>10} {'cosine':>10}"]
    for name, o in report["outputs"].items():
        lines.append(f"{name:<16} {o['max_abs_error']:>10.3g} {o['mean_abs_error']:>10.3g} "
                     f"{o['max_rel_error']:>10.3g} {o['cosine']:>10.6f}")
    lines.append(f"decision agreement at τ={report['threshold']:.4f}: {100 * report['decision_agreement']:.2f} % "
                 f"({report['flipped']} flipped)")
    return "\n".join(lines)


def compare_artifacts(candidate: Path | str, reference: Path | str, samples: int = 64, *,
                      data: Path | str | None = None, protocol: str = "grandtest", split: str = "eval",
                      seed: int = 0, backend_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`compare_backends` of two artifact paths on :func:`comparison_feeds` of the reference's inputs."""
    from edgepad.engines.manifest import read_manifest
    inputs = read_manifest(reference).inputs
    feeds = comparison_feeds(inputs, samples, data=data, protocol=protocol, split=split, seed=seed)
    return compare_backends(candidate, reference, feeds, backend_options=backend_options)
