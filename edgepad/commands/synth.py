"""``edgepad synth``: generate the synthetic PAD dataset (HDF5 videos + protocol CSVs + meta.json).

Light module: the generator (:mod:`edgepad.benchmark.dataset`) is imported when the command runs.
"""
from __future__ import annotations

import argparse
import sys

from edgepad.commands.common import nonneg_float, nonneg_int, positive_int, verdict


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (videos/, protocols/, meta.json)")
    parser.add_argument("--videos-per-species", type=positive_int, default=10, metavar="N",
                        help="videos per species and fold (default 10)")
    parser.add_argument("--frames-per-video", type=positive_int, default=5, metavar="F",
                        help="frames per video (default 5)")
    parser.add_argument("--seed", type=nonneg_int, default=0, help="the one seed (default 0)")
    parser.add_argument("--size", type=positive_int, default=112, help="crop side in px (default 112)")
    parser.add_argument("--margin", type=nonneg_float, default=0.25,
                        help="crop margin: the crop side is max(w, h)·(1 + margin) of the face box, in [0, 4] "
                             "(default 0.25)")
    parser.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    parser.add_argument("--subjects-per-fold", type=positive_int, default=12, help="disjoint subject pool per fold")
    parser.add_argument("--width", type=positive_int, default=640, help="render width, 4:3 (default 640)")
    parser.add_argument("--no-cross-domain", action="store_true",
                        help="skip the X_sensor / X_illuminant / X_range eval videos")
    parser.add_argument("--cross-videos-per-species", type=positive_int, default=None, metavar="N",
                        help="eval videos per species of each cross-domain set (default: --videos-per-species)")
    parser.add_argument("--species", default="all", help="comma list of species (bonafide required; default all)")
    parser.add_argument("--randomised", action="store_true",
                        help="also render the camera-physics randomised set: protocols DR_grandtest and X_physics "
                             "(docs/SYNTHETIC.md, Camera physics)")


def synth_main(args: argparse.Namespace) -> int:
    """Generate the dataset into ``--out``; prints a one-line summary."""
    from edgepad.benchmark.dataset import SynthDatasetConfig, generate
    from edgepad.drivers.synthetic import parse_species

    cfg = SynthDatasetConfig(videos_per_species=args.videos_per_species, frames_per_video=args.frames_per_video,
                             seed=args.seed, size_px=args.size, margin=args.margin,
                             subjects_per_fold=args.subjects_per_fold,
                             width=args.width, height=args.width * 3 // 4, cross_domain=not args.no_cross_domain,
                             cross_videos_per_species=args.cross_videos_per_species,
                             species=parse_species(args.species), randomised=args.randomised)

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} videos", end="" if done < total else "\n", file=sys.stderr, flush=True)
        elif done == total or done % 50 == 0:
            print(f"{done}/{total} videos", file=sys.stderr, flush=True)

    meta = generate(args.out, cfg, workers=args.workers, progress=progress)
    t = meta["timing"]
    why = (f"{len(meta['videos'])} videos ({t['samples']} frames) and {len(meta['protocols'])} protocols in "
           f"{t['seconds']:.1f} s ({t['samples_per_s']:.1f} samples/s, {args.workers} worker(s))")
    return verdict(args, True, why, [args.out])
