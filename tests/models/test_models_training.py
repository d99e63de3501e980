"""Tiny training runs: every method from a config, resume == uninterrupted, DDP with 2 gloo processes, export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from edgepad.errors import ConfigError  # noqa: E402
from edgepad.training import load_train_config, load_checkpoint, throughput, train  # noqa: E402

from tests.helpers.datasets import write_cfg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name,over", [
    ("cmfl", {"model.name": "cmfl", "model.modalities": ["rgb", "depth"], "loss.kind": "cmfl", "loss.gamma": 3.0}),
    ("xattn", {"model.fusion": "xattn", "loss.kind": "bce"}),
    ("mwb", {"model.name": "multilayer", "loss.kind": "abc", "loss.lambda_c": 1e-3, "model.kwargs":
             {"backbone_kwargs": {"width": 8}, "modality_dropout": 0.5}}),
])
def test_each_method_trains_from_config(tmp_path, bench, name, over):
    cfg = load_train_config(write_cfg(tmp_path, bench, **over))
    summary = train(cfg)
    run = Path(cfg.out)
    recs = records(run)
    assert summary["epochs_run"] == 1 and len(recs) == 1
    r = recs[0]
    assert r["samples"] == 4 * 3 * 2 // 8 * 8          # full batches of the 24 train frames
    assert r["select"] == "bpcer20" and 0.0 <= r["select_value"] <= 1.0 and r["train_loss"] > 0
    if name == "cmfl":
        assert "train_cmfl" in r
    if name == "mwb":
        assert r["train_center"] > 0
    model, inputs, ck = load_checkpoint(run / "best.pt")
    assert set(inputs) == set(cfg.model.modalities)
    assert ck["model_kwargs"]["missing_fill"] == {m: 0.0 for m in cfg.model.modalities}
    assert {"optimizer", "rng", "epoch", "scheduler", "objective", "config"} <= set(ck)


def test_resume_reproduces_uninterrupted_run(tmp_path, bench):
    over = {"epochs": 2, "augment.cutout_px": 4, "augment.crop_scale": [0.7, 1.0], "augment.jitter_offset": 20.0,
            "optim.scheduler": "step", "optim.step_size": 1, "model.kwargs": {"backbone_kwargs": {"width": 8},
                                                                             "dropout": 0.3}}
    full = load_train_config(write_cfg(tmp_path, bench, out=str(tmp_path / "full"), **over))
    train(full)
    part_path = write_cfg(tmp_path, bench, out=str(tmp_path / "part"), **over)
    train(load_train_config(part_path, {"epochs": 1}))
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=False)["epoch"] == 0
    train(load_train_config(part_path), resume=True)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 1
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ra, rb = records(tmp_path / "full"), records(tmp_path / "part")
    assert ra[1]["train_loss"] == rb[1]["train_loss"] and ra[1]["lr"] == rb[1]["lr"] == 0.0005
    # the best epoch: lowest select value, ties to the lower dev loss (first such epoch)
    key = min(range(len(ra)), key=lambda i: (ra[i]["select_value"], ra[i]["dev_loss"], i))
    assert ra[-1]["best_epoch"] == ra[key]["epoch"]
    assert torch.load(tmp_path / "full" / "best.pt", weights_only=False)["epoch"] == ra[key]["epoch"]
    # and a different seed gives a different model (the comparison can fail)
    other = load_train_config(write_cfg(tmp_path, bench, out=str(tmp_path / "other"), seed=1, **over))
    train(other)
    c = torch.load(tmp_path / "other" / "last.pt", weights_only=False)
    assert any(not torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])


def test_cli_train_then_export_with_operating_points(tmp_path, bench):
    pytest.importorskip("onnxruntime")
    from edgepad.cli import main
    cfg = write_cfg(tmp_path, bench, **{"inputs.ir_distance_ref_m": 0.6, "inputs.clip": {"ir": [0, 160]}})
    onnx_path = tmp_path / "m.onnx"
    assert main(["train", str(cfg), "--quiet", "--export", str(onnx_path)]) == 0
    man = json.loads((tmp_path / "m.onnx.json").read_text())
    ops = man["operating_points"]["bpcer20"]
    assert set(ops) == {"rgb+depth+ir", "rgb+depth", "rgb+ir", "rgb"}
    assert man["threshold"] == ops["rgb+depth+ir"] and man["threshold_criterion"] == "bpcer20"
    assert all(spec["missing_fill"] == 0.0 for spec in man["inputs"].values())
    assert man["inputs"]["ir"]["distance_ref_m"] == 0.6 and man["inputs"]["ir"]["clip"] == [0.0, 160.0]
    assert man["inputs"]["rgb"]["distance_ref_m"] is None
    assert main(["train", str(cfg), "--set", "epochs=x"]) == 1     # typed config error, not a traceback


def test_config_typos_get_suggestions(tmp_path, bench):
    p = write_cfg(tmp_path, bench, epocs=3)
    with pytest.raises(ConfigError) as e:
        load_train_config(p)
    assert "epochs" in str(e.value)


def test_input_overrides_are_checked(tmp_path, bench):
    from edgepad.training import input_specs
    for over, match in (({"inputs.clip": {"thermal": [0, 1]}}, "thermal"), ({"inputs.clip": {"ir": [9, 1]}}, "hi > lo"),
                        ({"inputs.ir_distance_ref_m": -1.0}, "ir_distance_ref_m")):
        with pytest.raises(ConfigError, match=match):
            input_specs(load_train_config(write_cfg(tmp_path, bench, **over)))
    from edgepad.training import train_transform
    with pytest.raises(ConfigError, match="jitter_modalities"):
        train_transform(load_train_config(write_cfg(tmp_path, bench, **{"augment.jitter_modalities": ["depth"]})))


def test_throughput_report(tmp_path, bench):
    cfg = load_train_config(write_cfg(tmp_path, bench))
    r = throughput(cfg, steps=3, warmup=1)
    assert r["data_samples_per_s"] > 0 and r["compute_samples_per_s"] > 0 and r["train_samples_per_s"] > 0
    assert (r["workers"], r["prefetch"]) == (0, 2)


def test_ddp_two_cpu_processes_gloo(tmp_path, bench):
    cfg = write_cfg(tmp_path, bench, epochs=2, batch_size=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edgepad", "train", str(cfg), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    recs = records(tmp_path / "run")
    assert len(recs) == 2 and all(x["world_size"] == 2 for x in recs)
    n_train = 4 * 3 * 2
    assert recs[0]["samples"] == n_train // (4 * 2) * 4 * 2      # both ranks' shards, full batches
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and not any(k.startswith("module.") for k in ck["state_dict"])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load_and_build(path):
    from edgepad.training import build_model, input_specs
    cfg = load_train_config(path)
    inputs = input_specs(cfg)
    model = build_model(cfg, inputs)
    assert set(model.modalities) == set(cfg.model.modalities)
    assert model.missing_fill == {m: cfg.inputs.missing_fill for m in cfg.model.modalities}


def test_dropping_depth_keeps_the_face_distance_for_ir_compensation():
    """A missing-modality view (dev thresholds per subset, benchmark P3) keeps the face distance the runtime would
    still know, so compensated IR is the same with and without the depth crop."""
    import numpy as np
    from edgepad.data.datasets import Sample
    from edgepad.specs import InputSpec
    from edgepad.preprocess import normalise
    from edgepad.training import WithoutModalities
    depth = np.full((8, 8), 900, np.uint16)
    ir = np.full((8, 8), 40, np.uint8)
    s = Sample({"rgb": np.zeros((8, 8, 3), np.uint8), "depth": depth, "ir": ir}, True, "bonafide", "v")
    view = WithoutModalities([s], {"depth"})
    assert len(view) == 1 and set(view[0].modalities) == {"rgb", "ir"}
    assert view[0].face_depth_m == pytest.approx(0.9)
    spec = {"ir": InputSpec("ir", (1, 1, 8, 8), mean=(0.0,), std=(1.0,), clip=(0.0, 255.0), distance_ref_m=0.6)}
    full = normalise(s.modalities, spec, s.depth_scale_m)["ir"]
    dropped = normalise(view[0].modalities, spec, s.depth_scale_m, face_depth_m=view[0].face_depth_m)["ir"]
    np.testing.assert_allclose(dropped, full)
    np.testing.assert_allclose(full, 40 * 2.25 / 255, rtol=1e-6)
