"""Training throughput: ``edgepad train``'s real loop against forward+backward on the same batches in memory.

A = :func:`edgepad.training.train` (loader, HDF5 reads/cache, augmentation, normalise, collation, per-step progress
logging; dev evaluation, checkpointing and metrics logging once per epoch). B = the same model (same seed, batch size,
threads) doing forward + backward + optimizer step over the SAME batches (same sampler order and augmentation
seeds), collected into memory beforehand. A and B alternate ``--repeats`` times in one process; medians reported.

    python scripts/train_throughput.py --bench /tmp/bench64 --epochs 4 --steps 3 --repeats 5

``loop`` = training samples / time of the epoch's step loop (what ``metrics.jsonl`` calls samples_per_s);
``epoch`` = training samples / whole epoch time including dev evaluation, checkpoints and logging;
``train_data_wait_fraction`` = the loop's time spent waiting for the next batch (``metrics.jsonl``);
``ratio_loop_paired`` = median over repeats of A_loop / B of the same repeat (adjacent in time: steadier than the
ratio of medians on a shared machine), ``ratio_loop_paired_range`` its min and max. ``--vs prefetch=0`` adds a
second train() arm (A2) to the same rotation, for an A/B of the loader settings under the same load.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "default_edge.yaml"))
    ap.add_argument("--bench", required=True, help="a synthetic benchmark folder (edgepad synth)")
    ap.add_argument("--size", type=int, default=64, help="inputs.size_px (default 64)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="max steps per epoch")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--discard", type=int, default=1, help="unmeasured A+B runs first (default 1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides (YAML)")
    ap.add_argument("--vs", action="append", default=[], metavar="KEY=VALUE",
                    help="a second train() arm with these further overrides (e.g. prefetch=0), run in the same "
                         "rotation A, A2, B (overrides that change the batches are refused)")
    a = ap.parse_args(argv)

    import yaml
    import torch
    from edgepad.training import load_train_config, train
    from edgepad.training.build import build_model, build_objective, build_optimizer, input_specs, train_transform
    from edgepad.training.loop import TrainBatches, _to_device, epoch_batches, seed_everything
    from edgepad.data.transforms import PADDataset
    from edgepad.data.sources import build_dataset

    load_start = os.getloadavg()
    out = Path(tempfile.mkdtemp(prefix="train_tp_"))
    over = {"data.root": str(Path(a.bench).resolve()), "inputs.size_px": a.size, "epochs": a.epochs,
            "max_steps_per_epoch": a.steps, "out": str(out / "run")}
    if a.batch_size:
        over["batch_size"] = a.batch_size
    def parse(kvs):
        return {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in kvs)}

    over.update(parse(a.set))
    cfg = load_train_config(a.config, over)
    vs = parse(a.vs)
    if set(vs) - {"workers", "prefetch"}:
        ap.error(f"--vs takes workers / prefetch only (the batches must stay the same), got {sorted(vs)}")
    cfg2 = load_train_config(a.config, {**over, **vs, "out": str(out / "run2")}) if vs else None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # the batches train() sees: same dataset, transform and plan (epoch order, augmentation seeds, step count)
    inputs = input_specs(cfg)
    ds = PADDataset(build_dataset(cfg.data, cfg.data.train_split, cfg.data.frames_per_video), inputs,
                    train_transform(cfg), seed=cfg.seed)
    plan = [b for e in range(cfg.epochs)
            for b in epoch_batches(len(ds), e, cfg.seed, cfg.batch_size, cfg.max_steps_per_epoch)]
    built = TrainBatches(ds, plan, workers=0, prefetch=0)
    batches = [_to_device(built.next(), torch.device("cpu")) for _ in plan]
    n_samples = sum(int(t.shape[0]) for _, t in batches)

    def ref() -> float:
        seed_everything(cfg.seed)
        model = build_model(cfg, inputs).train()
        objective = build_objective(cfg, model)
        opt, sch = build_optimizer(cfg, model, objective)
        t0 = time.perf_counter()
        for feed, target in batches:
            loss, _ = objective(model(feed), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            float(loss.detach())
        return n_samples / (time.perf_counter() - t0)

    def real(c) -> tuple[float, float, float]:
        recs = []
        train(c, progress=lambda p: recs.append(p) if p.get("done") else None)
        seen = sum(r["samples"] for r in recs)
        loop = [r["samples"] / r["samples_per_s"] for r in recs]
        wait = sum(r["data_wait_fraction"] * t for r, t in zip(recs, loop)) / sum(loop)
        return seen / sum(loop), seen / sum(r["time_s"] for r in recs), wait

    arms = {"A": cfg, **({"A2": cfg2} if cfg2 else {})}
    for _ in range(a.discard):                        # the first run in a process pays one-off start-up costs
        for c in arms.values():
            real(c)
        ref()
    res = {"B": []}
    for _ in range(a.repeats):
        for name, c in arms.items():
            lo, ep, wait = real(c)
            for k, v in (("loop", lo), ("epoch", ep), ("data_wait", wait)):
                res.setdefault(f"{name}_{k}", []).append(v)
        res["B"].append(ref())
    med = {k: statistics.median(v) for k, v in res.items()}

    def ratios(name: str) -> dict:
        return {"train_loop_samples_per_s": round(med[f"{name}_loop"], 1),
                "train_epoch_samples_per_s": round(med[f"{name}_epoch"], 1),
                "ratio_loop": round(med[f"{name}_loop"] / med["B"], 3),
                "ratio_epoch": round(med[f"{name}_epoch"] / med["B"], 3),
                "ratio_loop_paired": round(statistics.median(x / b for x, b in zip(res[f"{name}_loop"], res["B"])), 3),
                "ratio_loop_paired_range": [round(min(x / b for x, b in zip(res[f"{name}_loop"], res["B"])), 3),
                                            round(max(x / b for x, b in zip(res[f"{name}_loop"], res["B"])), 3)],
                "train_data_wait_fraction": round(med[f"{name}_data_wait"], 3)}

    report = {**ratios("A"), "fwd_bwd_samples_per_s": round(med["B"], 1),
              **({"vs": {**vs, **ratios("A2")}} if cfg2 else {}),
              "runs": {k: [round(x, 3 if "wait" in k else 1) for x in v] for k, v in res.items()},
              "samples_per_run": n_samples, "batch_size": cfg.batch_size, "size_px": cfg.inputs.size_px,
              "threads": torch.get_num_threads(), "workers": cfg.workers, "prefetch": cfg.prefetch,
              "loadavg_start": load_start, "loadavg": os.getloadavg()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
