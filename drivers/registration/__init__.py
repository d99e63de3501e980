"""Depth registration: re-render a depth frame in another camera (depth → rgb, or depth → a separate IR camera).

The algorithm is librealsense's ``rs.align(rs.stream.color)`` (``src/proc/align.cpp``, ``sse/sse-align.cpp``,
2.58.1+ rounding): for each depth pixel with ``z > 0``, its top-left corner ``(x - 0.5, y - 0.5)`` and bottom-right
corner ``(x + 0.5, y + 0.5)`` are deprojected at ``z`` with the depth intrinsics, moved by the depth → target
extrinsics and projected with the target intrinsics; the corners are rounded with ``int(p + 0.5)`` (truncation
toward zero), and every target pixel of the spanned rectangle that lies inside the image receives ``z``, keeping
the **minimum** (nearest surface wins). Nothing is interpolated: holes, shadows and out-of-view pixels stay 0.

Arithmetic is float32 in librealsense's SSE operation order, so results agree with the pinned pyrealsense2
(2.59.1, x86-64) on all but float-rounding edge pixels (see docs/DRIVERS.md for the measured agreement).

Layout (as librealsense's ``align``): :mod:`.corners` (rays, corner projection, distortion, culling bounds),
:mod:`.reference` (reference and generic fills), :mod:`.fast` (fast CPU path), :mod:`.window` (face-window
registration), :mod:`.cuda` (torch/CUDA path), :mod:`.native` (compiled CPU path), :mod:`.registrar`
(:class:`Registrar`, one per camera pair, owns the caches; :func:`register_depth`), :mod:`.oracle` (``rs.align``
through pyrealsense2, for tests and benchmarks).

Four implementations share that arithmetic and must give identical output (tests compare them):

* ``method="reference"``: corners per pixel, then an explicit loop that fills each rectangle (clear, slow);
* ``method="numpy"``: cached per-camera rays, in-place float32 maths and an ``np.minimum.at`` z-buffer (the
  tested reference of the native kernel, and its fallback);
* ``method="native"``: the numpy path's arithmetic and a min fill in one C pass (:mod:`.native`, compiled on first
  use with the system compiler; numpy with one log line where none is found);
* ``method="torch"``: the same arithmetic in torch (``scatter_reduce`` amin) on CUDA when present, else on the
  CPU. ``"auto"`` picks torch when torch is already imported and a GPU is present, else native, else numpy.

Distortion (``semantics``):

* ``"align"`` reproduces ``rs.align``: depth pixels are undistorted only for ``inverse_brown_conrady`` (align's
  closed form, tangential terms on the undistorted x, y) and target points distorted only for
  ``modified_brown_conrady``; ``brown_conrady`` coefficients are ignored, as librealsense's align does.
* ``"rsutil"`` (default) follows ``rs2_deproject_pixel_to_point``/``rs2_project_point_to_pixel`` exactly as
  :mod:`edgepad.geometry` does (brown_conrady = OpenCV's model both ways; inverse/modified RealSense forms), which
  is what a lens calibrated with OpenCV needs. Both agree whenever coefficients are zero (RealSense factory data).

``footprint="rect"`` always fills the corner rectangle (the plain and CUDA librealsense builds); ``"sse"`` mimics
the x86 SSE build, which writes one target pixel per depth pixel (the top-left corner) when the target camera has no
more pixels per degree than the depth camera.
"""
from edgepad.drivers.registration.corners import (Arithmetic, Footprint, Method, Semantics, corner_rays,
                                                  fills_rectangle, folded_coefficients, fov_deg, register_corners)
from edgepad.drivers.registration.oracle import (align_with_librealsense, d435_like_scene, time_against_rs_align,
                                                 to_rs_extrinsics, to_rs_intrinsics)
from edgepad.drivers.registration.registrar import (Registrar, RegistrationMode, prepare_window, register_depth)
from edgepad.drivers.registration.window import Window

__all__ = ["Arithmetic", "Footprint", "Method", "Registrar", "RegistrationMode", "Semantics", "Window",
           "align_with_librealsense", "corner_rays", "d435_like_scene", "fills_rectangle", "folded_coefficients",
           "fov_deg", "prepare_window", "register_corners", "register_depth", "time_against_rs_align",
           "to_rs_extrinsics", "to_rs_intrinsics"]
