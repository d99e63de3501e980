"""The compiled INTER_AREA resize (edgepad.drivers.registration.native.AreaResize, ``edgepad_area_u8``): equal to
cv2.resize(..., interpolation=cv2.INTER_AREA) value for value wherever it answers, None where OpenCV takes another
path (integer factors, copies, upscales)."""
from __future__ import annotations

import numpy as np
import pytest

from edgepad.errors import EdgePadInternalError

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def area():
    from edgepad.drivers.registration.native import area_resize
    a = area_resize()
    if a is None:
        pytest.skip("compiled kernel unavailable")
    return a


def _ref(img, size):
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _images(rng):
    """Source images: noise, smooth ramps (many rounding ties), a checkerboard, saturated and black blocks."""
    noise = rng.integers(0, 256, (460, 460, 3), np.uint8)
    ramp = np.empty((460, 460, 3), np.uint8)
    ramp[..., 0] = np.linspace(0, 255, 460, dtype=np.uint8)[None, :]
    ramp[..., 1] = np.linspace(0, 255, 460, dtype=np.uint8)[:, None]
    ramp[..., 2] = (np.arange(460)[:, None] + np.arange(460)[None, :]) % 256
    checker = ((np.indices((460, 460)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    blocks = np.zeros((460, 460, 3), np.uint8)
    blocks[::7] = 255
    blocks[:, ::5] = 255
    return [noise, ramp, checker, blocks, np.full((460, 460, 3), 255, np.uint8)]


def test_equals_cv2_on_random_crops_of_every_kind(area):
    rng = np.random.default_rng(8)
    images = _images(rng)
    compared = skipped = 0
    for i in range(1200):
        size = (12, 24, 48)[i % 3]
        img = images[i % len(images)]
        h = int(rng.integers(49, 401))
        w = h if i % 2 else int(rng.integers(49, 401))
        if i % 10 == 0:  # integer factors: OpenCV's block means, left to cv2
            f = int(rng.integers(2, 9))
            h = w = size * f
        y, x = (int(v) for v in rng.integers(0, 461 - max(h, w) + 1, 2))
        patch = img[y:y + h, x:x + w]          # a view of the bigger image
        if i % 4 == 1:
            patch = patch[..., 1]              # grey, strided view
        elif i % 4 == 2:
            patch = np.ascontiguousarray(patch)
        elif i % 4 == 3:
            patch = np.ascontiguousarray(patch[..., 0])
        dsize = (size, size) if i % 5 or i % 10 == 0 else (size, int(rng.integers(12, 49)))
        got = area.resize(patch, dsize)
        ref = _ref(patch, dsize)
        sx, sy = patch.shape[1] / dsize[0], patch.shape[0] / dsize[1]
        area_path = sx >= 1 and sy >= 1 and not (sx == round(sx) and sy == round(sy))
        assert (got is not None) == area_path, (patch.shape, dsize)
        if got is None:
            skipped += 1
            continue
        compared += 1
        assert got.shape == ref.shape and got.dtype == np.uint8
        assert np.array_equal(got, ref), (i, patch.shape, dsize, int((got != ref).sum()))
    assert compared > 1000 and skipped > 100


def test_equals_cv2_on_every_crop_side_of_the_detector(area):
    """Every square side 49..400 px (O-Net, R-Net and P-Net cell sizes) from one noise image."""
    img = np.random.default_rng(3).integers(0, 256, (400, 400, 3), np.uint8)
    for side in range(49, 401):
        for size in (12, 24, 48):
            patch = img[:side, 400 - side:]
            got = area.resize(patch, size)
            if got is None:
                assert side % size == 0
                continue
            assert np.array_equal(got, _ref(patch, (size, size))), (side, size)


def test_writes_into_out_and_leaves_other_paths_to_cv2(area):
    img = np.random.default_rng(4).integers(0, 256, (200, 200, 3), np.uint8)
    out = np.full((48, 48, 3), 7, np.uint8)
    assert area.resize(img[:184, :184], 48, out) is out
    assert np.array_equal(out, _ref(img[:184, :184], (48, 48)))
    out[:] = 7
    for patch, size in ((img[:192, :192], 48), (img[:48, :48], 48), (img[:40, :40], 48), (img[:60, :40], 48)):
        assert area.resize(patch, size, out) is None  # block means, copy, upscale, upscale on one axis
    assert np.all(out == 7)
    # a downscale on one axis only, the other kept: OpenCV's area path (scale 1 on that axis)
    got = area.resize(img[:48, :150], 48)
    assert got is not None and np.array_equal(got, _ref(img[:48, :150], (48, 48)))
    # negative strides and non-contiguous channels are copied first
    flipped = img[::-1, ::-1][:150, :170]
    assert np.array_equal(area.resize(flipped, (24, 30)), _ref(flipped, (24, 30)))
    bgr = img[:150, :170, ::-1]
    assert np.array_equal(area.resize(bgr, 24), _ref(bgr, (24, 24)))


def test_rejects_arguments_outside_its_contract(area):
    img = np.zeros((100, 100, 3), np.uint8)
    bad = [(img.astype(np.float32), 48), (np.zeros((100, 100, 5), np.uint8), 48), (np.zeros(100, np.uint8), 48),
           (img, 0), (img, (48, -1)), (np.zeros((0, 100, 3), np.uint8), 48)]
    for a, size in bad:
        with pytest.raises(EdgePadInternalError):
            area.resize(a, size)
    for out in (np.zeros((48, 48), np.uint8), np.zeros((48, 48, 3), np.float32),
                np.zeros((48, 96, 3), np.uint8)[:, ::2]):
        with pytest.raises(EdgePadInternalError):
            area.resize(img, 48, out)


def test_the_detector_checks_the_compiled_resize_against_cv2_and_falls_back(area, monkeypatch):
    from edgepad.runtime import detector as D
    assert D._area_matches_cv2(area)

    class OffByOne:
        def resize(self, img, size, out=None):
            r = area.resize(img, size, out)
            if r is not None:
                r[0, 0, 0] ^= 1  # one value in one crop
            return r

    assert not D._area_matches_cv2(OffByOne())
    import edgepad.drivers.registration.native as N
    monkeypatch.setattr(N, "area_resize", lambda: OffByOne())
    monkeypatch.setattr(D, "_AREA", {})
    assert D._area_resize() is None  # cv2 resizes: crop_batch's values stay cv2's
    img = np.random.default_rng(5).integers(0, 256, (240, 320, 3), np.uint8)
    crops = D.crop_batch(img, np.array([[10, 20, 194, 204]], np.float32), 48)
    assert np.array_equal(crops[0], _ref(img[20:204, 10:194], (48, 48)))
