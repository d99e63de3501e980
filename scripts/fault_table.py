"""The "observed" column of docs/RELIABILITY.md: LIVE decisions of the always-live model per attack (N = 30 frame
sets each). Run from the repository root: ``python scripts/fault_table.py``.

Uses the robustness suite's streams and model (tests/robustness/); a refused input (typed error at load) counts
as 0 LIVE and is printed with its error.
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgepad.errors import EdgePadError  # noqa: E402
from edgepad.runtime.pipeline import open_pipeline  # noqa: E402
from tests.robustness import test_fail_closed as t  # noqa: E402
from tests.robustness.conftest import BOX, RIG, write_always_live  # noqa: E402

S, MS = t.S, t.MS


def run(capture, model, rig=RIG, **cfg) -> str:
    from edgepad.engines.backend import load_backend
    try:
        be = load_backend(model, threads=1)
        be.activate()
        ds = t.verdicts(capture, be, rig=rig, **cfg)
    except EdgePadError as exc:
        return f"refused: {type(exc).__name__}: {str(exc)[:90]}"
    return f"{t.n_live(ds)}/{len(ds)} LIVE"


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    model = write_always_live(tmp / "live.onnx")
    cap = t.StampedCapture
    rows = [
        ("control: fresh host-stamped noisy stream", cap(t.FRESH, t.fresh), {}),
        ("1: first set 11 s old, then 2 s old (auto)", cap(t.FRESH, lambda i, now: now - (11 * S if i == 0 else 2 * S)), {}),
        ("1: stamped 5 s in the future (auto)", cap(t.FRESH, lambda i, now: now + 5 * S), {}),
        ("1: stamped 1 h in the future (auto)", cap(t.FRESH, lambda i, now: now + 3600 * S), {}),
        ("8: still image, one sampled pixel changed per frame", cap([t._poke(t.FRESH[0], i) for i in range(30)], t.fresh), {}),
        ("8: two images alternating", cap(t.FRESH[:2], t.fresh), {}),
    ]
    for name, c, cfg in rows:
        print(f"{name:55s} {run(c, model, **cfg)}")
    m5 = write_always_live(tmp / "m5.onnx", threshold=-5.0)
    print(f"{'6: manifest threshold -5':55s} {run(cap(t.FRESH, t.fresh), m5)}")
    minf = write_always_live(tmp / "minf.onnx", operating_points={"bpcer20": {"rgb+depth+ir": -math.inf}})
    print(f"{'6: operating point bpcer20 = -inf':55s} {run(cap(t.FRESH, t.fresh), minf, policy={'operating_point': 'bpcer20'})}")
    for label, cam, part, key, value in [("NaN cx", "rgb", "intrinsics", "cx", math.nan),
                                         ("NaN coeffs", "rgb", "intrinsics", "coeffs", [math.nan] * 5),
                                         ("inf translation", "depth", "to_reference", "translation_m", [math.inf, 0, 0]),
                                         ("inf depth scale", None, None, "depth_scale_m", math.inf)]:
        d = RIG.to_dict()
        (d if cam is None else d["cameras"][cam][part])[key] = value
        p = tmp / "rig.json"
        p.write_text(json.dumps(d))
        try:
            with open_pipeline(cap(t.FRESH, t.fresh), model, rig=p, locator="fixed:" + ",".join(map(str, BOX))) as pipe:
                ds = list(pipe.decisions())
            res = f"{t.n_live(ds)}/{len(ds)} LIVE (reasons of the last: {[r.value for r in ds[-1].reasons]})"
        except EdgePadError as exc:
            res = f"refused: {type(exc).__name__}: {str(exc)[:90]}"
        print(f"{'7: rig ' + label:55s} {res}")


if __name__ == "__main__":
    main()
