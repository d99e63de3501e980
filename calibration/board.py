"""Calibration boards: the board file, detection (chessboard and ChArUco) and the printable renderer.

A board file is a small YAML/JSON mapping (sizes in metres)::

    kind: charuco            # or chessboard
    squares_x: 5             # squares along x (columns)
    squares_y: 7             # squares along y (rows)
    square_m: 0.04
    marker_m: 0.02           # ChArUco only
    dictionary: DICT_6X6_250 # ChArUco only
    legacy_pattern: false    # ChArUco boards with an even row count printed with OpenCV < 4.6

Detection uses the OpenCV >= 4.7 objdetect API (``cv2.aruco.CharucoDetector``); ids are flattened so that OpenCV
4.x ``(N, 1)`` and 5.x ``(N,)`` shapes look the same.
"""
from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from edgepad._optional import lazy
from edgepad.config import from_mapping, read_mapping, suggest, to_mapping, write_mapping
from edgepad.errors import CalibrationError, ConfigError

cv2 = lazy("cv2")

log = logging.getLogger(__name__)

BoardKind = Literal["chessboard", "charuco"]
#: printable sheets (width, height) in mm
PAPER_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}
#: blank border kept on every side of a printed sheet (printers cannot print to the edge), mm
PAGE_MARGIN_MM = 15.0
#: room under the board for the 50 mm scale bar and the caption, mm
CAPTION_MM = 20.0
#: dictionaries tried when a ChArUco board is not found, to name a board file that contradicts the images
_HINT_DICTIONARIES = ("DICT_4X4_50", "DICT_4X4_250", "DICT_5X5_250", "DICT_6X6_250", "DICT_7X7_250",
                      "DICT_ARUCO_ORIGINAL", "DICT_APRILTAG_36h11")


@dataclass(frozen=True)
class BoardSpec:
    """A planar calibration target.

    Attributes:
        kind: ``chessboard`` or ``charuco``.
        squares_x, squares_y: number of squares along x (columns) and y (rows); inner corners are one fewer.
        square_m: side of a square (m).
        marker_m: side of an ArUco marker (m, ChArUco only).
        dictionary: OpenCV predefined dictionary name (ChArUco only), e.g. ``DICT_6X6_250``.
        legacy_pattern: ChArUco layout of OpenCV < 4.6 for boards with an even number of rows.
    """

    kind: BoardKind = "charuco"
    squares_x: int = 5
    squares_y: int = 7
    square_m: float = 0.04
    marker_m: float = 0.02
    dictionary: str = "DICT_6X6_250"
    legacy_pattern: bool = False

    def __post_init__(self) -> None:
        if self.squares_x < 2 or self.squares_y < 2:
            raise ConfigError(f"board: needs at least 2x2 squares, got {self.squares_x}x{self.squares_y}",
                              key="squares_x")
        if not self.square_m > 0 or self.square_m > 1.0:
            raise ConfigError(f"board: square_m must be in metres (0 < square_m <= 1), got {self.square_m}",
                              key="square_m")
        if self.kind == "charuco":
            if not 0 < self.marker_m < self.square_m:
                raise ConfigError(f"board: marker_m must be in (0, square_m = {self.square_m}), got {self.marker_m}",
                                  key="marker_m")
            if not self.dictionary.startswith("DICT_"):
                raise ConfigError(f"board: unknown dictionary {self.dictionary!r} (e.g. DICT_6X6_250)",
                                  key="dictionary")

    @property
    def inner_corners(self) -> tuple[int, int]:
        """Inner corners (columns, rows)."""
        return self.squares_x - 1, self.squares_y - 1

    @property
    def n_corners(self) -> int:
        cx, cy = self.inner_corners
        return cx * cy

    @property
    def n_markers(self) -> int:
        """ArUco markers on a ChArUco board (0 for a chessboard)."""
        return (self.squares_x * self.squares_y) // 2 if self.kind == "charuco" else 0

    @property
    def size_m(self) -> tuple[float, float]:
        """Printed board size (width, height) in metres, without margin."""
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    def object_points(self) -> np.ndarray:
        """Board-frame coordinates (m) of every inner corner, ``(n_corners, 3)``; z = 0; id = row-major index."""
        cx, cy = self.inner_corners
        xs, ys = np.meshgrid(np.arange(1, cx + 1), np.arange(1, cy + 1))
        pts = np.stack([xs.ravel(), ys.ravel(), np.zeros(cx * cy)], axis=1) * self.square_m
        if self.kind == "charuco":  # use OpenCV's own numbering (it is the same grid; this keeps them in lockstep)
            return np.asarray(self.cv_board().getChessboardCorners(), dtype=np.float64).reshape(-1, 3)
        return pts

    def cv_dictionary(self):
        code = getattr(cv2.aruco, self.dictionary, None)
        if code is None:
            names = [n for n in dir(cv2.aruco) if n.startswith("DICT_")]
            raise ConfigError(f"board: unknown dictionary {self.dictionary!r}", key="dictionary",
                              suggestions=suggest(self.dictionary, names))
        return cv2.aruco.getPredefinedDictionary(code)

    def cv_board(self):
        """The ``cv2.aruco.CharucoBoard`` (ChArUco only)."""
        if self.kind != "charuco":
            raise ConfigError("board: cv_board() is for ChArUco boards", key="kind")
        dictionary = self.cv_dictionary()
        if self.n_markers > dictionary.bytesList.shape[0]:
            raise ConfigError(f"board: {self.n_markers} markers do not fit dictionary {self.dictionary} "
                              f"({dictionary.bytesList.shape[0]} ids)", key="dictionary")
        board = cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary)
        if self.legacy_pattern:
            board.setLegacyPattern(True)
        return board

    def to_dict(self) -> dict:
        return to_mapping(self)


def load_board(path: Path | str) -> BoardSpec:
    """Read a board file (YAML/JSON); unknown keys raise ConfigError with suggestions."""
    return from_mapping(BoardSpec, read_mapping(path), where="board")


def save_board(spec: BoardSpec, path: Path | str) -> None:
    write_mapping(spec.to_dict(), path)


# --------------------------------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class Detection:
    """Board corners found in one image.

    Attributes:
        ids: corner ids ``(N,)`` int (row-major inner-corner index), flattened.
        image_points: ``(N, 2)`` float64 pixel coordinates (pixel centre convention).
        object_points: ``(N, 3)`` float64 board-frame coordinates (m).
        image_size: ``(width, height)`` of the image.
        marker_ids: ArUco ids ``(M,)`` (ChArUco only; empty for a chessboard).
        marker_corners: ``(M, 4, 2)`` marker corners, clockwise from top-left (ChArUco only).
    """

    ids: np.ndarray
    image_points: np.ndarray
    object_points: np.ndarray
    image_size: tuple[int, int]
    marker_ids: np.ndarray
    marker_corners: np.ndarray

    @property
    def count(self) -> int:
        return int(self.ids.shape[0])

    def subset(self, ids: np.ndarray) -> "Detection":
        """The corners whose id is in ``ids`` (same order as ``self``)."""
        keep = np.isin(self.ids, ids)
        return Detection(self.ids[keep], self.image_points[keep], self.object_points[keep], self.image_size,
                         self.marker_ids, self.marker_corners)

    def cell_counts(self, grid: tuple[int, int]) -> np.ndarray:
        """Corners per cell of a ``grid`` = (columns, rows) laid over the image: ``(rows, columns)`` int."""
        gx, gy = grid
        w, h = self.image_size
        counts = np.zeros((gy, gx), int)
        np.add.at(counts, (np.clip((self.image_points[:, 1] / h * gy).astype(int), 0, gy - 1),
                           np.clip((self.image_points[:, 0] / w * gx).astype(int), 0, gx - 1)), 1)
        return counts

    def same_view(self, other: "Detection", frac: float) -> bool:
        """Whether ``other`` shows the board in the same place: ≥ 80 % of corners in common and their mean shift
        below ``frac`` of this image's diagonal (px / px)."""
        common = np.intersect1d(self.ids, other.ids)
        if len(common) < 0.8 * max(self.count, other.count):
            return False
        shift = np.mean(np.linalg.norm(self.subset(common).image_points - other.subset(common).image_points, axis=1))
        return bool(shift < frac * float(np.hypot(*self.image_size)))


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grey from an RGB ``H×W×3`` or grey ``H×W`` (uint8 or uint16, stretched to 8 bit) image."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY) if img.dtype == np.uint8 else \
            img[..., :3].mean(axis=2)
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = np.percentile(f, 0.5), np.percentile(f, 99.5)
        img = np.clip((f - lo) * (255.0 / max(hi - lo, 1e-9)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _empty_detection(size: tuple[int, int]) -> Detection:
    return Detection(np.zeros(0, int), np.zeros((0, 2)), np.zeros((0, 3)), size, np.zeros(0, int),
                     np.zeros((0, 4, 2)))


def detect_board(image: np.ndarray, spec: BoardSpec, *, min_corners: int = 6,
                 detector_params: object | None = None) -> Detection | None:
    """Find the board in one image.

    Args:
        image: RGB ``H×W×3`` uint8, or grey ``H×W`` uint8/uint16 (IR).
        spec: the board.
        min_corners: fewer corners than this counts as not found (ChArUco; a chessboard is all or nothing).
        detector_params: optional ``cv2.aruco.DetectorParameters`` (ChArUco).

    Returns:
        The detection, or None when the board is not found.
    """
    gray = to_gray(image)
    size = (gray.shape[1], gray.shape[0])
    if spec.kind == "chessboard":
        pattern = spec.inner_corners
        found, corners = cv2.findChessboardCornersSB(gray, pattern, flags=cv2.CALIB_CB_EXHAUSTIVE
                                                     | cv2.CALIB_CB_ACCURACY)
        if not found:
            found, corners = cv2.findChessboardCorners(gray, pattern, flags=cv2.CALIB_CB_ADAPTIVE_THRESH
                                                       | cv2.CALIB_CB_NORMALIZE_IMAGE)
            if not found:
                return None
            corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                                       (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.01))
        pts = canonical_chessboard_order(np.asarray(corners, dtype=np.float64).reshape(-1, 2), pattern)
        ids = np.arange(pts.shape[0])
        return Detection(ids, pts, spec.object_points()[ids], size, np.zeros(0, int), np.zeros((0, 4, 2)))
    board = spec.cv_board()
    detector = cv2.aruco.CharucoDetector(board)
    if detector_params is not None:
        detector.setDetectorParameters(detector_params)
    ch_corners, ch_ids, m_corners, m_ids = detector.detectBoard(gray)
    marker_ids = np.asarray(m_ids if m_ids is not None else [], dtype=int).reshape(-1)
    marker_corners = np.asarray(m_corners, dtype=np.float64).reshape(-1, 4, 2) if len(marker_ids) else \
        np.zeros((0, 4, 2))
    if ch_ids is None or len(ch_ids) < min_corners:
        return None
    ids = np.asarray(ch_ids, dtype=int).reshape(-1)
    pts = np.asarray(ch_corners, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(ids, kind="stable")
    ids, pts = ids[order], pts[order]
    pts = _refine_charuco(gray, ids, pts, spec)
    return Detection(ids, pts, spec.object_points()[ids], size, marker_ids, marker_corners)


def canonical_chessboard_order(points: np.ndarray, inner: tuple[int, int]) -> np.ndarray:
    """Chessboard corners renumbered by one rule, whatever the detector's order.

    ``findChessboardCornersSB`` and ``findChessboardCorners`` can return the same grid in opposite orders
    (180 deg apart) or mirrored; the inner-corner grid maps onto itself under those moves, so the numbering is not
    fixed by the board. The rule: the grid is seen from the front (x-step × y-step > 0 with image y down) and its
    rows run left-to-right in the image (of the orderings that remain, the one whose mean row direction has the
    largest image-x component; square grids also consider the 90 deg turns).

    Args:
        points: ``(cols*rows, 2)`` px, row-major in the detector's order.
        inner: inner corners (cols, rows).

    Returns:
        ``(cols*rows, 2)`` px in canonical row-major order.
    """
    cx, cy = inner
    g = np.asarray(points, dtype=np.float64).reshape(cy, cx, 2)
    cands = [g, g[::-1], g[:, ::-1], g[::-1, ::-1]]
    if cx == cy:
        cands += [np.transpose(c, (1, 0, 2)) for c in cands]
    best, best_score = g, -np.inf
    for c in cands:
        xs = (c[:, -1] - c[:, 0]).mean(axis=0)
        ys = (c[-1] - c[0]).mean(axis=0)
        if xs[0] * ys[1] - xs[1] * ys[0] <= 0:  # mirrored: the grid would be seen from behind
            continue
        score = xs[0] / max(float(np.hypot(*xs)), 1e-12)
        if score > best_score + 1e-9:
            best, best_score = c, score
    return best.reshape(-1, 2).copy()


def rotate_detection_180(det: "Detection", spec: BoardSpec) -> "Detection":
    """The same chessboard corners numbered the other way round (the grid turned 180 deg in its plane).

    Used to repair a stereo pair whose two views were numbered inconsistently (see ``calibrate_stereo``).

    Raises:
        ConfigError: for ChArUco boards (their ids fix the orientation) or a partial chessboard detection.
    """
    if spec.kind != "chessboard" or det.count != spec.n_corners:
        raise ConfigError("rotate_detection_180 is for full chessboard detections", key="kind")
    return Detection(det.ids, det.image_points[::-1].copy(), det.object_points, det.image_size, det.marker_ids,
                     det.marker_corners)


def _refine_charuco(gray: np.ndarray, ids: np.ndarray, pts: np.ndarray, spec: BoardSpec) -> np.ndarray:
    """Sub-pixel refinement of ChArUco corners.

    OpenCV 4.12's ``CharucoDetector`` returns corners with a bias of about half a pixel (measured on rendered
    boards: mean +0.5 px in x and y, up to 0.9 px); ``cornerSubPix`` with a window that stays inside the quiet
    zone between the corner and the nearest marker brings that below 0.01 px.
    """
    cx, _ = spec.inner_corners
    lookup = {int(i): p for i, p in zip(ids, pts)}
    steps = [np.linalg.norm(lookup[i + 1] - p) for i, p in lookup.items() if (i + 1) in lookup and (i + 1) % cx]
    steps += [np.linalg.norm(lookup[i + cx] - p) for i, p in lookup.items() if (i + cx) in lookup]
    if not steps:
        return pts
    quiet_px = float(np.min(steps)) * (spec.square_m - spec.marker_m) / 2 / spec.square_m
    # a 7×7 window at most: larger windows average more noise but reach marker edges under perspective and lens
    # curvature; on the 4 real OpenCV photos half-widths 4-6 moved fx by up to 8 % (ill-conditioned set), 3 did not
    half = int(np.clip(np.floor(0.8 * quiet_px), 2, 3))
    refined = cv2.cornerSubPix(gray, pts.astype(np.float32).reshape(-1, 1, 2), (half, half), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.001))
    refined = refined.reshape(-1, 2).astype(np.float64)
    moved = np.linalg.norm(refined - pts, axis=1)
    return np.where((moved < 2.0)[:, None], refined, pts)  # a corner that ran away keeps OpenCV's estimate


def explain_no_board(image: np.ndarray, spec: BoardSpec) -> str:
    """A hint why ``spec`` was not found in ``image`` (wrong dictionary, size or layout), or ``""``."""
    gray = to_gray(image)
    if spec.kind == "chessboard":
        cx, cy = spec.inner_corners
        for pattern in ((cx + 1, cy), (cx - 1, cy), (cx, cy + 1), (cx, cy - 1)):
            if min(pattern) >= 2 and cv2.findChessboardCorners(gray, pattern)[0]:
                return (f"a chessboard with {pattern[0]}x{pattern[1]} inner corners is visible but the board file "
                        f"says {cx}x{cy} inner corners ({spec.squares_x}x{spec.squares_y} squares)")
        return ""
    found = _markers(gray, spec.dictionary)
    if len(found):
        beyond = found[found >= spec.n_markers]
        if len(beyond):
            return (f"markers with ids up to {int(found.max())} are visible but a {spec.squares_x}x{spec.squares_y} "
                    f"board has ids 0..{spec.n_markers - 1}: check squares_x/squares_y")
        if spec.squares_y % 2 == 0:
            return (f"{len(found)} markers found but no ChArUco corners: with an even row count try "
                    f"legacy_pattern: {str(not spec.legacy_pattern).lower()}")
        return f"{len(found)} markers found but too few ChArUco corners: show more of the board"
    for name in _HINT_DICTIONARIES:
        if name != spec.dictionary and len(_markers(gray, name)) >= 3:
            return f"markers of {name} are visible but the board file says dictionary {spec.dictionary}"
    return ""


def _markers(gray: np.ndarray, dictionary: str) -> np.ndarray:
    code = getattr(cv2.aruco, dictionary, None)
    if code is None:
        return np.zeros(0, int)
    det = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(code), cv2.aruco.DetectorParameters())
    _, ids, _ = det.detectMarkers(gray)
    return np.asarray(ids if ids is not None else [], dtype=int).reshape(-1)


def check_board_consistency(det: Detection, spec: BoardSpec, tolerance: float = 0.3) -> None:
    """Raise ConfigError when the marker/square ratio seen in the image contradicts the board file.

    The ratio of a marker's side to the spacing of neighbouring ChArUco corners is scale- and pose-invariant
    to first order, so a board file with the wrong ``marker_m``/``square_m`` is caught here.
    """
    if spec.kind != "charuco" or det.marker_corners.shape[0] < 2 or det.count < 4:
        return
    sides = np.linalg.norm(np.diff(det.marker_corners, axis=1, append=det.marker_corners[:, :1]), axis=2)
    marker_px = float(np.median(sides))
    cx, _ = spec.inner_corners
    lookup = {int(i): p for i, p in zip(det.ids, det.image_points)}
    steps = [np.linalg.norm(lookup[i + 1] - p) for i, p in lookup.items() if (i + 1) in lookup and (i + 1) % cx]
    if not steps:
        return
    seen = marker_px / float(np.median(steps))
    expected = spec.marker_m / spec.square_m
    if abs(seen / expected - 1.0) > tolerance:
        raise ConfigError(f"board file contradicts the images: marker/square ratio is {seen:.2f} in the images but "
                          f"{expected:.2f} in the board file (marker_m={spec.marker_m}, square_m={spec.square_m})",
                          key="marker_m")


# --------------------------------------------------------------------------------------------------- rendering
def render_board(spec: BoardSpec, px_per_m: float, margin_m: float = 0.01) -> np.ndarray:
    """Render the board as a grey uint8 image at ``px_per_m`` with a white margin.

    Returns:
        ``H×W`` uint8 image; the first square's top-left corner is at ``(margin, margin)`` in metres.
    """
    w_m, h_m = spec.size_m
    w_px, h_px = int(round(w_m * px_per_m)), int(round(h_m * px_per_m))
    m_px = int(round(margin_m * px_per_m))
    if spec.kind == "charuco":
        body = spec.cv_board().generateImage((w_px, h_px), marginSize=0, borderBits=1)
    else:
        ys, xs = np.mgrid[0:h_px, 0:w_px]
        sq = spec.square_m * px_per_m
        body = np.where(((xs // sq).astype(int) + (ys // sq).astype(int)) % 2 == 0, 0, 255).astype(np.uint8)
    out = np.full((h_px + 2 * m_px, w_px + 2 * m_px), 255, np.uint8)
    out[m_px:m_px + h_px, m_px:m_px + w_px] = body

    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_board_png(image: np.ndarray, path: Path | str, dpi: float) -> None:
    """Write a grey image as PNG with its physical resolution (pHYs), so viewers print it at true scale."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise CalibrationError(f"could not encode {path}")
    data = buf.tobytes()
    ppm = int(round(dpi / 0.0254))
    phys = _png_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))
    ihdr_end = 8 + 8 + 13 + 4  # signature + IHDR header, payload and CRC
    Path(path).write_bytes(data[:ihdr_end] + phys + data[ihdr_end:])


def write_board_pdf(image: np.ndarray, path: Path | str, width_m: float, height_m: float,
                    caption: str = "", paper: str = "a4") -> None:
    """Write a one-page PDF that places the grey ``image`` at exactly ``width_m`` × ``height_m``.

    The page is ``paper`` (see :data:`PAPER_MM`; portrait or landscape) when the board fits, otherwise board size
    plus margins. A 50 mm scale bar and the caption are printed under the board so the print scale can be checked
    with a ruler.
    """
    pt_per_m = 72.0 / 0.0254
    bw, bh = width_m * pt_per_m, height_m * pt_per_m
    pw, ph = PAPER_MM[paper]
    sheet = (pw / 1000 * pt_per_m, ph / 1000 * pt_per_m)
    pages = [sheet, sheet[::-1]]
    page = next((p for p in pages if bw + 20 <= p[0] and bh + 60 <= p[1]), (bw + 60, bh + 100))
    x0, y0 = (page[0] - bw) / 2, page[1] - bh - 30  # 30 pt top margin
    bar = 0.05 * pt_per_m
    h, w = image.shape[:2]
    pixels = zlib.compress(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), 9)
    text = caption.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    content = (f"q {bw:.4f} 0 0 {bh:.4f} {x0:.4f} {y0:.4f} cm /Im0 Do Q\n"
               f"0 g {x0:.4f} {y0 - 20:.4f} {bar:.4f} 4 re f\n"
               f"BT /F1 9 Tf {x0:.4f} {y0 - 34:.4f} Td (50 mm) Tj ET\n"
               f"BT /F1 9 Tf {x0:.4f} {y0 - 48:.4f} Td ({text}) Tj ET\n").encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page[0]:.4f} {page[1]:.4f}] "
         f"/Resources << /XObject << /Im0 4 0 R >> /Font << /F1 6 0 R >> >> /Contents 5 0 R >>").encode(),
        (f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray "
         f"/BitsPerComponent 8 /Interpolate false /Filter /FlateDecode /Length {len(pixels)} >>\nstream\n").encode()
        + pixels + b"\nendstream",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    Path(path).write_bytes(bytes(out))


def fit_to_paper(spec: BoardSpec, paper: str, margin_mm: float = PAGE_MARGIN_MM,
                 caption_mm: float = CAPTION_MM, step_mm: float = 0.5) -> BoardSpec:
    """``spec`` with the largest square (a multiple of ``step_mm``) that prints on ``paper`` with margins.

    The board plus its 10 mm quiet zone must fit inside the sheet less ``margin_mm`` on every side and
    ``caption_mm`` for the scale bar and caption, in portrait or landscape. ChArUco markers keep their ratio to
    the square.

    Raises:
        ConfigError: unknown paper, or no square of at least 5 mm fits.
    """
    if paper not in PAPER_MM:
        raise ConfigError(f"unknown paper {paper!r}", key="paper", suggestions=sorted(PAPER_MM))
    pw, ph = PAPER_MM[paper]
    best = 0.0
    for w, h in ((pw, ph), (ph, pw)):
        avail_w = w - 2 * margin_mm - 20.0   # 10 mm quiet zone each side
        avail_h = h - 2 * margin_mm - caption_mm - 20.0
        best = max(best, min(avail_w / spec.squares_x, avail_h / spec.squares_y))
    square_mm = np.floor(best / step_mm) * step_mm
    if square_mm < 5.0:
        raise ConfigError(f"a {spec.squares_x}x{spec.squares_y} board does not fit {paper} with squares >= 5 mm",
                          key="paper")
    ratio = spec.marker_m / spec.square_m
    return replace(spec, square_m=round(square_mm / 1000.0, 6), marker_m=round(square_mm * ratio / 1000.0, 6))


def write_board(spec: BoardSpec, path: Path | str, dpi: float = 300.0, margin_m: float = 0.01,
                paper: str | None = None) -> Path:
    """Render the board to ``path`` (``.png`` or ``.pdf``) at true scale.

    Args:
        spec: the board.
        path: output file; the suffix picks the format.
        dpi: raster resolution (pixels per inch) of the board image.
        margin_m: white quiet zone around the board (m).
        paper: ``a4`` or ``letter``: the PDF page is that sheet (the board must fit: see :func:`fit_to_paper`);
            a PNG becomes the whole sheet at ``dpi`` with the board centred and the caption under it.

    Raises:
        ConfigError: bad suffix, unknown paper, or a board that does not fit the paper.

    Returns:
        The path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".pdf"):
        raise ConfigError(f"board output must end in .png or .pdf, got {path.name}", key="out")
    if paper is not None:
        largest = fit_to_paper(spec, paper).square_m  # ConfigError for an unknown paper
        if largest + 1e-9 < spec.square_m:
            raise ConfigError(f"a {spec.squares_x}x{spec.squares_y} board with {spec.square_m * 1000:g} mm squares "
                              f"does not fit {paper} with margins (largest square: {largest * 1000:g} mm)",
                              key="square_m")
    image = render_board(spec, dpi / 0.0254, margin_m)
    w_m, h_m = spec.size_m
    caption = board_caption(spec, paper)
    if suffix == ".png":
        if paper is not None:
            image = _page_png(image, paper, dpi, caption)
        write_board_png(image, path, dpi)
    else:
        write_board_pdf(image, path, w_m + 2 * margin_m, h_m + 2 * margin_m, caption, paper or "a4")
    return path


def board_caption(spec: BoardSpec, paper: str | None = None) -> str:
    """The line printed under the board: kind, squares, square (and marker) size, paper, print instructions."""
    return (f"edgepad {spec.kind} {spec.squares_x}x{spec.squares_y} squares, square {spec.square_m * 1000:g} mm"
            + (f", marker {spec.marker_m * 1000:g} mm, {spec.dictionary}" if spec.kind == "charuco" else "")
            + (f", {paper.upper() if paper == 'a4' else paper}" if paper else "")
            + ". Print at 100 % (no fit-to-page) and check the bar.")


def _page_png(board: np.ndarray, paper: str, dpi: float, caption: str) -> np.ndarray:
    """The whole sheet (portrait or landscape, whichever fits) with the board centred, a 50 mm bar and text."""
    px_per_mm = dpi / 25.4
    pw, ph = PAPER_MM[paper]
    bh, bw = board.shape
    for w_mm, h_mm in ((pw, ph), (ph, pw)):
        w, h = int(round(w_mm * px_per_mm)), int(round(h_mm * px_per_mm))
        if bw <= w - 2 * PAGE_MARGIN_MM * px_per_mm and bh <= h - (2 * PAGE_MARGIN_MM + CAPTION_MM) * px_per_mm:
            break
    page = np.full((h, w), 255, np.uint8)
    x0 = (w - bw) // 2
    y0 = int(round(PAGE_MARGIN_MM * px_per_mm))
    page[y0:y0 + bh, x0:x0 + bw] = board
    yb = y0 + bh + int(round(3 * px_per_mm))
    page[yb:yb + max(2, int(round(1.5 * px_per_mm))), x0:x0 + int(round(50 * px_per_mm))] = 0
    scale = max(0.3, 2.2 * px_per_mm / 22.0)
    cv2.putText(page, "50 mm", (x0, yb + int(round(8 * px_per_mm))), cv2.FONT_HERSHEY_SIMPLEX, scale, 0,
                max(1, int(scale * 2)), cv2.LINE_AA)
    cv2.putText(page, caption[:110], (x0, yb + int(round(14 * px_per_mm))), cv2.FONT_HERSHEY_SIMPLEX,
                scale * 0.8, 0, max(1, int(scale * 1.6)), cv2.LINE_AA)
    return page
