"""Property-based fuzzing of every parser of user input: whatever the bytes, only typed
:class:`~edgepad.errors.EdgePadError` subclasses may escape (never KeyError, TypeError, UnicodeDecodeError...).

Each parser gets a bounded example budget in the default run (``EDGEPAD_FUZZ_EXAMPLES``, 200); the slow-marked
run repeats them with many more examples. Strategies mutate a valid document one field at a time (deep paths
included), so the checks past the first ``isinstance`` are reached too.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgepad.errors import EdgePadError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("EDGEPAD_FUZZ_EXAMPLES", "200"))
SLOW_EXAMPLES = int(os.environ.get("EDGEPAD_FUZZ_SLOW_EXAMPLES", "5000"))
_TMP = tempfile.mkdtemp(prefix="edgepad-fuzz-")

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                            max_size=4),
                           max_leaves=12)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


def mutations(valid: dict) -> st.SearchStrategy:
    """``valid`` with one value (at any depth) replaced by a random JSON value, deleted, or a key added."""
    paths = [p for p in _paths(valid) if p]

    def apply(args: tuple) -> Any:
        path, value, how = args
        doc = copy.deepcopy(valid)
        node = doc
        for k in path[:-1]:
            node = node[k]
        if how == "delete" and isinstance(node, dict):
            del node[path[-1]]
        elif how == "add" and isinstance(node, dict):
            node[str(value)[:8] or "x"] = value
        else:
            node[path[-1]] = value
        return doc

    return st.tuples(st.sampled_from(paths), json_values, st.sampled_from(["set", "delete", "add"])).map(apply)


def file_bytes(valid: dict | None = None) -> st.SearchStrategy:
    """Raw bytes, text, and JSON of (mutated) valid documents: what a broken file can hold."""
    options = [st.binary(max_size=64), st.text(max_size=64).map(str.encode),
               json_values.map(lambda v: json.dumps(v).encode())]
    if valid is not None:
        options.append(mutations(valid).map(lambda d: json.dumps(d).encode()))
    return st.one_of(options)


def _file(data: bytes, suffix: str) -> Path:
    p = Path(_TMP) / f"input{suffix}"
    p.write_bytes(data)
    return p


# ---------------------------------------------------------------------------------------------- the parsers
def _uri(uri: str) -> None:
    from edgepad.drivers.registry import check_options, parse_uri
    scheme, _, query = parse_uri(uri)
    check_options(scheme, query)


_uri_options = ["seed", "fps", "frames", "width", "height", "loop", "realtime", "speed", "modalities", "emitter",
                "species", "rig", "sede", ""]
uris = st.one_of(
    st.text(max_size=40),
    st.builds(lambda s, loc, opts: f"{s}://{loc}?" + "&".join(f"{k}={v}" for k, v in opts),
              st.sampled_from(["synthetic", "replay", "realsense", "uvc", "nosuch", "", "c"]),
              st.text(max_size=10),
              st.lists(st.tuples(st.sampled_from(_uri_options), st.text(max_size=8)), max_size=4)))


def _valid_rig() -> dict:
    from edgepad.geometry import Extrinsics, Intrinsics, Rig
    from edgepad.types import Modality
    intr = Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0, "brown_conrady", (0.1, 0.0, 0.0, 0.0, 0.0))
    rig = Rig(Modality.RGB, {Modality.RGB: intr, Modality.IR: intr, Modality.DEPTH: intr},
              {Modality.IR: Extrinsics.identity(), Modality.DEPTH: Extrinsics.identity()}, 0.001, {})
    return json.loads(json.dumps(rig.to_dict()))


def _rig_dict(d: Any) -> None:
    from edgepad.geometry import Rig
    Rig.from_dict(d)


def _rig_file(data: bytes) -> None:
    from edgepad.geometry import load_rig
    load_rig(_file(data, ".json"))


def _valid_manifest() -> dict:
    return json.loads((ROOT / "edgepad" / "assets" / "default.onnx.json").read_text())


def _manifest_dict(d: Any) -> None:
    from edgepad.engines.manifest import ModelManifest
    ModelManifest.from_dict(d, path="fuzz.json")


def _manifest_file(data: bytes) -> None:
    from edgepad.engines.manifest import read_manifest
    art = _file(b"x", ".onnx")
    Path(str(art) + ".json").write_bytes(data)
    read_manifest(art)


def _valid_train_config() -> dict:
    from edgepad.config import read_mapping
    return read_mapping(ROOT / "configs" / "default_edge.yaml")


def _train_config(d: Any) -> None:
    from edgepad.config import from_mapping
    from edgepad.training.config import TrainConfig
    from_mapping(TrainConfig, d if isinstance(d, dict) else {"x": d}, base=Path(_TMP))


def _train_config_file(data: bytes) -> None:
    from edgepad.training import load_train_config
    load_train_config(_file(data, ".yaml"))


_VALID_INDEX = {"modality": "rgb", "file": "rgb/0.npy", "timestamp_ns": 1, "sequence": 0,
                "intrinsics": {"width": 4, "height": 4, "fx": 2.0, "fy": 2.0, "cx": 2.0, "cy": 2.0,
                               "coeffs": [0, 0, 0, 0, 0]}}


def _replay_index(data: bytes) -> None:
    from edgepad.drivers.replay import parse_index_line
    parse_index_line(data.decode("utf-8", "replace"), 1, "replay://fuzz")


def _replay_session(data: bytes) -> None:
    from edgepad.drivers.replay import ReplaySource
    d = Path(_TMP) / "session"
    d.mkdir(exist_ok=True)
    (d / "session.json").write_bytes(data)
    (d / "index.jsonl").write_text("")
    src = ReplaySource(d)
    src.open()
    src.close()


_VALID_SESSION = {"format": "edgepad-session", "version": 1, "modalities": ["rgb"],
                  "streams": {"rgb": {"intrinsics": _VALID_INDEX["intrinsics"]}}}

csv_text = st.one_of(
    st.binary(max_size=80),
    st.lists(st.lists(st.sampled_from(["True", "false", "1", "0", "nan", "0.5", "-1e9", "", "x", "\"", "a,b",
                                       "inf", "print", "\x00", "é"]), min_size=1, max_size=6), max_size=6).map(
        lambda rows: ("claimed_id,test_label,is_bonafide,attack_type,score\n"
                      + "\n".join(",".join(r) for r in rows)).encode()))


def _scores(data: bytes) -> None:
    from edgepad.evaluation import read_scores
    read_scores(_file(data, ".csv"))


def _valid_board() -> dict:
    from edgepad.calibration.board import BoardSpec
    return json.loads(json.dumps(BoardSpec().to_dict()))


def _board_dict(d: Any) -> None:
    from edgepad.calibration.board import BoardSpec
    from edgepad.config import from_mapping
    from_mapping(BoardSpec, d if isinstance(d, dict) else {"x": d}, where="board")


def _board_file(data: bytes) -> None:
    from edgepad.calibration.board import load_board
    load_board(_file(data, ".yaml"))


views_folders = st.lists(st.tuples(st.sampled_from(["rgb_1", "ir_1", "0001", "rgb-0001", "x", "rgb_", "IR_2"]),
                                   st.sampled_from([".png", ".jpg", ".PNG", ".txt", ""]),
                                   st.binary(max_size=40)), max_size=5)


def _views(files: list) -> None:
    pytest.importorskip("cv2")
    from edgepad.calibration.tool import load_folder_views
    d = Path(tempfile.mkdtemp(dir=_TMP))
    (d / "rgb").mkdir()
    (d / "ir").mkdir()
    for i, (stem, suffix, data) in enumerate(files):
        (d / ("rgb" if i % 2 == 0 else "ir") / f"{stem}{suffix}").write_bytes(data)
    load_folder_views(d / "rgb", d / "ir")


def _locator(spec: str) -> None:
    from edgepad.runtime.face import make_locator
    make_locator(spec)


def _modalities(text: str) -> None:
    from edgepad.types import parse_modalities
    parse_modalities(text)


def _species(text: str) -> None:
    from edgepad.drivers.synthetic import parse_species
    parse_species(text)


def _bench_result(data: bytes) -> None:
    from edgepad.bench.report import load_result
    load_result(_file(data, ".json"))


def _token_file(data: bytes) -> None:
    from edgepad.runtime.service import read_token_file
    p = _file(data, ".token")
    p.chmod(0o600)
    read_token_file(p)


def _number_types(text: str) -> None:
    """The CLI number types return a finite in-range value or refuse with ArgumentTypeError (the parser's
    UsageError); nothing else."""
    from edgepad.commands.common import fraction, nonneg_float, nonneg_int, positive_float, positive_int
    for parse, low, strict in ((positive_float, 0, True), (nonneg_float, 0, False), (positive_int, 1, False),
                               (nonneg_int, 0, False), (fraction, 0, False)):
        try:
            v = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert math.isfinite(v) and (v > low if strict else v >= low), (parse, text, v)
        assert parse is not fraction or v <= 1, (text, v)


def _set_overrides(items: list) -> None:
    from edgepad.commands.models import _overrides
    _overrides(items)


#: name -> (strategy, parser). Add a row for every new reader of user input.
PARSERS: dict[str, tuple[st.SearchStrategy, Callable[[Any], None]]] = {
    "uri": (uris, _uri),
    "rig-dict": (st.deferred(lambda: mutations(_valid_rig())), _rig_dict),
    "rig-file": (st.deferred(lambda: file_bytes(_valid_rig())), _rig_file),
    "manifest-dict": (st.deferred(lambda: mutations(_valid_manifest())), _manifest_dict),
    "manifest-file": (st.deferred(lambda: file_bytes(_valid_manifest())), _manifest_file),
    "train-config": (st.deferred(lambda: mutations(_valid_train_config())), _train_config),
    "train-config-file": (st.deferred(lambda: file_bytes(_valid_train_config())), _train_config_file),
    "replay-index-line": (file_bytes(_VALID_INDEX), _replay_index),
    "replay-session": (file_bytes(_VALID_SESSION), _replay_session),
    "scores-csv": (csv_text, _scores),
    "board-dict": (st.deferred(lambda: mutations(_valid_board())), _board_dict),
    "board-file": (st.deferred(lambda: file_bytes(_valid_board())), _board_file),
    "calibration-views": (views_folders, _views),
    "locator-spec": (st.one_of(st.text(max_size=20), st.text(max_size=20).map(lambda s: "fixed:" + s)), _locator),
    "modalities": (st.text(max_size=20), _modalities),
    "species": (st.text(max_size=20), _species),
    "bench-result": (file_bytes({"version": 1, "pipeline": {"decisions": 3}}), _bench_result),
    "token-file": (file_bytes(), _token_file),
    "cli-number-types": (st.one_of(st.text(max_size=12), st.floats().map(repr), st.integers().map(str)),
                         _number_types),
    "train-set-overrides": (st.lists(st.text(max_size=16), max_size=3), _set_overrides),
}


def check(name: str, value: Any) -> None:
    """Run parser ``name`` on ``value``; a typed EdgePadError is a refusal, anything else fails the test."""
    try:
        PARSERS[name][1](value)
    except EdgePadError:
        pass


def _fuzz(name: str, examples: int) -> None:
    strategy = PARSERS[name][0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        check(name, value)

    run()


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parser_raises_only_typed_errors(name):
    _fuzz(name, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parser_raises_only_typed_errors_long(name):
    _fuzz(name, SLOW_EXAMPLES)
