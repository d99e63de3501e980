"""``edgepad evaluate --data`` on a data section of every loader kind, with crops resized to the model (issue 17)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepad.cli import main
from edgepad.evaluation import read_scores, resolve_data, score_protocol
from edgepad.errors import ConfigError

from tests.helpers.data_formats import make_casia_surf, make_wmca

from .test_evaluate_model import S, onnx_model  # noqa: F401  (the tiny model fixture, inputs S×S)

CROP = 20          # crops in the fixtures: != S, so evaluate must resize them


@pytest.fixture(scope="module")
def wmca(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmca")
    w = make_wmca(root, bits=16, size=CROP)
    cfg = root / "train.yaml"
    cfg.write_text("model:\n  name: flexmodal\ndata:\n  kind: wmca\n  protocol: grandtest\n"
                   f"  cdit_root: {w['cdit_root']}\n  rgb_root: {w['rgb_root']}\n  protocol_dir: protocols\n")
    return root, cfg


@pytest.fixture(scope="module")
def casia(tmp_path_factory):
    root = make_casia_surf(tmp_path_factory.mktemp("casia"), size=CROP)
    cfg = root / "data.yaml"
    cfg.write_text("kind: casia_surf\nroot: .\ntrain_list: train_list.txt\ndev_list: val_private_list.txt\n"
                   "eval_list: test_private_list.txt\nflat_videos: folder\n")
    return root, cfg


def test_evaluate_wmca_layout_from_a_training_config(wmca, onnx_model, tmp_path, capsys):  # noqa: F811
    root, cfg = wmca
    rc = main(["evaluate", "--model", str(onnx_model), "--data", str(cfg), "--out", str(tmp_path / "o"),
               "--criterion", "eer", "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    assert "τ from dev (eer, rule gap_logit), applied to eval" in capsys.readouterr().out
    ev = read_scores(tmp_path / "o" / "scores-eval.csv")
    assert len(ev) == 6 and ev.species == ["prints", "rigidmask"]      # the absent listed video is skipped
    assert len(read_scores(tmp_path / "o" / "frames" / "scores-dev.csv")) == 6 * 3
    assert np.all(np.isfinite(ev.score))
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["protocol"] == "grandtest" and doc["model"]["data_kind"] == "wmca"
    assert doc["model"]["depth_encoding"] == "mm16"
    # the release root itself is not the benchmark layout: the error says what to use
    rc = main(["evaluate", "--model", str(onnx_model), "--data", str(root), "--out", str(tmp_path / "x")])
    assert rc == 1 and "kind: wmca" in capsys.readouterr().err


def test_evaluate_casia_surf_flat_val_and_8bit_depth(casia, onnx_model, tmp_path, capsys):  # noqa: F811
    root, cfg = casia
    rc = main(["evaluate", "--model", str(onnx_model), "--data", str(cfg), "--out", str(tmp_path / "o"),
               "--criterion", "eer", "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    ev = read_scores(tmp_path / "o" / "scores-eval.csv")
    assert sorted(ev.test_label) == [f"Testing/{i:04d}" for i in range(4)]
    assert ev.species == ["print_variant_unlisted"] and int(ev.is_bonafide.sum()) == 2
    doc = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert doc["model"]["data_kind"] == "casia_surf" and doc["model"]["depth_encoding"] == "uint8_normalised"
    assert doc["protocol"] == "casia_surf:test_private_list"


def test_scores_are_the_model_on_resized_normalised_crops(casia, onnx_model):  # noqa: F811
    from edgepad.data.transforms import normalise_sample, resize_to_inputs
    from edgepad.engines.backend import load_backend
    from edgepad.evaluation import fold_dataset
    root, cfg = casia
    be = load_backend(onnx_model, "auto")
    frames = score_protocol(be, cfg, None, folds=("eval",))["eval"]
    smp = fold_dataset(cfg, "eval")[0]
    assert smp.modalities["rgb"].shape == (CROP, CROP, 3) and smp.depth_encoding == "uint8_normalised"
    crops = resize_to_inputs(smp.modalities, be.manifest.inputs)
    assert crops["depth"].shape == (S, S)
    be.activate()
    try:
        want = float(np.asarray(be.infer(normalise_sample(crops, be.manifest.inputs, 0.001,
                                                          depth_encoding="uint8_normalised"))["score"])[0])
    finally:
        be.deactivate()
    assert frames.score[0] == pytest.approx(want, rel=1e-5)


def test_resolve_data_rejects_a_plain_file(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="data config"):
        resolve_data(f)
    assert resolve_data({"data": {"kind": "synthetic", "root": str(tmp_path)}}, "LOO_x").protocol == "LOO_x"


def test_evaluate_cefa_lists(onnx_model, tmp_path):  # noqa: F811
    from edgepad.evaluation import evaluate_model

    from tests.helpers.data_formats import make_cefa
    root = make_cefa(tmp_path / "cefa", size=CROP)
    data = {"data": {"kind": "cefa", "root": str(root), "train_list": "4@1_train.txt",
                     "dev_list": "4@1_dev_res.txt", "eval_list": "4@1_test_res.txt"}}
    doc = evaluate_model(onnx_model, data, None, tmp_path / "o", criterion="eer", plots=False)
    ev = read_scores(tmp_path / "o" / "scores-eval.csv")
    assert len(ev) == 6 and ev.species == ["cloth", "screen"]
    assert set(doc["result"]["bpcer_per_group"]) == {"AF", "CA"}
    assert doc["model"]["depth_encoding"] == "uint8_normalised" and doc["protocol"] == "cefa:4@1_test_res"
