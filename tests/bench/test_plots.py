"""The pictures: bench latency plots (no-face decisions left out and marked, p50/p99, frame budget, capture over
time), training curves from metrics.jsonl, the accuracy benchmark's ACER chart. Matplotlib Agg; skipped without."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.bench.report import face_mask, frame_budget_ms, write_plots
from edgepad.benchmark.chart import acer_chart, acer_table
from edgepad.training.plots import CURVES_PNG, plot_training_curves
from edgepad.types import STAGES

mpl_image = pytest.importorskip("matplotlib.image")

RED = np.array([0xD6, 0x27, 0x28]) / 255.0          # tab:red (frame budget)


def _img(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = mpl_image.imread(str(path))[..., :3]
    assert a.std() > 0.05                            # not blank
    return a


def _has(a, rgb, n=30, tol=0.06):
    return int(np.all(np.abs(a - rgb) <= tol, axis=-1).sum()) >= n


def _bench_doc(n=200, seed=0):
    rng = np.random.default_rng(seed)
    face = rng.random(n) > 0.25
    lat = {s: np.where(face, rng.gamma(4, 0.5, n), 0.0) for s in STAGES}
    lat["locate"] = rng.gamma(4, 0.5, n)
    lat["capture"] = rng.gamma(2, 8, n)                   # waiting for the camera: big, every decision
    lat["total"] = sum(lat[s] for s in STAGES if s != "total")
    series = {"t_s": list(np.arange(n) / 30.0), **{s: list(v) for s, v in lat.items()},
              "e2e": list(lat["total"] + 2), "face": [bool(f) for f in face]}
    return {"pipeline": {"series": series}}, face


def test_bench_plots_leave_out_no_face_decisions_and_mark_budget(tmp_path):
    doc, face = _bench_doc()
    paths = write_plots(doc, tmp_path)
    assert set(paths) == {"hist", "cdf", "time"}
    for p in paths.values():
        a = _img(p)
        assert _has(a, RED)                                # the frame budget line
    assert frame_budget_ms() == pytest.approx(1000 / 30)
    # older results without the flag: decisions whose inference did not run had no face
    old = {k: v for k, v in doc["pipeline"]["series"].items() if k != "face"}
    assert (face_mask(old) == face).all()


def test_training_curves_from_the_metrics_log(tmp_path):
    log = tmp_path / "metrics.jsonl"
    recs = [{"epoch": e, "train_loss": 1.0 / (e + 1), "train_bce": 0.8 / (e + 1), "dev_loss": 1.1 / (e + 1) + 0.05,
             "select": "acer", "select_value": 0.3 / (e + 1), "best_epoch": min(e, 3)} for e in range(6)]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    out = plot_training_curves(log)
    assert out == tmp_path / CURVES_PNG
    a = _img(out)
    blue, green = np.array([0x1F, 0x77, 0xB4]) / 255, np.array([0x2C, 0xA0, 0x2C]) / 255     # train loss, dev ACER
    assert a.shape[1] > 800 and _has(a, blue) and _has(a, green)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert plot_training_curves(empty) is None


def test_acer_chart_per_model_and_protocol(tmp_path):
    def rec(preset, proto, seed, acer):
        return {"preset": preset, "protocol": proto, "seed": seed, "subsets": {"P4": {"acer": acer}}}
    records = [rec("tiny", "p1", 0, 0.10), rec("tiny", "p1", 1, 0.20), rec("tiny", "p2", 0, 0.05),
               rec("cdcn", "p1", 0, 0.02), {"preset": "cdcn", "protocol": "p2", "seed": 0, "error": "boom",
                                            "subsets": {}}]
    models, protos, mean, std = acer_table(records)
    assert models == ["tiny", "cdcn"] and protos == ["p1", "p2"]
    assert mean[0, 0] == pytest.approx(0.15) and std[0, 0] == pytest.approx(0.05) and np.isnan(mean[1, 1])
    a = _img(acer_chart(records, tmp_path / "acer.png"))
    assert _has(a, np.array([0x1F, 0x77, 0xB4]) / 255, n=200) and _has(a, np.array([0xFF, 0x7F, 0x0E]) / 255, n=200)
    assert acer_chart([], tmp_path / "none.png") is None
