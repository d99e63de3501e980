"""Face locators (Haar on synthetic faces, guards for OpenCV without Haar) and the quality gates."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.errors import ConfigError, MissingDependencyError
from edgepad.runtime import face as face_mod
from edgepad.runtime.face import FixedBoxLocator, HaarFaceLocator, TruthLocator, make_locator
from edgepad.runtime.quality import QualityConfig, check_quality, sharpness
from edgepad.types import FrameSet, Modality, Reason, make_frame

from tests.helpers.scene import make_rig, plane_frameset


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_haar_finds_synthetic_faces_in_the_crop_convention():
    pytest.importorskip("cv2")
    from edgepad.drivers.synthetic import SyntheticSource
    src = SyntheticSource(seed=2, presentation_frames=1, species="bonafide")
    loc = HaarFaceLocator()
    ious = []
    for seq in range(4):
        r, truth = src.render(seq), src.truth(seq)
        fs = FrameSet({Modality.RGB: make_frame("rgb", r.rgb, 0, intrinsics=src.rig.intrinsics[Modality.RGB])}, 0)
        det = loc.locate(fs)
        assert det is not None and det.landmarks is None
        ious.append(_iou(det.box, truth.face_box_rgb))
    assert np.median(ious) > 0.6, ious
    # without the box adjustment Haar's raw box matches the ground truth worse
    raw = HaarFaceLocator(box_adjust=(0, 0, 1, 1)).locate(fs)
    assert _iou(raw.box, truth.face_box_rgb) < ious[-1]


def test_haar_on_a_blank_image_finds_nothing():
    pytest.importorskip("cv2")
    rig = make_rig()
    img = np.full((120, 160, 3), 90, np.uint8)
    fs = FrameSet({Modality.RGB: make_frame("rgb", img, 0, intrinsics=rig.intrinsics[Modality.RGB])}, 0)
    assert HaarFaceLocator().locate(fs) is None


def test_haar_guard_for_opencv_without_cascades(monkeypatch):
    class NoHaarCv2:
        pass

    monkeypatch.setattr(face_mod, "cv2", NoHaarCv2())
    with pytest.raises(MissingDependencyError, match="CascadeClassifier"):
        HaarFaceLocator()

    class Cv2MissingFile:
        CascadeClassifier = object

        class data:
            haarcascades = "/nonexistent/folder"

    monkeypatch.setattr(face_mod, "cv2", Cv2MissingFile())
    with pytest.raises(ConfigError, match="haarcascade_frontalface_default.xml"):
        HaarFaceLocator()


def test_make_locator_specs():
    assert make_locator("fixed:1,2,30,40").locate(None).box == (1, 2, 30, 40)
    with pytest.raises(ConfigError, match="haar"):
        make_locator("har")
    with pytest.raises(ConfigError):
        make_locator("fixed:1,2,x,4")
    with pytest.raises(ConfigError):
        FixedBoxLocator((0, 0, 0, 5))
    with pytest.raises(ConfigError):
        TruthLocator(object())


# ---------------------------------------------------------------------------------------------- quality
RIG = make_rig()


def _crops(fs, box, size=32):
    from edgepad.preprocess import crop_face
    return crop_face(fs, box, RIG, size_px=size)


def test_good_face_passes_all_gates():
    fs = plane_frameset(RIG, noise_seed=1)
    box = (50, 30, 56, 60)
    res = _crops(fs, box)
    q = check_quality(fs, box, res.crops, depth_valid_fraction=res.valid_depth_fraction)
    assert q.reasons == () and q.hints == () and q.invalid == frozenset()
    assert q.metrics["depth_valid"] == 1.0 and q.metrics["ir_mean"] > 50


def test_small_border_blur_and_unlit_ir():
    fs = plane_frameset(RIG, noise_seed=1)
    q = check_quality(fs, (60, 40, 20, 20), _crops(fs, (60, 40, 20, 20)).crops)
    assert Reason.FACE_TOO_SMALL in q.reasons and "move_closer" in q.hints
    q = check_quality(fs, (0, 30, 56, 60), _crops(fs, (0, 30, 56, 60)).crops)
    assert Reason.FACE_AT_BORDER in q.reasons and "centre_your_face" in q.hints
    q = check_quality(fs, (20, 5, 110, 110), _crops(fs, (20, 5, 110, 110)).crops)
    assert Reason.FACE_TOO_LARGE in q.reasons and "move_back" in q.hints
    flat = {Modality.RGB: np.full((32, 32, 3), 128, np.uint8), Modality.IR: np.full((32, 32), 3, np.uint8),
            Modality.DEPTH: np.zeros((32, 32), np.uint16)}
    q = check_quality(fs, (50, 30, 56, 60), flat)
    assert Reason.BLUR in q.reasons and "hold_still" in q.hints
    # holes and a dark IR in the face only, with working sensors: attack cues, kept for the model
    assert q.invalid == frozenset() and Reason.INVALID_DEPTH in q.reasons
    assert Reason.NO_IR_ILLUMINATION not in q.reasons
    # whole frames without depth / without IR light: the sensors failed, the modalities are dropped
    dead = plane_frameset(RIG, noise_seed=1, depth_value=0, offset=-200)
    q = check_quality(dead, (50, 30, 56, 60), flat)
    assert q.invalid == {Modality.IR, Modality.DEPTH}
    assert Reason.NO_IR_ILLUMINATION in q.reasons and Reason.INVALID_DEPTH in q.reasons


def test_landmark_gates_only_with_landmarks():
    fs = plane_frameset(RIG, noise_seed=1)
    box = (50, 30, 56, 60)
    crops = _crops(fs, box).crops
    frontal = np.array([[65, 50], [90, 50], [78, 62], [68, 75], [88, 75]], float)
    assert check_quality(fs, box, crops, landmarks=frontal).reasons == ()
    turned = frontal.copy()
    turned[2, 0] = 98  # nose far right of the eye midline in the image: head turned to the subject's left
    q = check_quality(fs, box, crops, landmarks=turned)
    assert Reason.FACE_POSE in q.reasons and q.hints == ("turn_right",)
    turned[2, 0] = 58  # nose far left: turned to the subject's right
    assert check_quality(fs, box, crops, landmarks=turned).hints == ("turn_left",)
    rolled = frontal.copy()
    rolled[1, 1] = 70  # eye line tilted 39 degrees: rolled head, no yaw
    q = check_quality(fs, box, crops, landmarks=rolled)
    assert Reason.FACE_POSE in q.reasons and q.hints == ("face_the_camera",)
    close_eyes = frontal.copy()
    close_eyes[1, 0] = 75
    assert Reason.FACE_TOO_SMALL in check_quality(fs, box, crops, landmarks=close_eyes).reasons


def test_sharpness_orders_sharp_above_blurred():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (32, 32)).astype(np.float32)
    blurred = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, 1, (0, 1))) / 4
    assert sharpness(sharp) > 4 * sharpness(blurred)
    with pytest.raises(ConfigError):
        QualityConfig(min_depth_valid=2.0)
