"""``input_gain_norm`` (per-crop gain removed, contrast kept) and ``input_lowpass`` (in-graph box mean)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgepad.errors import ConfigError  # noqa: E402
from edgepad.models.registry import create_model  # noqa: E402

KW = dict(modalities=["rgb", "depth", "ir"], backbone_kwargs={"width": 4}, modality_dropout=0.0)


def _feed(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"rgb": torch.rand(2, 3, 32, 32, generator=g) * 1.6 - 0.8, "depth": torch.rand(2, 1, 32, 32, generator=g) - .5,
            "ir": torch.rand(2, 1, 32, 32, generator=g) * 1.2 - 0.9}


def _gain(x: torch.Tensor, g) -> torch.Tensor:
    """A sensor gain in linear units u = x·0.5 + 0.5 (per channel for rgb: a white-balance error)."""
    return ((x * 0.5 + 0.5) * torch.as_tensor(g).view(1, -1, 1, 1)) * 2 - 1


def test_gain_does_not_change_the_scores_and_the_output_is_deterministic():
    torch.manual_seed(0)
    net = create_model("flexmodal", input_gain_norm=["rgb", "ir"], **KW).eval()
    plain = create_model("flexmodal", **KW).eval()
    plain.load_state_dict(net.state_dict())
    a = _feed(1)
    b = {**a, "ir": _gain(a["ir"], [1.45]), "rgb": _gain(a["rgb"], [0.9, 1.0, 1.15])}
    with torch.no_grad():
        la, lb = net(a)["logit"], net(b)["logit"]
        assert torch.allclose(la, lb, atol=1e-3)
        assert torch.equal(la, net(_feed(1))["logit"])                    # deterministic
        assert not torch.allclose(plain(a)["logit"], plain(b)["logit"], atol=1e-3)   # the option is what does it
        # an offset is NOT removed (unlike input_standardise): the contrast and level structure stay
        c = {**a, "ir": a["ir"] + 0.3}
        assert not torch.allclose(la, net(c)["logit"], atol=1e-3)


def test_lowpass_removes_fine_detail_only():
    torch.manual_seed(0)
    net = create_model("flexmodal", input_lowpass={"depth": 5}, **KW).eval()
    a = _feed(2)
    smooth = torch.linspace(-0.3, 0.3, 32).view(1, 1, 1, 32).expand(2, 1, 32, 32).contiguous()
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2).float().view(1, 1, 32, 32)
    # a ±0.02 checkerboard (one-pixel detail, like flying pixels / quantisation) is averaged out by a 5×5 mean up
    # to 0.02/25 per pixel, so the logit barely moves; a coarse ramp (the face's relief) is kept
    with torch.no_grad():
        base = net({**a, "depth": smooth})["logit"]
        fine = net({**a, "depth": smooth + 0.02 * (2 * checker - 1)})["logit"]
        coarse = net({**a, "depth": smooth * 2})["logit"]
        net_off = create_model("flexmodal", **KW).eval()
        net_off.load_state_dict(net.state_dict())
        raw_fine = net_off({**a, "depth": smooth + 0.02 * (2 * checker - 1)})["logit"]
        raw_base = net_off({**a, "depth": smooth})["logit"]
    assert (fine - base).abs().max() < 0.2 * (raw_fine - raw_base).abs().max()
    assert (coarse - base).abs().max() > (fine - base).abs().max()


def test_missing_fill_runs_and_bad_options_are_config_errors():
    net = create_model("flexmodal", input_lowpass={"ir": 3}, input_gain_norm=["ir"], **KW).eval()
    feed = {**_feed(3), "ir": torch.zeros(2, 1, 32, 32)}      # missing IR (fill 0.0)
    assert torch.isfinite(net(feed)["logit"]).all()
    with pytest.raises(ConfigError, match="input_gain_norm"):
        create_model("flexmodal", modalities=["rgb", "depth"], input_gain_norm=["ir"])
    with pytest.raises(ConfigError, match="input_lowpass"):
        create_model("flexmodal", modalities=["rgb", "depth"], input_lowpass={"depth": 4})


def test_the_options_are_part_of_the_exported_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgepad.preprocess import default_input_specs
    from engines.export import export_onnx
    torch.manual_seed(0)
    net = create_model("flexmodal", input_gain_norm=["rgb", "ir"], input_lowpass={"depth": 5, "ir": 3}, **KW).eval()
    # parity with ONNX Runtime is checked inside export_onnx (ValidationError otherwise); a graph without the ops
    # would score a gain-shifted feed differently
    export_onnx(net, tmp_path / "m.onnx", inputs=default_input_specs(32), threshold=0.5, threshold_criterion="eer")
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    a = {k: v[:1].numpy() for k, v in _feed(4).items()}
    b = {**a, "ir": _gain(torch.from_numpy(a["ir"]), [1.45]).numpy()}
    sa, sb = (sess.run(["score"], f)[0] for f in (a, b))
    assert abs(float(sa[0]) - float(sb[0])) < 1e-3
