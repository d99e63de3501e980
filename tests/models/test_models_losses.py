"""Losses against hand-computed values, torch references and float64 gradcheck."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from edgepad.errors import ConfigError, ShapeError  # noqa: E402
from edgepad.losses import (CenterLoss, CrossModalFocalLoss, PADObjective, bce_loss, binary_focal_loss,  # noqa: E402
                            center_loss, cross_modal_focal_loss)


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def hand_cmfl(zp: float, zq: float, y: int, alpha=1.0, gamma=3.0, binary=False, eps=1e-9) -> float:
    p, q = sig(zp), sig(zq)
    pt = p if y == 1 else 1 - p
    qt = q if y == 1 else 1 - q
    ell = -math.log(pt)
    h = 2 * pt * qt / (pt + qt + eps)
    w = (qt + eps) * h
    if binary:
        w *= (1 - y)
    return alpha * (1 - w) ** gamma * ell


def test_bce_hand_value():
    z = torch.tensor([0.0, 2.0, -1.0])
    y = torch.tensor([1.0, 0.0, 0.0])
    want = (math.log(2) + -math.log(1 - sig(2.0)) + -math.log(1 - sig(-1.0))) / 3
    assert bce_loss(z, y).item() == pytest.approx(want, rel=1e-6)


def test_focal_gamma0_equals_bce_and_hand_value():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(17, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(17, generator=g) > 0.5).double()
    ref = F.binary_cross_entropy_with_logits(z, y)
    assert binary_focal_loss(z, y, gamma=0.0).item() == pytest.approx(ref.item(), rel=1e-12)
    # hand value: alpha 0.25, gamma 2, z = 1.5, y = 0
    p = sig(1.5)
    want = 0.75 * p ** 2 * -math.log(1 - p)
    got = binary_focal_loss(torch.tensor([1.5]), torch.tensor([0.0]), gamma=2.0, alpha=0.25)
    assert got.item() == pytest.approx(want, rel=1e-6)
    # focal down-weights easy samples: strictly below BCE for gamma > 0
    assert binary_focal_loss(z, y, gamma=2.0).item() < ref.item()


@pytest.mark.parametrize("zp,zq,y", [(0.3, -1.2, 1), (2.0, 1.5, 1), (-0.7, 0.4, 0), (1.0, -3.0, 0)])
@pytest.mark.parametrize("binary", [False, True])
def test_cmfl_matches_hand_formula(zp, zq, y, binary):
    got = cross_modal_focal_loss(torch.tensor([zp], dtype=torch.float64), torch.tensor([zq], dtype=torch.float64),
                                 torch.tensor([float(y)], dtype=torch.float64), binary=binary)
    assert got.item() == pytest.approx(hand_cmfl(zp, zq, y, binary=binary), rel=1e-9)


def test_cmfl_limits():
    y = torch.tensor([1.0], dtype=torch.float64)
    z = torch.tensor([0.2], dtype=torch.float64)
    bce = bce_loss(z, y).item()
    # partner badly wrong (q_t -> 0): w -> 0, the loss reverts to BCE
    assert cross_modal_focal_loss(z, torch.tensor([-40.0], dtype=torch.float64), y).item() == pytest.approx(bce, rel=1e-6)
    # partner confident and right: strongly down-weighted
    assert cross_modal_focal_loss(z, torch.tensor([40.0], dtype=torch.float64), y).item() < 0.5 * bce


def test_cmfl_gradient_flows_through_w():
    zp = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    zq = torch.tensor([-0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0], dtype=torch.float64)
    cross_modal_focal_loss(zp, zq, y).backward()
    assert zq.grad is not None and abs(zq.grad.item()) > 1e-6   # partner receives gradient through w
    g_full = zp.grad.clone()
    zp.grad = None
    zq2 = zq.detach().requires_grad_(True)
    cross_modal_focal_loss(zp, zq2, y, detach_partner=True).backward()
    assert zq2.grad is None or zq2.grad.abs().item() == 0.0
    assert torch.allclose(zp.grad, g_full)   # own-gradient identical: only the partner path is cut


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    q = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 1, 0, 1, 0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: binary_focal_loss(a, y, gamma=2.0, alpha=0.3), (z,))
    assert torch.autograd.gradcheck(lambda a, b: cross_modal_focal_loss(a, b, y), (z, q))
    assert torch.autograd.gradcheck(lambda a, b, c: cross_modal_focal_loss(a, [b, c], y, binary=True), (z, q, r))
    emb = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    cen = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e, c: center_loss(e, y, c, 0.3, 0.7, 0.5), (emb, cen))
    loss = CrossModalFocalLoss(["rgb", "depth"])
    assert torch.autograd.gradcheck(lambda j, a, b: loss(j, {"rgb": a, "depth": b}, y), (r, z, q))


def test_multihead_weighting_code_and_paper_form():
    zr, zd, zj = 0.4, -0.9, 1.1
    y = torch.tensor([1.0], dtype=torch.float64)
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    c_rgb, c_d = hand_cmfl(zr, zd, 1), hand_cmfl(zd, zr, 1)
    bce_j = -math.log(sig(zj))
    code = CrossModalFocalLoss(["rgb", "depth"], cmfl_inner_mean=True)(t(zj), {"rgb": t(zr), "depth": t(zd)}, y)
    paper = CrossModalFocalLoss(["rgb", "depth"], cmfl_inner_mean=False)(t(zj), {"rgb": t(zr), "depth": t(zd)}, y)
    assert code.item() == pytest.approx(0.25 * c_rgb + 0.25 * c_d + 0.5 * bce_j, rel=1e-9)
    assert paper.item() == pytest.approx(0.5 * c_rgb + 0.5 * c_d + 0.5 * bce_j, rel=1e-9)


def test_three_modality_extension_and_pairwise():
    zs = {"rgb": 0.4, "depth": -0.9, "ir": 1.7}
    y = torch.tensor([0.0], dtype=torch.float64)
    t = {k: torch.tensor([v], dtype=torch.float64) for k, v in zs.items()}
    loss = CrossModalFocalLoss(["rgb", "depth", "ir"])
    terms = loss.terms(t, y)
    # partner confidence = mean target confidence of the others
    for m in zs:
        others = [1 - sig(zs[o]) for o in zs if o != m]
        qbar = sum(others) / 2
        pt = 1 - sig(zs[m])
        h = 2 * pt * qbar / (pt + qbar + 1e-9)
        w = (qbar + 1e-9) * h
        assert terms[m].item() == pytest.approx((1 - w) ** 3 * -math.log(pt), rel=1e-9)
    pair = CrossModalFocalLoss(["rgb", "depth", "ir"], partner="pairwise").terms(t, y)
    assert set(pair) == {"rgb|depth", "depth|rgb", "rgb|ir", "ir|rgb"}
    assert pair["rgb|ir"].item() == pytest.approx(hand_cmfl(0.4, 1.7, 0), rel=1e-9)


def test_center_loss_hand_value_and_module():
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = torch.tensor([1.0, 0.0, 1.0])
    cen = torch.tensor([[0.0, 1.0], [1.0, 0.0]])   # row 0 = attack, row 1 = bona fide
    pull = (0.0 + (0 + 1) + (0 + 1)) / 3
    sep = math.exp(-0.5 * ((0 - 1) ** 2 + (1 - 0) ** 2) / 2)
    assert center_loss(emb, y, cen, 2.0, 3.0, 0.5).item() == pytest.approx(2 * pull + 3 * sep, rel=1e-6)
    m = CenterLoss(2, 1.0, 0.0)
    m.centers.data.copy_(cen)
    assert m(emb, y).item() == pytest.approx(pull, rel=1e-6)


def test_shape_errors_and_bad_options():
    with pytest.raises(ShapeError):
        bce_loss(torch.zeros(3, 1), torch.zeros(3, 1))
    with pytest.raises(ShapeError):
        binary_focal_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ShapeError):
        center_loss(torch.zeros(3, 4), torch.zeros(3), torch.zeros(3, 4))
    with pytest.raises(ConfigError):
        CrossModalFocalLoss(["rgb"])
    with pytest.raises(ConfigError) as e:
        PADObjective("cmlf", ["rgb", "depth"])
    assert "cmfl" in str(e.value)


def test_objective_aux_heads_masked_by_presence():
    obj = PADObjective("bce", ["rgb", "depth"], aux_weight=1.0)
    y = torch.tensor([1.0, 0.0])
    out = {"logit": torch.zeros(2), "logit_rgb": torch.zeros(2), "logit_depth": torch.tensor([0.0, 50.0]),
           "present_depth": torch.tensor([True, False])}
    loss, parts = obj(out, y)
    # the depth head's wrong prediction on sample 1 is ignored because depth was dropped there
    assert parts["aux_depth"] == pytest.approx(math.log(2), rel=1e-6)
    assert loss.item() == pytest.approx(3 * math.log(2), rel=1e-6)
    abc = PADObjective("abc", ["rgb"], embedding_dim=3)
    loss, parts = abc({"logit": torch.zeros(2), "embedding": torch.zeros(2, 3)}, y)
    assert set(parts) == {"bce", "center"} and loss.item() > math.log(2)
