"""Tiny datasets written at test time in the real releases' layouts (docs/EVALUATION.md, "Dataset formats").

Bona fide frames have a face relief in depth and mid-grey IR; attacks are planar with bright IR, so a model that
reads depth relief and IR can separate them at any crop size.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _cv2():
    import pytest
    return pytest.importorskip("cv2")


def relief(size: int, bona: bool, rng, base: float, amp: float) -> np.ndarray:
    """H×W depth-like map: ``base`` + a centred bump of ``amp`` for bona fide, flat + noise for attacks."""
    yy, xx = np.mgrid[0:size, 0:size]
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2) ** 2
    d = base + (amp * (1 - np.minimum(r2, 1.0)) if bona else 0.0) + rng.normal(0, amp / 40 + 0.5, (size, size))
    return d


def write_img(path: Path, img: np.ndarray) -> Path:
    cv2 = _cv2()
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _modalities(size: int, bona: bool, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BGR uint8, depth uint8 normalised, IR uint8) of one frame."""
    bgr = rng.integers(60, 200, (size, size, 3)).astype(np.uint8)
    depth = np.clip(relief(size, bona, rng, 60.0, 150.0), 1, 255).astype(np.uint8)
    ir = np.clip((110 if bona else 200) + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)
    return bgr, depth, ir


def make_casia_surf(root: Path, size: int = 20, frames: int = 2, seed: int = 0) -> Path:
    """CASIA-SURF: train tree (``Training/{real,fake}_part/<ID>/<code>.rssdk/{color,depth,ir}/<n>.jpg``) and
    flat Val / Testing names (``Val/<folder>/<number>-<modality>.jpg``) with ``train_list.txt``,
    ``val_private_list.txt``, ``test_private_list.txt`` (1 = bona fide) and ``test_public_list.txt`` (no labels).
    Depth is 8-bit JPEG, as in the release. Val/Testing: 4 folders each (even = bona fide), ``frames`` frames."""
    rng = np.random.default_rng(seed)
    lines = []
    for sid, (code, bona) in enumerate((("real", True), ("04_en_b", False), ("real", True), ("01_e_f", False),
                                        ("06_enm_b", False))):
        vid = f"Training/{'real' if bona else 'fake'}_part/CLKJ_AS{sid:04d}/{code}.rssdk"
        for n in range(frames):
            bgr, depth, ir = _modalities(size, bona, rng)
            num = 31 + 10 * n
            write_img(root / vid / "color" / f"{num}.jpg", bgr)
            write_img(root / vid / "depth" / f"{num}.jpg", depth)
            write_img(root / vid / "ir" / f"{num}.jpg", ir)
            lines.append(f"{vid}/color/{num}.jpg {vid}/depth/{num}.jpg {vid}/ir/{num}.jpg {int(bona)}")
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    counter = 0
    for top, name in (("Val", "val_private_list.txt"), ("Testing", "test_private_list.txt")):
        lines, public = [], []
        for folder in range(4):
            bona = folder % 2 == 0
            for _ in range(frames):
                stem = f"{top}/{folder:04d}/{counter:06d}"
                counter += 1
                bgr, depth, ir = _modalities(size, bona, rng)
                write_img(root / f"{stem}-color.jpg", bgr)
                write_img(root / f"{stem}-depth.jpg", depth)
                write_img(root / f"{stem}-ir.jpg", ir)
                lines.append(f"{stem}-color.jpg {stem}-depth.jpg {stem}-ir.jpg {int(bona)}")
                public.append(f"{stem}-color.jpg {stem}-depth.jpg {stem}-ir.jpg")
        (root / name).write_text("\n".join(lines) + "\n")
    (root / "test_public_list.txt").write_text("\n".join(public) + "\n")
    return root


def make_wmca(root: Path, bits: int = 16, size: int = 20, frames: int = 3, seed: int = 0,
              missing: bool = True) -> dict[str, Path]:
    """WMCA preprocessed release: ``WMCA_preprocessed_CDIT/WMCA/face-station/<date>/<id>.hdf5`` (4, S, S) =
    [grey, depth, IR, thermal] and ``WMCA_preprocessed_RGB/…`` (3, S, S), ``Frame_<i>/array``; protocol CSV
    ``PROTOCOL-grandtest.csv`` (no header, 0 = bona fide), folds train/dev/eval with 2 bona fide + 2 prints +
    2 rigidmask videos each. ``bits`` 16: uint16 with depth in mm (~500); 8: uint8 normalised depth.
    ``missing``: the first video lacks RGB frame 0 and CDIT frame 2 has no array; one listed video is absent."""
    import pytest
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(seed)
    cdit = root / "WMCA_preprocessed_CDIT" / "WMCA"
    rgbr = root / "WMCA_preprocessed_RGB" / "WMCA"
    prot = root / "protocols"
    prot.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if bits == 16 else np.uint8
    rows, i = [], 0
    for fold in ("train", "dev", "eval"):
        for species, label in (("bonafide", 0), ("attack/2D/prints", 1), ("attack/3D/rigidmask", 1)):
            for _ in range(2):
                bona = label == 0
                pai = {"bonafide": "00", "attack/2D/prints": "81", "attack/3D/rigidmask": "55"}[species]
                rel = f"face-station/17.01.18/{i:03d}_01_000_{0 if bona else 2}_{pai}"
                for d in (cdit, rgbr):
                    (d / rel).parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(cdit / f"{rel}.hdf5", "w") as hc, h5py.File(rgbr / f"{rel}.hdf5", "w") as hr:
                    for f in range(frames):
                        d = relief(size, bona, rng, 500.0, 40.0) if bits == 16 else relief(size, bona, rng, 60, 150)
                        grey = rng.integers(60, 200, (size, size))
                        ir = (110 if bona else 200) + rng.normal(0, 8, (size, size))
                        th = rng.integers(0, 255, (size, size))
                        arr = np.stack([grey, np.clip(d, 1, 65535 if bits == 16 else 255), np.clip(ir, 0, 255), th])
                        g = hc.create_group(f"Frame_{f}")
                        if not (missing and i == 0 and f == 2):
                            g.create_dataset("array", data=arr.astype(dtype))
                        if not (missing and i == 0 and f == 0):
                            hr.create_group(f"Frame_{f}").create_dataset(
                                "array", data=rng.integers(0, 255, (3, size, size)).astype(dtype))
                rows.append([rel, label, species, fold])
                i += 1
    if missing:
        rows.append(["face-station/17.01.18/999_01_000_0_00", 0, "bonafide", "eval"])
    with open(prot / "PROTOCOL-grandtest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return {"cdit_root": cdit, "rgb_root": rgbr, "protocol_dir": prot}


def make_cefa(root: Path, size: int = 20, frames: int = 2, seed: int = 0) -> Path:
    """CeFA: ``<race>/<race>-<id>/<race>_<id>_<device>_<session>_<pai>/{profile,depth,ir}/000<n>.jpg`` and lists
    ``4@1_train.txt``, ``4@1_dev_res.txt``, ``4@1_test_res.txt`` (``<video>/profile/0001.jpg label``, 1 = real)."""
    rng = np.random.default_rng(seed)
    sid = 0
    for name in ("train", "dev_res", "test_res"):
        lines = []
        for race_code, race in (("1", "AF"), ("2", "CA")):
            for pai in ("1", "2", "4"):
                sid += 1
                vid = f"{race}/{race}-{sid:03d}/{race_code}_{sid:03d}_1_1_{pai}"
                for n in range(1, frames + 1):
                    bgr, depth, ir = _modalities(size, pai == "1", rng)
                    write_img(root / vid / "profile" / f"{n:04d}.jpg", bgr)
                    write_img(root / vid / "depth" / f"{n:04d}.jpg", depth)
                    write_img(root / vid / "ir" / f"{n:04d}.jpg", ir)
                    lines.append(f"{vid}/profile/{n:04d}.jpg {int(pai == '1')}")
        (root / f"4@1_{name}.txt").write_text("\n".join(lines) + "\n")
    return root
