"""Training metrics logs: metrics.csv beside metrics.jsonl (resumable), TensorBoard event files when importable."""
from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from edgepad._optional import available  # noqa: E402
from edgepad.config import write_mapping  # noqa: E402
from edgepad.training import load_train_config, train  # noqa: E402
from edgepad.training.loop import _Logger  # noqa: E402

from tests.helpers.datasets import make_synthbench  # noqa: E402


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_synthbench(tmp_path_factory.mktemp("logbench"), videos_per_class=2, frames=2, size=16)


def write_cfg(tmp_path: Path, bench: Path, **over) -> Path:
    cfg = {"data": {"kind": "synthbench", "root": str(bench)},
           "model": {"name": "flexmodal", "kwargs": {"backbone_kwargs": {"width": 4}}},
           "inputs": {"size_px": 16}, "epochs": 1, "batch_size": 8, "eval_batch_size": 32,
           "out": str(tmp_path / "run"), "threads": 1, "tensorboard": False}
    cfg.update(over)
    path = tmp_path / "cfg.yaml"
    write_mapping(cfg, path)
    return path


def jsonl(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def csv_rows(run: Path) -> tuple[list[str], list[dict]]:
    with (run / "metrics.csv").open(newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def tb_scalars(tb_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def tensorboard_importable() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        import tensorboard.backend.event_processing.event_accumulator  # noqa: F401
    except ImportError:
        return False
    return True


def test_csv_matches_jsonl_and_resume_does_not_duplicate(tmp_path, bench):
    tb = tensorboard_importable()
    path = write_cfg(tmp_path, bench, tensorboard=tb)
    run = tmp_path / "run"
    summary = train(load_train_config(path, {"epochs": 1}))
    cols, rows = csv_rows(run)
    assert [r["epoch"] for r in rows] == ["0"]
    if available("matplotlib"):                      # the curves are drawn from metrics.jsonl at the end of train
        assert summary["curves"] == str(run / "training_curves.png")
        assert (run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a stale record past the checkpoint (e.g. last.pt restored from an older copy) must not survive a resume
    stale = {**jsonl(run)[0], "epoch": 1, "train_loss": -123.0}
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(stale) + "\n")
    with (run / "metrics.csv").open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=cols, lineterminator="\n").writerow(stale)

    train(load_train_config(path, {"epochs": 2}), resume=True)
    recs = jsonl(run)
    cols, rows = csv_rows(run)
    assert [r["epoch"] for r in recs] == [0, 1] and [r["epoch"] for r in rows] == ["0", "1"]
    assert all(r["train_loss"] > 0 for r in recs)
    assert cols[0] == "epoch"
    assert set(cols) == set(recs[0]) | set(recs[1])
    for want in ("train_loss", "train_bce", "lr", "samples", "samples_per_s", "data_wait_fraction", "dev_loss",
                 "select", "select_value", "best_epoch", "time_s"):
        assert want in cols, want
    for rec, row in zip(recs, rows):       # same rows, values round-trip exactly
        for k, v in rec.items():
            if isinstance(v, float):
                assert float(row[k]) == v, k
            else:
                assert row[k] == str(v), k
    if tb:
        steps = tb_scalars(run / "tb", "train_loss")
        assert [s for s, _ in steps] == [0, 1]              # the resumed writer purged nothing it needed
        assert [v for _, v in steps] == pytest.approx([r["train_loss"] for r in recs], rel=1e-6)

    # a fresh (non-resume) run in the same folder starts the logs over
    train(load_train_config(path, {"epochs": 1}))
    assert [r["epoch"] for r in jsonl(run)] == [0] and [r["epoch"] for r in csv_rows(run)[1]] == ["0"]
    if tb:
        assert [s for s, _ in tb_scalars(run / "tb", "train_loss")] == [0]


def test_tensorboard_event_files_written(tmp_path, bench):
    if not tensorboard_importable():
        pytest.skip("tensorboard not installed (pip install tensorboard)")
    path = write_cfg(tmp_path, bench, tensorboard=True)
    train(load_train_config(path))
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert events and all(p.stat().st_size > 0 for p in events)
    rec = jsonl(tmp_path / "run")[0]
    for tag in ("train_loss", "dev_loss", "select_value", "lr"):
        (step, value), = tb_scalars(tmp_path / "run" / "tb", tag)
        assert step == 0 and value == pytest.approx(rec[tag], rel=1e-6)


def test_tensorboard_absent_is_a_clean_skip(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import now raises ImportError
    with caplog.at_level(logging.INFO, logger="edgepad.training"):
        lg = _Logger(tmp_path, True, True)
    assert lg.tb is None and any("TensorBoard not available" in r.getMessage() for r in caplog.records)
    lg.write({"epoch": 0, "train_loss": 0.5})
    lg.close()
    assert not (tmp_path / "tb").exists()
    assert csv_rows(tmp_path)[1] == [{"epoch": "0", "train_loss": "0.5"}]


def test_csv_header_grows_with_new_keys_in_stable_order(tmp_path):
    lg = _Logger(tmp_path, True, False)
    lg.write({"epoch": 0, "b": 1.5, "a": "x"})
    lg.write({"epoch": 1, "a": "y", "c": {"k": 1}, "b": 2.0})
    lg.write({"epoch": 2, "b": 3.0})
    lg.close()
    cols, rows = csv_rows(tmp_path)
    assert cols == ["epoch", "b", "a", "c"]
    assert rows == [{"epoch": "0", "b": "1.5", "a": "x", "c": ""},
                    {"epoch": "1", "b": "2.0", "a": "y", "c": '{"k": 1}'},
                    {"epoch": "2", "b": "3.0", "a": "", "c": ""}]
    # resuming at epoch 2 keeps epochs 0, 1 and the header; a disabled logger (non-main rank) writes nothing
    _Logger(tmp_path, True, False, start_epoch=2).close()
    assert csv_rows(tmp_path) == (cols, rows[:2])
    assert [r["epoch"] for r in jsonl(tmp_path)] == [0, 1]
    other = tmp_path / "rank1"
    other.mkdir()
    _Logger(other, False, True).write({"epoch": 0, "x": 1.0})
    assert list(other.iterdir()) == []


def test_cli_train_output_is_plain_lines_with_1based_epochs_matching_the_files(tmp_path, bench, monkeypatch,
                                                                               capsys):
    """No ``\\r`` off a terminal, one line per epoch, a repeated warning once + its count, numbers == files."""
    import warnings

    import edgepad.training.loop as loop
    from edgepad.cli import main
    from edgepad.commands.models import epoch_line

    real = loop._evaluate

    def noisy(*a, **k):
        for _ in range(7):
            logging.getLogger("edgepad.training.loop").warning("dev set is tiny")
        warnings.warn("a python warning each epoch", UserWarning)
        return real(*a, **k)

    monkeypatch.setattr(loop, "_evaluate", noisy)
    path = write_cfg(tmp_path, bench)
    assert main(["train", str(path), "--set", "epochs=2"]) == 0
    cap = capsys.readouterr()
    assert "\r" not in cap.out + cap.err
    lines = [x for x in cap.err.splitlines() if x.startswith("epoch ")]
    recs = jsonl(tmp_path / "run")
    assert len(lines) == 2 == len(recs)
    assert [x.split(":")[0] for x in lines] == ["epoch 1/2", "epoch 2/2"]
    assert [r["epoch_1based"] for r in recs] == [r["epoch"] + 1 for r in recs] == [1, 2]
    assert lines == [epoch_line({**r, "epochs": 2}) for r in recs]
    assert f"best epoch {recs[-1]['best_epoch_1based']} " in lines[-1]
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["epoch_1based"]) == (1, 2)
    # the 14 warnings: printed once when first seen, then one count line at the end of the run
    said = [x for x in cap.err.splitlines() if "dev set is tiny" in x]
    assert said == ["WARNING edgepad.training.loop: dev set is tiny",
                    "WARNING edgepad.training.loop: dev set is tiny (repeated 13 times)"]
    assert sum("UserWarning: a python warning each epoch" in x for x in cap.err.splitlines()) == 1
    # the end: a readable summary on stdout (not JSON) and the verdict naming the best epoch (1-based)
    assert cap.out.startswith("trained 2 epoch(s) (1..2 of 2)")
    best = recs[-1]["best_epoch_1based"]
    assert f"best epoch {best}:" in cap.out
    assert cap.err.rstrip().splitlines()[-1].startswith(f"edgepad train: PASS: trained 2 epoch(s), best epoch {best} ")
    # --resume --json: stdout is the summary as JSON only, counting on from the checkpoint
    assert main(["train", str(path), "--set", "epochs=3", "--resume", "--json", "--quiet"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert (doc["epochs_run"], doc["start_epoch_1based"], doc["last_epoch_1based"]) == (1, 3, 3)
    assert [r["epoch_1based"] for r in jsonl(tmp_path / "run")] == [1, 2, 3]
    assert not [x for x in cap.err.splitlines() if x.startswith("epoch ")]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_train_progress_bar_only_on_a_terminal(tty):
    """A tqdm bar over the epoch's steps on a terminal; in logs and pipes no ``\\r`` at all, one line per epoch."""
    pytest.importorskip("tqdm")
    from edgepad.commands.models import _progress_printer
    out = _Tty() if tty else io.StringIO()
    show = _progress_printer(False, out)
    for step in (1, 2, 3):
        show({"epoch": 0, "epoch_1based": 1, "epochs": 2, "step": step, "steps": 3, "loss": 0.5, "samples_per_s": 9.0})
    show({"done": True, "epoch": 0, "epoch_1based": 1, "epochs": 2, "train_loss": 0.5, "samples_per_s": 9.0,
          "select": "bpcer20", "select_value": 0.1, "dev_loss": 0.4, "best_epoch_1based": 1, "time_s": 1.0})
    text = out.getvalue()
    assert ("\r" in text) is tty and ("epoch 1/2" in text)
    assert text.rstrip("\n").splitlines()[-1].lstrip("\r").startswith("epoch 1/2: train loss 0.5000")
