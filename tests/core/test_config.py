from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from edgepad.config import from_mapping, load_config, read_mapping, to_mapping, write_mapping
from edgepad.errors import ConfigError, EdgePadError
from edgepad.types import Modality


@dataclasses.dataclass(frozen=True)
class Inner:
    tolerance_ms: float = 16.0
    modalities: tuple[Modality, ...] = (Modality.RGB,)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    path: Path = Path("model.onnx")
    mode: Literal["fast", "exact"] = "fast"
    inner: Inner = Inner()
    limit: int | None = None


def test_defaults_and_nested_conversion():
    cfg = from_mapping(Outer, {"name": "x", "inner": {"modalities": ["rgb", "depth"]}, "limit": 3})
    assert cfg.inner.modalities == (Modality.RGB, Modality.DEPTH)
    assert cfg.inner.tolerance_ms == 16.0 and cfg.limit == 3 and cfg.mode == "fast"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "y"  # type: ignore[misc]


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as ei:
        from_mapping(Outer, {"name": "x", "inner": {"tolerence_ms": 3}})
    assert ei.value.key == "inner.tolerence_ms"
    assert "tolerance_ms" in ei.value.suggestions
    assert "did you mean `tolerance_ms`" in str(ei.value)
    assert isinstance(ei.value, EdgePadError)


@pytest.mark.parametrize("data, key", [
    ({}, "name"),                                   # missing required
    ({"name": 3}, "name"),                          # wrong type
    ({"name": "x", "mode": "fsat"}, "mode"),        # literal
    ({"name": "x", "limit": True}, "limit"),        # bool is not an int
    ({"name": "x", "inner": {"modalities": ["rbg"]}}, "inner.modalities[0]"),
])
def test_bad_values_raise_config_error(data, key):
    with pytest.raises(ConfigError) as ei:
        from_mapping(Outer, data)
    assert key in (ei.value.key or "")


def test_literal_suggestion():
    with pytest.raises(ConfigError) as ei:
        from_mapping(Outer, {"name": "x", "mode": "exatc"})
    assert "exact" in ei.value.suggestions


def test_yaml_round_trip_and_relative_paths(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    f = sub / "run.yaml"
    f.write_text("name: demo\npath: models/m.onnx\ninner:\n  tolerance_ms: 8\n")
    cfg = load_config(Outer, f)
    assert cfg.path == sub.resolve() / "models" / "m.onnx"
    assert cfg.inner.tolerance_ms == 8.0
    out = tmp_path / "out.json"
    write_mapping(to_mapping(cfg), out)
    assert read_mapping(out)["inner"]["modalities"] == ["rgb"]


def test_unparsable_and_non_mapping_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError):
        read_mapping(bad)
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="mapping"):
        read_mapping(lst)
    with pytest.raises(ConfigError, match="cannot read"):
        read_mapping(tmp_path / "missing.yaml")
