"""Registry, backbones, fusion modules and modality dropout."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgepad.errors import ConfigError, ShapeError  # noqa: E402
from edgepad.models.backbones import adapt_stem_weight, create_backbone  # noqa: E402
from edgepad.models.fusion import CrossAttentionFusion, ModalityDropout, ModalWeightingBlock, get_fusion  # noqa: E402
from edgepad.models.registry import create_model, list_models  # noqa: E402

TINY = {"resnet18h": {"width": 8}, "mobilenetv2": {"width_mult": 0.25},
        "densenet": {"init_features": 8, "growth": 4, "bn_size": 2, "block_config": (2, 2)}}


def feed(b=2, s=32, mods=("rgb", "depth", "ir")):
    g = torch.Generator().manual_seed(0)
    ch = {"rgb": 3, "depth": 1, "ir": 1}
    return {m: torch.randn(b, ch[m], s, s, generator=g) for m in mods}


def test_list_models():
    assert {"cmfl", "flexmodal", "multilayer"} <= set(list_models())


@pytest.mark.parametrize("backbone", ["resnet18h", "mobilenetv2", "densenet"])
@pytest.mark.parametrize("name,fusion", [("cmfl", None), ("flexmodal", "concat"), ("flexmodal", "se"),
                                         ("flexmodal", "xattn"), ("multilayer", None)])
def test_every_method_backbone_fusion(name, fusion, backbone):
    if name == "multilayer" and backbone == "densenet":
        with pytest.raises(ConfigError):   # two stages only: MWB at three depths is impossible
            create_model(name, backbone=backbone, backbone_kwargs=TINY[backbone])
        return
    mods = ("rgb", "depth") if name == "cmfl" else ("rgb", "depth", "ir")
    m = create_model(name, modalities=mods, backbone=backbone, fusion=fusion, backbone_kwargs=TINY[backbone])
    m.eval()
    out = m(feed(s=16, mods=mods))
    assert out["logit"].shape == (2,)
    assert out["embedding"].shape[0] == 2 and out["embedding"].shape[1] == m.embedding_dim
    if name == "cmfl":
        assert out["logit_rgb"].shape == (2,) and out["logit_depth"].shape == (2,)
    assert not any(k.startswith("present_") for k in out)       # eval mode: no dropout bookkeeping
    out["logit"].sum().backward()
    # the spec rebuilds the same architecture
    spec = m.edgepad_spec
    m2 = create_model(spec["model"], **spec["model_kwargs"])
    m2.load_state_dict(m.state_dict())


def test_backbone_shapes_and_stems():
    r = create_backbone("resnet18h", in_chans=1)
    assert r.channels == (32, 64, 128, 256) and r.strides == (4, 8, 16, 32)
    outs = r.forward_features(torch.randn(1, 1, 112, 112))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 28, 28), (64, 14, 14), (128, 7, 7), (256, 4, 4)]
    assert r.stem[0].weight.shape[1] == 1
    d = create_backbone("densenet", in_chans=1, **TINY["densenet"])
    assert d.forward_features(torch.randn(1, 1, 64, 64))[-1].shape[-1] == 4   # stride 16 like the reference
    ref = create_backbone("densenet")   # DenseNet-161 truncated after transition 2
    assert ref.channels == (192, 384)
    mb = create_backbone("mobilenetv2", width_mult=0.5)
    assert [o.shape[-1] for o in mb.forward_features(torch.randn(1, 3, 64, 64))] == [16, 8, 4, 2]
    with pytest.raises(ConfigError) as e:
        create_backbone("resnet18")
    assert "resnet18h" in str(e.value)


def test_adapt_stem_weight():
    w = torch.randn(4, 3, 7, 7)
    one = adapt_stem_weight(w, 1, "mean")
    assert one.shape == (4, 1, 7, 7) and torch.allclose(one, w.mean(1, keepdim=True))
    s = adapt_stem_weight(w, 1, "sum")
    x = torch.randn(1, 1, 9, 9)
    # a replicated grey image through the RGB stem == the summed 1-channel stem
    a = torch.nn.functional.conv2d(x.repeat(1, 3, 1, 1), w)
    b = torch.nn.functional.conv2d(x, s)
    assert torch.allclose(a, b, atol=1e-5)


def test_shared_trunk_runs_modalities_as_one_batch():
    m = create_model("flexmodal", backbone_kwargs={"width": 8})
    assert m.shared_trunk and set(m.stems) == {"rgb", "depth", "ir"}
    assert m.stems["depth"][0].weight.shape[1] == 1 and m.stems["rgb"][0].weight.shape[1] == 3
    assert len(m.trunk.stages) == 3     # stages after the stride-16 fusion point are not built
    sep = create_model("flexmodal", shared_trunk=False, backbone_kwargs={"width": 8})
    assert sep.streams is not None and set(sep.streams) == {"rgb", "depth", "ir"}


def test_unknown_names_and_bad_feeds():
    with pytest.raises(ConfigError) as e:
        create_model("flexmodl")
    assert "flexmodal" in str(e.value)
    with pytest.raises(ConfigError):
        create_model("flexmodal", fusion="xatn")
    with pytest.raises(ConfigError):
        get_fusion("cat", 8, 2)
    m = create_model("flexmodal", backbone_kwargs={"width": 8}).eval()
    f = feed()
    with pytest.raises(ShapeError):
        m({**f, "depth": torch.randn(2, 3, 32, 32)})
    with pytest.raises(ConfigError):
        m({"rgb": f["rgb"]})


def test_modality_dropout_patterns_and_fill():
    torch.manual_seed(0)
    md = ModalityDropout(0.5, keep=("rgb",), fill={"depth": 0.25, "ir": -0.5}).train()
    n = 4000
    f = {"rgb": torch.randn(n, 3, 2, 2), "depth": torch.randn(n, 1, 2, 2), "ir": torch.randn(n, 1, 2, 2)}
    out, kept = md(f)
    assert kept["rgb"].all() and torch.equal(out["rgb"], f["rgb"])
    for m, v in (("depth", 0.25), ("ir", -0.5)):
        dropped = ~kept[m]
        assert torch.all(out[m][dropped] == v)                     # exactly the fill value
        assert torch.equal(out[m][~dropped], f[m][~dropped])
    pattern = kept["depth"].int() * 2 + kept["ir"].int()
    freqs = torch.bincount(pattern, minlength=4).float() / n
    assert torch.all((freqs - 0.25).abs() < 0.03)                 # {rgb}, {rgb,ir}, {rgb,d}, {rgb,d,ir} 25 % each
    md.eval()
    out, kept = md(f)
    assert all(torch.equal(out[m], f[m]) for m in f) and all(k.all() for k in kept.values())


def test_model_fill_matches_runtime_fill():
    m = create_model("flexmodal", backbone_kwargs={"width": 8}, missing_fill={"rgb": 0.0, "depth": 0.3, "ir": 0.3})
    assert m.modality_dropout.fill == {"rgb": 0.0, "depth": 0.3, "ir": 0.3}
    assert m.edgepad_spec["model_kwargs"]["missing_fill"]["depth"] == 0.3
    m.train()
    torch.manual_seed(3)
    out = m(feed(b=8))
    assert "present_depth" in out and out["present_rgb"].all()


def test_cross_attention_formula_and_fp32():
    torch.manual_seed(0)
    ca = CrossAttentionFusion(4, 2, dropout=0.0).eval()
    ca.fuse = torch.nn.Identity()
    rgb, d = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    xr, xd = rgb.reshape(1, 4, 9), d.reshape(1, 4, 9)
    want = xr + torch.softmax(xd @ xr.transpose(1, 2), -1) @ xr
    assert torch.allclose(ca([rgb, d]), want.reshape(1, 4, 3, 3), atol=1e-6)
    ca.scaled = True
    want_s = xr + torch.softmax(xd @ xr.transpose(1, 2) / 3.0, -1) @ xr
    assert torch.allclose(ca([rgb, d]), want_s.reshape(1, 4, 3, 3), atol=1e-6)


def test_mwb_forms():
    f = [torch.randn(2, 8, 8, 8) for _ in range(3)]
    code = ModalWeightingBlock(8, 3, 16)
    g = code(f)
    assert g.shape == (2, 16, 4, 4) and code.k == 16 and code.fc.bias is None
    nxt = ModalWeightingBlock(16, 4, 32, form="paper")
    g2 = nxt([torch.randn(2, 16, 4, 4) for _ in range(3)], g)
    assert g2.shape == (2, 32, 2, 2) and nxt.k == 1
    with pytest.raises(ConfigError):
        ModalWeightingBlock(8, 3, 16, form="other")


def test_cmfl_feature_sigmoid_bounds_embedding():
    m = create_model("cmfl", modalities=("rgb", "depth"), backbone_kwargs={"width": 8}).eval()
    e = m(feed(mods=("rgb", "depth")))["embedding"]
    assert (e > 0).all() and (e < 1).all()
