"""``blas.keep_freed_memory``: numpy temporaries of a few hundred KiB stop faulting in fresh pages each call (by
default glibc trims the freed top of the heap above 2× its adapted mmap threshold, so the next call faults again)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import resource, sys
import numpy as np
from edgepad.blas import keep_freed_memory
def faults(n=30):
    a = np.random.default_rng(0).random((224, 224))
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        live = [a * k for k in range(8)]          # 8 × 400 KB alive at once (as in a crop resample), then freed
        del live
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n
faults(3)
before = faults()
ok = keep_freed_memory()
faults(3)
print(before, faults(), ok, keep_freed_memory())
"""


def _probe(env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(env_extra or {}, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    b, a, ok, again = r.stdout.split()
    return float(b), float(a), ok == "True", again == "True"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt")
def test_keep_freed_memory_stops_page_faults_of_temporaries():
    before, after, ok, again = _probe()
    assert ok and again
    assert before > 50                     # the default thresholds fault the temporaries in again each round
    assert after < before / 5


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc mallopt")
def test_keep_freed_memory_respects_user_malloc_settings():
    _, _, ok, again = _probe({"MALLOC_MMAP_THRESHOLD_": "131072"})
    assert not ok and not again
