"""The training batches of a run (training.loop.TrainBatches): the same batches as a per-epoch DataLoader over
EpochSampler for every workers / prefetch setting, the same trained weights, errors raised in the loop."""
from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from edgepad.data.sources import build_dataset  # noqa: E402
from edgepad.data.transforms import PADDataset  # noqa: E402
from edgepad.errors import ConfigError, DatasetError  # noqa: E402
from edgepad.training import load_train_config, train  # noqa: E402
from edgepad.training.build import input_specs, train_transform  # noqa: E402
from edgepad.training.loop import EpochSampler, TrainBatches, epoch_batches  # noqa: E402

from tests.helpers.datasets import write_cfg  # noqa: E402

AUG = {"augment.cutout_px": 4, "augment.crop_scale": [0.7, 1.0], "augment.jitter_offset": 20.0,
       "augment.jitter_gamma": [0.7, 1.4]}


def _dataset(tmp_path, bench):
    cfg = load_train_config(write_cfg(tmp_path, bench, **AUG))
    base = build_dataset(cfg.data, cfg.data.train_split, cfg.data.frames_per_video)
    return cfg, PADDataset(base, input_specs(cfg), train_transform(cfg), seed=cfg.seed)


def _reference(ds, epochs: int, batch_size: int, steps: int, seed: int) -> list[dict]:
    """What the loop consumed before TrainBatches: a DataLoader per epoch over EpochSampler, first ``steps``."""
    out = []
    for e in range(epochs):
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=EpochSampler(len(ds), e, seed),
                                             drop_last=True)
        out += [b for _, b in zip(range(steps), loader)]
    return out


def _same(a: dict, b: dict) -> bool:
    return (set(a["inputs"]) == set(b["inputs"]) and torch.equal(a["target"], b["target"])
            and torch.equal(a["index"], b["index"])
            and all(torch.equal(a["inputs"][m], b["inputs"][m]) for m in a["inputs"]))


@pytest.mark.parametrize("workers,prefetch", [(0, 0), (0, 2), (1, 1)])
def test_batches_equal_the_per_epoch_dataloader_batches(tmp_path, bench, workers, prefetch):
    cfg, ds = _dataset(tmp_path, bench)
    plan = [b for e in range(3) for b in epoch_batches(len(ds), e, cfg.seed, 8, max_steps=2)]
    ref = _reference(ds, 3, 8, 2, cfg.seed)
    batches = TrainBatches(ds, plan, workers=workers, prefetch=prefetch)
    try:
        got = [batches.next() for _ in plan]
        with pytest.raises(StopIteration):
            batches.next()
    finally:
        batches.close()
    assert len(got) == len(ref) == 6
    assert all(_same(g, r) for g, r in zip(got, ref))
    # the epochs differ (order and augmentation), so the comparison can fail
    assert not torch.equal(got[0]["inputs"]["rgb"], got[2]["inputs"]["rgb"])


def test_epoch_batches_are_full_batches_of_the_epoch_order():
    n, bs = 29, 4
    for e in range(3):
        order = EpochSampler(n, e, 5).indices()
        full = epoch_batches(n, e, 5, bs)
        assert [k for b in full for k in b] == [(i, e) for i in order[:n // bs * bs]]
        assert all(len(b) == bs for b in full)
        assert epoch_batches(n, e, 5, bs, max_steps=3) == full[:3]
    # ranks split the epoch into disjoint shards of equal length
    r0, r1 = (epoch_batches(n, 0, 5, bs, rank=r, world=2) for r in (0, 1))
    assert len(r0) == len(r1) == 3
    assert not {k for b in r0 for k in b} & {k for b in r1 for k in b}


def test_training_does_not_depend_on_workers_or_prefetch(tmp_path, bench):
    over = {"epochs": 2, **AUG, "model.kwargs": {"backbone_kwargs": {"width": 8}, "dropout": 0.3,
                                                 "modality_dropout": 0.5}}
    states = []
    for name, workers, prefetch in (("plain", 0, 0), ("thread", 0, 2), ("worker", 1, 1)):
        cfg = load_train_config(write_cfg(tmp_path, bench, out=str(tmp_path / name), workers=workers,
                                          prefetch=prefetch, **over))
        train(cfg)
        states.append(torch.load(tmp_path / name / "last.pt", weights_only=False)["state_dict"])
    for other in states[1:]:
        for k in states[0]:
            assert torch.equal(states[0][k], other[k]), k


class _Broken:
    """A dataset whose sample 3 cannot be read."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        if key[0] == 3:
            raise DatasetError("sample 3 is unreadable")
        return self.ds[key]


def _producers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "edgepad-batches"]


def test_a_failing_sample_is_raised_by_next_and_close_stops_the_thread(tmp_path, bench):
    cfg, ds = _dataset(tmp_path, bench)
    plan = [[(i, 0) for i in range(j, j + 4)] for j in range(0, 16, 4)]        # sample 3 in the first batch
    batches = TrainBatches(_Broken(ds), plan, workers=0, prefetch=2)
    with pytest.raises(DatasetError, match="sample 3"):
        batches.next()
    batches.close()
    assert not _producers()
    # a consumer that stops early (an error in the step): close() ends the producer blocked on a full queue
    batches = TrainBatches(ds, plan * 4, workers=0, prefetch=1)
    batches.next()
    assert _producers()
    batches.close()
    assert not _producers()
    with pytest.raises(StopIteration):
        batches.next()


@pytest.mark.parametrize("over,key", [({"workers": -1}, "workers"), ({"prefetch": -1}, "prefetch"),
                                      ({"workers": 1, "prefetch": 0}, "prefetch")])
def test_bad_workers_or_prefetch_are_config_errors(tmp_path, bench, over, key):
    with pytest.raises(ConfigError) as e:
        load_train_config(write_cfg(tmp_path, bench, **over))
    assert e.value.key == key
