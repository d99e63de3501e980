"""training.recalibrate_bn: running statistics = plain means over training batches, RNG untouched."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgepad.training import recalibrate_bn  # noqa: E402


class _Data(torch.utils.data.Dataset):
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 2, 4, 4, generator=g) * 0.1 + torch.tensor([3.0, -1.0])[None, :, None, None]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key):                 # the training sampler yields (index, epoch)
        i = key[0]
        return {"inputs": {"rgb": self.x[i]}, "target": torch.tensor(1.0)}


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(2)
        self.drop = torch.nn.Dropout(0.5)       # consumes the RNG in train mode

    def forward(self, feed):
        return self.drop(self.bn(feed["rgb"]))


def test_recalibrated_stats_are_the_batch_means_and_rng_is_untouched():
    ds, net = _Data(), _Net().eval()
    net.bn.momentum = 0.1
    torch.manual_seed(5)
    before = torch.get_rng_state()
    used = recalibrate_bn(net, ds, batches=3, batch_size=8, seed=0, epoch=0, device=torch.device("cpu"))
    assert used == 3 and torch.equal(torch.get_rng_state(), before)
    assert net.bn.momentum == 0.1 and not net.training and int(net.bn.num_batches_tracked) == 3
    # the init (mean 0, var 1) is gone: the running mean is the data's channel mean
    assert torch.allclose(net.bn.running_mean, torch.tensor([3.0, -1.0]), atol=0.03)
    assert torch.allclose(net.bn.running_var, torch.full((2,), 0.01), rtol=0.3)
    assert recalibrate_bn(torch.nn.Linear(2, 2), ds, 3, 8, 0, 0, torch.device("cpu")) == 0
