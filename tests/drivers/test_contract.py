"""One contract for every source: synthetic, replay, RealSense playback and UVC (scripted stub).

Discovery by URI, strict URI options (one check in the registry, before any device access), intrinsics and depth
scale, per-stream timestamps, clean end of stream, timeouts, restart, and the shared path after capture
(Capture → FrameSet).
"""
from __future__ import annotations

import inspect
import time

import numpy as np
import pytest

import edgepad.drivers.realsense as realsense_mod
from edgepad.drivers.capture import Capture
from edgepad.drivers.registry import check_options, open_source, parse_uri, schemes, source_class, uri_options
from edgepad.drivers.replay import record
from edgepad.drivers.sync import Synchronizer
from edgepad.errors import ConfigError, EndOfStream, SourceError
from edgepad.types import Modality
from tests.helpers.rsbag import write_realsense_bag
from tests.helpers.sources import StubCapture, plane_depth, small_rig

SYN = "synthetic://default?seed=5&width=48&height=36&frames=3"


def _synthetic(tmp_path):
    return open_source(SYN)


def _replay(tmp_path):
    record(SYN, tmp_path / "rec", frames=3)
    return open_source(f"replay://{tmp_path / 'rec'}")


def _realsense_bag(tmp_path):
    pytest.importorskip("pyrealsense2")
    pytest.importorskip("rosbags")
    rig = small_rig(32, 24)
    di, ci = rig.intrinsics[Modality.DEPTH], rig.intrinsics[Modality.RGB]
    path = write_realsense_bag(tmp_path / "c.bag", di, ci, rig.extrinsics("depth", "rgb"),
                               [plane_depth(di, 600 + k) for k in range(4)],
                               [np.full((24, 32, 3), k, np.uint8) for k in range(4)])
    return open_source(str(path), modalities="rgb,depth")


def _uvc(tmp_path):
    imgs = [np.full((12, 16), k, np.uint8) for k in range(3)]
    return open_source("uvc:///dev/video9", width=16, height=12,
                       capture_factory=lambda dev: StubCapture(list(imgs) + [None] * 5), stall_s=0.05,
                       max_reconnects=0)


SOURCES = {"synthetic": _synthetic, "replay": _replay, "realsense-playback": _realsense_bag, "uvc": _uvc}


def _drain(src, limit=40):
    frames, end = [], None
    for _ in range(limit):
        try:
            f = src.read(1.0)
        except (EndOfStream, SourceError) as exc:
            end = exc
            break
        if f is not None:
            frames.append(f)
    return frames, end


@pytest.mark.parametrize("kind", list(SOURCES))
def test_source_contract(kind, tmp_path):
    src = SOURCES[kind](tmp_path)
    with pytest.raises(SourceError):
        src.read(0.1)  # not open
    src.open()
    src.open()  # idempotent
    intr = src.intrinsics()
    assert set(intr) == set(src.modalities)
    t0 = time.monotonic()
    first = src.read(0.0)
    assert time.monotonic() - t0 < 1.0  # a zero timeout never blocks
    frames, end = _drain(src)
    if first is not None:
        frames.insert(0, first)
    assert frames, "no frames"
    last = {}
    for f in frames:
        assert f.modality in src.modalities
        assert (f.data.shape[1], f.data.shape[0]) == (intr[f.modality].width, intr[f.modality].height)
        assert not f.data.flags.writeable
        if f.modality is Modality.DEPTH:
            assert f.depth_scale_m and f.depth_scale_m > 0 and f.data.dtype == np.uint16
        assert f.timestamp_ns > last.get(f.modality, -(2**62))
        last[f.modality] = f.timestamp_ns
    if kind == "uvc":
        assert isinstance(end, SourceError)  # the stub stops delivering: a stall, reported with its reason
    else:
        assert isinstance(end, EndOfStream)
        with pytest.raises(EndOfStream):
            src.read(0.1)
    src.close()
    src.close()  # idempotent
    # restart: the same first frame again
    with src:
        again = None
        for _ in range(10):
            again = src.read(1.0)
            if again is not None:
                break
    assert again is not None and again.modality is frames[0].modality
    np.testing.assert_array_equal(again.data, frames[0].data)


@pytest.mark.parametrize("kind", ["synthetic", "replay", "realsense-playback"])
def test_same_path_after_capture(kind, tmp_path):
    src = SOURCES[kind](tmp_path)
    required = sorted(src.modalities, key=[Modality.RGB, Modality.DEPTH, Modality.IR].index)
    with Capture([src], None, Synchronizer.for_fps(required, 30)) as cap:
        sets = list(cap)
    assert sets
    for fs in sets:
        assert fs.modalities == set(required)
        if Modality.DEPTH in fs:
            assert fs[Modality.DEPTH].registered_to is Modality.RGB


# ------------------------------------------------------------------------------------------ strict URI options
#: one URI per registered scheme and per file suffix (the check runs before construction: no file or camera needed)
URIS = {"synthetic": "synthetic://default", "replay": "replay:///nonexistent/session",
        "realsense": "realsense://000000000000", "uvc": "uvc:///dev/video9", "bag": "/nonexistent/x.bag",
        "db3": "/nonexistent/x.db3"}
#: a malformed value per declared type
BAD = {int: "abc", float: "fast", bool: "maybe"}


def _sep(uri):
    return "&" if "?" in uri else "?"


def test_every_scheme_has_a_uri_in_this_suite():
    assert set(schemes()) <= set(URIS)


@pytest.mark.parametrize("kind", list(URIS))
def test_unknown_uri_option_is_a_config_error_with_a_suggestion(kind):
    scheme = parse_uri(URIS[kind])[0]
    name = sorted(uri_options(scheme))[0]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")  # one letter off a real option
    with pytest.raises(ConfigError) as e:
        open_source(f"{URIS[kind]}?{typo}=1")
    assert e.value.key == typo and name in e.value.suggestions
    assert f"did you mean `{name}`" in str(e.value) and f"{scheme}://" in str(e.value)
    with pytest.raises(ConfigError):  # the same check for keyword options given in Python
        open_source(URIS[kind], **{typo: 1})


@pytest.mark.parametrize("kind", list(URIS))
def test_malformed_uri_values_are_config_errors(kind):
    scheme = parse_uri(URIS[kind])[0]
    typed = {n: t for n, t in uri_options(scheme).items() if t in BAD or set(getattr(t, "__args__", ())) & set(BAD)}
    assert typed, f"{scheme}:// declares no typed option"
    for name, kind_ in typed.items():
        base = next(t for t in BAD if t is kind_ or t in getattr(kind_, "__args__", ()))
        with pytest.raises(ConfigError, match=name) as e:  # never a bare TypeError/ValueError from the constructor
            open_source(f"{URIS[kind]}?{name}={BAD[base]}")
        assert e.value.key == name


@pytest.mark.parametrize("scheme", sorted(schemes()))
def test_declared_options_are_constructor_options_and_parse_to_their_types(scheme):
    params = inspect.signature(source_class(scheme).__init__).parameters
    good = {int: ("7", 7), float: ("2.5", 2.5), bool: ("true", True), str: ("x", "x")}
    for name, kind in uri_options(scheme).items():
        assert name in params and name != "location", f"{scheme}:// declares {name!r}, which __init__ lacks"
        base = next(t for t in good if t is kind or t in getattr(kind, "__args__", ()))
        text, value = good[base]
        assert check_options(scheme, {name: text}) == {name: value}
        if type(None) in getattr(kind, "__args__", ()):
            assert check_options(scheme, {name: "none"}) == {name: None}
    assert check_options(scheme, {}, {}) == {}


def test_uri_values_parse_to_declared_types_and_keywords_override():
    src = open_source("synthetic://default?seed=3&fps=15&realtime=FALSE&width=64&height=48", seed="4")
    assert (src.seed, src.fps, src.realtime, src.rig.intrinsics[Modality.RGB].width) == (4, 15.0, False, 64)
    with pytest.raises(ConfigError, match="twice"):
        open_source("synthetic://default?seed=1&seed=2")
    with pytest.raises(ConfigError, match="scheme"):
        open_source("synthtic://default")


def test_realsense_options_are_checked_before_any_device_access(monkeypatch):
    class NoDevice:
        def __getattr__(self, name):
            raise AssertionError(f"pyrealsense2.{name} touched before the options were checked")

    monkeypatch.setattr(realsense_mod, "rs", NoDevice())
    for uri in ("realsense://000000000000?widht=640", "realsense://000000000000?fps=fast",
                "realsense://000000000000?emitter=perhaps", "/nonexistent/x.bag?realtme=true"):
        with pytest.raises(ConfigError):
            open_source(uri)
    src = open_source("realsense://000000000000?width=424&height=240&fps=15&emitter=false&depth_units=none")
    assert (src.width, src.height, src.fps, src.emitter, src.depth_units) == (424, 240, 15.0, False, None)
    assert src.serial == "000000000000"
    with pytest.raises(AssertionError, match="touched"):  # the device is first looked for in open()
        src.open()
