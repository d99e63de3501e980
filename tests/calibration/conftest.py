"""Session fixtures for the calibration tests: the synthetic stereo rig of tests/helpers/calib_scene.py and its solve."""
from __future__ import annotations

import pytest

pytest.importorskip("cv2")

from tests.helpers.calib_scene import SynthRig, render_views  # noqa: E402


@pytest.fixture(scope="session")
def synth_rig() -> SynthRig:
    return render_views(16)


@pytest.fixture(scope="session")
def synth_run(synth_rig):
    from edgepad.calibration.tool import SolveOptions, calibrate_rig
    return calibrate_rig(synth_rig.views, synth_rig.spec, SolveOptions(fix_k3=True, zero_tangent=True))
