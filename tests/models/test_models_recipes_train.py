"""Seed recipes that train (issue 15 item 5): mmfCNN's scores are not constant; loss defaults match the recipes."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgepad.losses import PADObjective  # noqa: E402
from edgepad.models.registry import create_model  # noqa: E402


def _feed(n: int, seed: int, size: int = 32) -> tuple[dict, torch.Tensor]:
    """A toy PAD problem: bona fide (label 1) has bright IR on the face centre, attacks a dark one."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).float()
    ir = torch.randn(n, 1, size, size, generator=g) * 0.3
    ir[:, :, size // 4:3 * size // 4, size // 4:3 * size // 4] += (2 * y - 1)[:, None, None, None]
    return {"rgb": torch.randn(n, 3, size, size, generator=g), "depth": torch.randn(n, 1, size, size, generator=g),
            "ir": ir}, y


def _mwb(seed: int, width: int = 8, **kw):
    torch.manual_seed(seed)
    return create_model("multilayer", modalities=("rgb", "depth", "ir"), backbone_kwargs={"width": width}, **kw)


def test_mwb_signal_reaches_the_score_only_with_the_post_fusion_stage():
    feed, y = _feed(16, 0)
    stds, grads = {}, {}
    for post in (False, True):
        m = _mwb(0, post_stage=post).train()
        if not post:                 # the pre-fix layout also re-initialised the MWB gate FCs as heads
            for blk in m.mwb:
                torch.nn.init.normal_(blk.fc.weight, 0.0, 0.01)
        out = m(feed)
        PADObjective("bce")(out, y)[0].backward()
        stds[post] = float(out["logit"].detach().std())
        grads[post] = float(m.streams["ir"].stem[0].weight.grad.abs().mean())
    # pre-fix layout: gate v ~ 1e-2 times N(0, 0.01) heads -> logits vary by ~1e-5, stem gradients ~1e-6
    assert stds[False] < 2e-4 and stds[True] > 1e-3
    assert grads[True] > 100 * grads[False]


def test_mwb_gates_keep_default_init_heads_are_n001():
    m = _mwb(0)
    assert m.post is not None and m.stream_se is None
    assert float(m.mwb[0].fc.weight.std()) > 0.03          # default fan-in init, not N(0, 0.01)
    assert float(m.joint[0].weight.std()) == pytest.approx(0.01, rel=0.2)
    se = _mwb(0, stream_se=True)
    assert len(se.stream_se["rgb"]) == 3 and se.stream_se["rgb"][0].fc1.bias is None
    assert se(_feed(2, 1)[0])["logit"].shape == (2,)


def test_gamma_default_follows_the_loss_kind():
    assert PADObjective("cmfl", ("rgb", "depth")).cmfl.gamma == 3.0
    assert PADObjective("focal").gamma == 2.0
    assert PADObjective("cmfl", ("rgb", "depth"), gamma=2.0).cmfl.gamma == 2.0
