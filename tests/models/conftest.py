"""Fixtures for the models tests (builders live in tests/helpers/datasets.py)."""
from __future__ import annotations

import pytest

from tests.helpers.datasets import make_synthbench


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny synthetic benchmark (3 videos per class, 2 frames, 16 px); test modules may define their own."""
    return make_synthbench(tmp_path_factory.mktemp("tbench"), videos_per_class=3, frames=2, size=16)
