"""The one checkpoint reader: real training checkpoints load; pickled code is refused and never runs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepad.errors import CheckpointError, ManifestError  # noqa: E402
from edgepad.models.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from edgepad.training import TrainConfig, build_model, build_objective, build_optimizer, input_specs  # noqa: E402
from edgepad.training.config import InputConfig, LossConfig, ModelConfig, OptimConfig  # noqa: E402
from edgepad.training.loop import _checkpoint, _save  # noqa: E402


def _training_checkpoint(path: Path, loss: str = "abc") -> tuple[Path, object]:
    """``last.pt`` exactly as the training loop writes it (model, objective, optimizer, scheduler, RNG states)."""
    cfg = TrainConfig(model=ModelConfig(kwargs={"backbone_kwargs": {"width": 8}}), inputs=InputConfig(size_px=16),
                      loss=LossConfig(kind=loss), optim=OptimConfig(name="adam", scheduler="step"))
    torch.manual_seed(0)
    inputs = input_specs(cfg)
    model = build_model(cfg, inputs)
    objective = build_objective(cfg, model)
    opt, sch = build_optimizer(cfg, model, objective)
    feed = {m: torch.randn(4, *tuple(s.shape)[1:]) for m, s in inputs.items()}
    loss_value, _ = objective(model(feed), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    loss_value.backward()
    opt.step()          # optimizer state holds tensors and step counts
    sch.step()
    best = {"epoch": 0, "value": 0.25, "select": "bpcer20", "dev_loss": 0.7}
    _save(_checkpoint(model, objective, opt, sch, None, 0, best, cfg, inputs), path)
    return path, model.eval()


def test_a_training_checkpoint_loads(tmp_path):
    path, model = _training_checkpoint(tmp_path / "last.pt")
    ck = read_checkpoint(path)
    assert isinstance(ck["rng"]["numpy"][1], np.ndarray) and ck["rng"]["numpy"][1].dtype == np.uint32
    assert ck["epoch"] == 0 and ck["best"]["select"] == "bpcer20" and ck["optimizer"]["state"]
    assert ck["config"]["model"]["name"] == "flexmodal"
    rebuilt, inputs, _ = load_checkpoint(path)
    assert set(inputs) == {"rgb", "depth", "ir"} and tuple(inputs["rgb"].shape)[1:] == (3, 16, 16)
    feed = {m: torch.randn(2, *tuple(s.shape)[1:]) for m, s in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(feed)["logit"], model(feed)["logit"])


class _RunsCode:
    """Unpickling this calls ``fn(*args)``: the classic pickle code-execution payload."""

    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("payload", ["touch", "os.system"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = (_RunsCode(Path.touch, (marker,)) if payload == "touch"
            else _RunsCode(os.system, (f"touch '{marker}'",)))
    path, _ = _training_checkpoint(tmp_path / "best.pt", loss="bce")
    ck = torch.load(path, weights_only=False)
    ck["config"] = {"note": evil}
    torch.save(ck, path)
    with pytest.raises(CheckpointError, match="refused to unpickle") as info:
        read_checkpoint(path)
    assert isinstance(info.value, ManifestError) and info.value.path == str(path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    from edgepad.engines.torch_backend import write_checkpoint_manifest
    with pytest.raises(CheckpointError):
        write_checkpoint_manifest(path, threshold=0.5, threshold_criterion="bpcer20")
    assert not marker.exists()
    # the file really is a payload: an unrestricted unpickler runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_malformed_checkpoints_are_typed_errors(tmp_path):
    torch.save({"model": "flexmodal", "state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks") as info:
        read_checkpoint(tmp_path / "partial.pt")
    assert info.value.field == "model_kwargs"
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="is a dict"):
        read_checkpoint(tmp_path / "list.pt")
    for i, junk in enumerate([b"not a checkpoint", b"junk", (tmp_path / "list.pt").read_bytes()[:100]]):
        (tmp_path / f"junk{i}.pt").write_bytes(junk)
        with pytest.raises(CheckpointError, match="cannot read"):
            read_checkpoint(tmp_path / f"junk{i}.pt")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "absent.pt")


def test_numpy_values_load_also_when_pickled_under_numpy_1_names(tmp_path):
    import zipfile
    ck = {"model": "flexmodal", "model_kwargs": {}, "state_dict": {}, "inputs": {}, "best": {"value": np.float64(0.5)},
          "rng": {"numpy": ("MT19937", np.arange(3, dtype=np.uint32), 1, 0, 0.0)}}
    torch.save(ck, tmp_path / "np2.pt")
    with zipfile.ZipFile(tmp_path / "np2.pt") as z:
        data = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in data if n.endswith("data.pkl"))
    if b"numpy._core.multiarray" not in data[pkl]:
        pytest.skip("numpy < 2 writes the numpy 1.x names already")
    data[pkl] = data[pkl].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with zipfile.ZipFile(tmp_path / "np1.pt", "w") as z:
        for n, b in data.items():
            z.writestr(n, b)
    for name in ("np2.pt", "np1.pt"):
        got = read_checkpoint(tmp_path / name)
        assert got["best"]["value"] == 0.5 and isinstance(got["best"]["value"], np.float64)
        np.testing.assert_array_equal(got["rng"]["numpy"][1], np.arange(3, dtype=np.uint32))
