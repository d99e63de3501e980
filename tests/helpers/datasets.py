"""Tiny datasets written at test time in the exact on-disk layouts the loaders read (no real data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgepad.config import write_mapping

SPECIES = ("print_flat", "replay", "rigidmask")
FAMILY = {"print_flat": "2D", "replay": "2D", "rigidmask": "3D"}


def render_frame(rng: np.random.Generator, species: str, size: int) -> np.ndarray:
    """(5, S, S) uint16 [R, G, B, depth_mm, NIR]; bona fide has facial relief and bright NIR skin,
    prints are flat, replays are NIR-dark, masks have NIR-bright plastic but face-like depth."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2.0
    r2 = ((yy - c) ** 2 + (xx - c) ** 2) / (size / 2.5) ** 2
    base = 600.0 + rng.uniform(-50, 50)
    relief = np.clip(1.0 - r2, 0.0, 1.0) * 40.0
    rgb = np.clip(rng.normal(140, 25, (3, size, size)), 0, 255)
    if species == "bonafide":
        depth, nir = base - relief, 120 + 40 * np.clip(1 - r2, 0, 1)
    elif species == "print_flat":
        depth, nir = np.full_like(xx, base), 200 + 0 * xx
    elif species == "replay":
        depth, nir = base - 0.2 * relief, 15 + 0 * xx
    else:
        depth, nir = base - relief, 230 + 0 * xx
    depth = depth + rng.normal(0, 1.0, depth.shape)
    depth[rng.random(depth.shape) < 0.02] = 0   # holes
    nir = np.clip(nir + rng.normal(0, 8, nir.shape), 0, 255)
    arr = np.concatenate([rgb, depth[None], nir[None]], 0)
    return np.rint(arr).astype(np.uint16)


def make_synthbench(root: Path, videos_per_class: int = 4, frames: int = 3, size: int = 16, seed: int = 0,
                    protocol: str = "grandtest") -> Path:
    """Write a WMCA-style synthetic benchmark: videos/<id>.hdf5, protocols/PROTOCOL-<name>.csv, meta.json."""
    import h5py
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "protocols").mkdir(exist_ok=True)
    rows, meta = [], {}
    vid = 0
    for fold in ("train", "dev", "eval"):
        for species in ("bonafide",) + SPECIES:
            for _ in range(videos_per_class):
                name = f"v{vid:04d}"
                vid += 1
                with h5py.File(root / "videos" / f"{name}.hdf5", "w") as h:
                    for i in range(frames):
                        h.create_group(f"Frame_{i}").create_dataset("array", data=render_frame(rng, species, size))
                bona = species == "bonafide"
                at = "bonafide" if bona else f"attack/{FAMILY[species]}/{species}"
                rows.append(f"videos/{name},{0 if bona else 1},{at},{fold}")
                meta[name] = {"subject": f"s{vid % 5}", "group": f"g{vid % 2}"}
    (root / "protocols" / f"PROTOCOL-{protocol}.csv").write_text("\n".join(rows) + "\n")
    (root / "meta.json").write_text(json.dumps({"generator": "test", "seed": seed, "crop_size": size,
                                                "depth_scale_m": 0.001, "videos": meta}))
    return root


def write_cfg(tmp_path: Path, bench: Path, **over) -> Path:
    """A tiny flexmodal training config on the bench at ``bench`` (``over``: dotted keys, e.g. ``"loss.kind"``)."""
    cfg = {"data": {"kind": "synthbench", "root": str(bench)},
           "model": {"name": "flexmodal", "kwargs": {"backbone_kwargs": {"width": 8}}},
           "inputs": {"size_px": 16}, "epochs": 1, "batch_size": 8, "eval_batch_size": 32,
           "out": str(tmp_path / "run"), "threads": 1, "tensorboard": False}
    for k, v in over.items():
        node = cfg
        *head, last = k.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = v
    path = tmp_path / "cfg.yaml"
    write_mapping(cfg, path)
    return path
