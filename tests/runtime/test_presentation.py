"""Presentations (edgepad.runtime.presentation) and the learned locator in the pipeline: a new face starts a new
presentation (gap, box/depth jump, landmark identity), the policy never carries one person's votes into the next,
and integrators get one ``decided`` event per presentation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.errors import ConfigError
from edgepad.runtime.face import FaceDetection, LearnedFaceLocator, make_locator
from edgepad.runtime.pipeline import LivenessPipeline, PipelineConfig
from edgepad.runtime.presentation import (DECIDED, ENDED, STARTED, PresentationConfig, PresentationTracker,
                                          face_colour, landmark_geometry)
from edgepad.types import Decision, Verdict

from tests.helpers.scene import make_rig, plane_frameset

RIG = make_rig()
PERIOD = 33_333_333
BOX = (50, 30, 56, 60)
# frontal landmarks inside BOX: eyes 25 px apart, nose between them, mouth corners below
FACE_A = np.array([[65, 50], [90, 50], [78, 62], [68, 75], [88, 75]], float)
# another person at the same place and size: eyes 34 px apart, shorter eye-to-mouth distance
FACE_B = np.array([[61, 52], [95, 52], [78, 60], [66, 68], [90, 68]], float)


def det(box=BOX, lm=FACE_A):
    return FaceDetection(box, 1.0, None if lm is None else np.array(lm, float))


def test_face_colour_is_the_mean_of_the_box_centre():
    img = np.zeros((40, 40, 3), np.uint8)
    img[10:20, 10:20] = (200, 100, 50)  # the central half of box (5, 5, 20, 20)
    assert face_colour(img, (5, 5, 20, 20)) == pytest.approx((200.0, 100.0, 50.0))
    assert face_colour(img, (50, 50, 4, 4)) is None


def test_geometry_is_scale_free():
    g = landmark_geometry(FACE_A, BOX)
    g2 = landmark_geometry(FACE_A * 2, (100, 60, 112, 120))
    assert g == pytest.approx(g2)
    assert landmark_geometry(None, BOX) is None
    assert landmark_geometry(np.full((5, 2), np.nan), BOX) is None


def test_tracker_splits_on_gap_jump_depth_and_identity():
    t = PresentationTracker(PresentationConfig(gap_frames=2))
    new, ev = t.observe(det(), 1)
    assert new and [e.kind for e in ev] == [STARTED] and ev[0].presentation == 1
    # the same face swaying a little: one presentation
    for i, dx in enumerate((1, 2, 1)):
        new, ev = t.observe(det((50 + dx, 30, 56, 60), FACE_A + dx), 2 + i, depth_m=0.60 + 0.002 * i)
        assert not new and ev == []
    # one frame without a face does not end it (gap_frames = 2), two do
    assert t.observe(None, 10) == (False, [])
    new, ev = t.observe(None, 11)
    assert not new and [(e.kind, e.cause, e.presentation) for e in ev] == [(ENDED, "gap", 1)]
    assert t.observe(det(), 12)[0] and t.count == 2
    # back to back, no gap: box jump, scale jump, depth jump, another face at the same place
    cases = [((150, 30, 56, 60), FACE_A + (100, 0), None, "box_jump"),
             ((150, 30, 80, 86), (FACE_A - (50, 30)) * 80 / 56 + (150, 30), None, "scale_jump"),
             ((150, 30, 80, 86), (FACE_A - (50, 30)) * 80 / 56 + (150, 30), 0.5, ""),
             ((150, 30, 80, 86), (FACE_A - (50, 30)) * 80 / 56 + (150, 30), 0.7, "depth_jump")]
    for box, lm, depth, cause in cases:
        new, ev = t.observe(det(box, lm), 20, depth_m=depth)
        assert new == bool(cause), cause
        if cause:
            assert [(e.kind, e.cause) for e in ev] == [(ENDED, cause), (STARTED, cause)]
    t.observe(det(), 30)  # box_jump back
    new, ev = t.observe(det(BOX, FACE_B), 31)
    assert new and ev[0].cause == "identity"
    # the same place, size and landmarks but another face colour (skin, print inks, light): appearance
    assert not t.observe(det(BOX, FACE_B), 32, colour=(150.0, 110.0, 90.0))[0]
    assert not t.observe(det(BOX, FACE_B), 33, colour=(152.0, 111.0, 91.0))[0]
    new, ev = t.observe(det(BOX, FACE_B), 34, colour=(110.0, 110.0, 120.0))
    assert new and ev[0].cause == "appearance"
    new, ev = t.observe(det(BOX, FACE_B), 35, colour=(165.0, 165.0, 180.0))  # same hue, 50 % brighter
    assert new and ev[0].cause == "appearance"
    with pytest.raises(ConfigError):
        PresentationConfig(gap_frames=0)
    with pytest.raises(ConfigError):
        PresentationTracker(max_jump=0)


def test_tracker_decides_once_per_presentation():
    t = PresentationTracker()
    t.observe(det(), 1)
    live = Decision(Verdict.LIVE, 0.9, 0.5, timestamp_ns=2)
    ev = t.decided(Decision(Verdict.UNKNOWN, None, 0.5, timestamp_ns=1))
    assert ev == []
    ev = t.decided(live)
    assert [(e.kind, e.verdict, e.decision) for e in ev] == [(DECIDED, Verdict.LIVE, live)]
    assert t.decided(live) == [] and t.decided(Decision(Verdict.SPOOF, 0.1, 0.5, timestamp_ns=3)) == []
    (end,) = t.finish()
    assert (end.kind, end.verdict, end.live_decisions, end.spoof_decisions) == (ENDED, Verdict.LIVE, 2, 1)
    assert end.to_dict()["verdict"] == "live" and t.finish() == []


class Scripted:
    """A locator that returns a scripted face per call (None = no face)."""

    def __init__(self, faces):
        self.faces = list(faces)

    def locate(self, fs):
        return self.faces.pop(0)


def _frames(offsets, start=0):
    return [plane_frameset(RIG, t_ns=(start + i + 1) * PERIOD, seq=start + i, offset=o, noise_seed=start + i)
            for i, o in enumerate(offsets)]


def _run(backend, faces, offsets, **presentation):
    cfg = PipelineConfig(presentation=PresentationConfig(**presentation))
    p = LivenessPipeline(None, backend, locator=Scripted(faces), rig=RIG, config=cfg)
    seen = []
    p.on_event(seen.append)
    ds = [p.process(fs, now_ns=fs.timestamp_ns + 5_000_000) for fs in _frames(offsets)]
    return p, ds, seen


def test_back_to_back_spoof_then_live_gets_live_first(backend):
    """An attacker (dark: the tiny model says spoof) is replaced by a person (bright: live) with no frame
    between them: the person's first definitive verdict is LIVE, not the attacker's carried-over SPOOF."""
    faces = [det(BOX, FACE_A)] * 6 + [det(BOX, FACE_B)] * 6
    p, ds, seen = _run(backend, faces, [-60] * 6 + [60] * 6)
    assert ds[5].verdict is Verdict.SPOOF
    second = [d.verdict for d in ds[6:]]
    assert second[:2] == [Verdict.UNKNOWN, Verdict.UNKNOWN]  # votes restarted: k = 3 needs three frames
    assert next(v for v in second if v is not Verdict.UNKNOWN) is Verdict.LIVE
    kinds = [(e.kind, e.presentation, e.verdict) for e in seen]
    assert kinds == [(STARTED, 1, Verdict.UNKNOWN), (DECIDED, 1, Verdict.SPOOF), (ENDED, 1, Verdict.SPOOF),
                     (STARTED, 2, Verdict.UNKNOWN), (DECIDED, 2, Verdict.LIVE)]
    # the other landmark geometry and the other brightness both tell the new face
    assert seen[3].cause in ("identity", "appearance") and seen[4].decision is ds[8] and seen[4].decision.evidence
    assert p.events() == seen  # the pull API sees the same events
    assert p.events() == []
    (end,) = p.end_presentation()
    assert end.kind == ENDED and end.verdict is Verdict.LIVE and end.presentation == 2


def test_back_to_back_live_then_attacker_never_live(backend):
    """A person (live) is replaced by an attacker whose first frames still score live: without the reset the
    person's votes would make the attacker's frames LIVE; with it the attacker needs k votes of its own. (The
    tiny model scores brightness, so the attacker's frames change brightness: the colour term is off here.)"""
    faces = [det(BOX, FACE_A)] * 5 + [det(BOX, FACE_B)] * 6
    p, ds, seen = _run(backend, faces, [60] * 5 + [60, 60] + [-60] * 4, max_chroma_change=10.0,
                       max_brightness_change=100.0)
    assert ds[4].verdict is Verdict.LIVE
    assert [d.verdict for d in ds[5:7]] == [Verdict.UNKNOWN, Verdict.UNKNOWN]
    assert Verdict.LIVE not in [d.verdict for d in ds[5:]]
    decided = [e for e in seen if e.kind == DECIDED]
    assert [(e.presentation, e.verdict) for e in decided] == [(1, Verdict.LIVE), (2, Verdict.SPOOF)]


def test_one_decided_event_per_person_while_frames_stay_live(backend):
    p, ds, seen = _run(backend, [det()] * 10, [60] * 10)
    assert sum(d.verdict is Verdict.LIVE for d in ds) == 8
    assert [e.kind for e in seen] == [STARTED, DECIDED]


# ------------------------------------------------------------------------------------------ learned locator


@pytest.fixture(scope="module")
def learned():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("cv2")
    return LearnedFaceLocator(detect_every=4)


def test_learned_locator_is_the_default_and_tracks_between_spread_full_searches(learned):
    from edgepad.drivers.synthetic import SyntheticSource
    from edgepad.types import FrameSet, Modality
    assert isinstance(make_locator(None), LearnedFaceLocator) and isinstance(make_locator("learned"),
                                                                             LearnedFaceLocator)
    with pytest.raises(ConfigError):
        make_locator("lerned")
    with pytest.raises(ConfigError):
        LearnedFaceLocator(detector=learned.detector, detect_every=0)
    with pytest.raises(ConfigError):
        LearnedFaceLocator(detector=learned.detector, search_parts=0)
    src = SyntheticSource("demo", seed=7, presentation_frames=4)
    learned.reset()
    learned.searches = dict.fromkeys(learned.searches, 0)
    tracker = PresentationTracker()
    news = []
    with src:
        for seq in range(8):
            frames = src.read_set(2.0)
            fs = FrameSet(frames, frames[Modality.RGB].timestamp_ns)
            d = learned.locate(fs)
            assert d is not None and d.landmarks.shape == (5, 2)
            truth = src.truth(frames[Modality.RGB].sequence).face_box_rgb
            x0, y0 = max(d.box[0], truth[0]), max(d.box[1], truth[1])
            x1 = min(d.box[0] + d.box[2], truth[0] + truth[2])
            y1 = min(d.box[1] + d.box[3], truth[1] + truth[3])
            inter = max(0, x1 - x0) * max(0, y1 - y0)
            assert inter / (d.box[2] * d.box[3] + truth[2] * truth[3] - inter) > 0.6
            news.append(tracker.observe(d, fs.timestamp_ns)[0])
    # frame 0: the coarse part of the pyramid found the face; it was tracked on the seven others (also across the
    # new presentation at frame 4), by the landmarks' flow on frames 1, 3 and 7 (after an O-Net frame, no search
    # due), by O-Net on the rest; the spread full search ran its three parts on frames 4, 5 and 6
    assert learned.search_parts == 3
    assert learned.searches == {"track": 7, "part": 4, "flow": 3, "flow_failed": 0}, learned.searches
    # seed 7's presentations 0 -> 1 (bona fide -> flat print at another distance): a new presentation at frame 4
    assert news == [True, False, False, False, True, False, False, False]


def test_run_prints_presentation_events(tiny_model, capsys):
    from edgepad.cli import main
    rc = main(["run", "synthetic://default?seed=1&frames=6&width=320&height=240", "--model", str(tiny_model),
               "--locator", "truth", "--json", "--events"])
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    events = [r for r in rows if "event" in r]
    assert len(rows) - len(events) == 6
    assert events[0]["event"] == "started" and events[0]["presentation"] == 1
    assert events[-1]["event"] == "ended" and events[-1]["cause"] == "stream_end"
    started = [e for e in events if e["event"] == "started"]
    assert len([e for e in events if e["event"] == "ended"]) == len(started)
    assert all(e["decision"]["verdict"] == e["verdict"] for e in events if e["event"] == "decided")


def test_event_lines_for_the_console():
    from edgepad.runtime.console import format_event
    from edgepad.types import Modality
    t = PresentationTracker()
    (start,) = t.observe(det(), 1)[1]
    d = Decision(Verdict.LIVE, 0.91, 0.5, evidence={Modality.RGB: 0.8}, timestamp_ns=2)
    (dec,) = t.decided(d)
    (end,) = t.finish()
    assert format_event(start) == "EVENT presentation 1 started (face)"
    assert format_event(dec) == ("EVENT presentation 1 decided LIVE score 0.910 thr 0.500 after 1 frames | "
                                 "evidence rgb 0.800")
    assert format_event(end) == ("EVENT presentation 1 ended (stream_end) verdict live after 1 frames; live 1 "
                                 "spoof 0")


def test_learned_locator_never_reports_an_old_box_and_finds_a_far_face_within_the_spread(learned):
    import dataclasses

    from edgepad.synthesis import RenderCache, default_rig, render_frames, sample_presentation
    from edgepad.types import FrameSet, Modality, make_frame
    rig = default_rig()
    intr = rig.intrinsics[Modality.RGB]

    def fs_of(distance, i, blank=False):
        p = dataclasses.replace(sample_presentation(1, "bonafide", 2, seed=11, domain="nominal"),
                                distance_m=distance, offset_m=(0.0, 0.0))
        rgb = render_frames(p, rig, seed=5, cache=RenderCache(rig, 0, max_presentations=1)).rgb
        rgb = np.full_like(rgb, 128) if blank else rgb
        return FrameSet({Modality.RGB: make_frame("rgb", rgb, i, sequence=i, intrinsics=intr)}, i)

    learned.reset()
    assert learned.locate(fs_of(0.6, 0)) is not None
    assert learned.locate(fs_of(0.6, 1)) is not None  # tracked by O-Net
    # gone: the tracked box holds no face, nor does the coarse part of the pyramid -> no box, tracking stops
    assert learned.locate(fs_of(0.6, 2, blank=True)) is None
    assert learned.searches["part"] >= 2
    # a face at 2.4 m (MTCNN box ~47 px: the finest pyramid level only): the middle part misses it, the fine part
    # (next in turn) finds it, then it is tracked
    near = [learned.locate(fs_of(2.4, i)) for i in (3, 4, 5)]
    assert near[0] is None and near[1] is not None and near[2] is not None
    # from scratch the coarse parts run first: missed on the first two frames, found on the third
    learned.reset()
    far = [learned.locate(fs_of(2.4, i)) for i in (6, 7, 8, 9)]
    assert far[0] is None and far[1] is None and far[2] is not None and far[3] is not None
