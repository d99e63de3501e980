"""``input_standardise``: per-crop standardisation inside the network removes a sensor's gain and offset."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgepad.errors import ConfigError  # noqa: E402
from edgepad.models.registry import create_model  # noqa: E402


def _feed(gen, ir_scale=1.0, ir_offset=0.0):
    x = {"rgb": torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1, "depth": torch.rand(2, 1, 32, 32, generator=gen) - .5,
         "ir": torch.rand(2, 1, 32, 32, generator=gen) * 2 - 1}
    x["ir"] = x["ir"] * ir_scale + ir_offset
    return x


def test_ir_gain_and_offset_do_not_change_the_scores():
    torch.manual_seed(0)
    kw = dict(modalities=["rgb", "depth", "ir"], backbone_kwargs={"width": 4}, modality_dropout=0.0)
    std = create_model("flexmodal", input_standardise=["ir"], **kw).eval()
    plain = create_model("flexmodal", **kw).eval()
    plain.load_state_dict(std.state_dict())
    a, b = _feed(torch.Generator().manual_seed(1)), _feed(torch.Generator().manual_seed(1), 1.5, 0.3)
    with torch.no_grad():
        assert torch.allclose(std(a)["logit"], std(b)["logit"], atol=1e-4)
        assert not torch.allclose(plain(a)["logit"], plain(b)["logit"], atol=1e-4)   # the option is what does it
        fill = {**a, "ir": torch.zeros_like(a["ir"])}                                  # missing IR: stays 0
        std(fill)


def test_unknown_modality_is_a_config_error():
    with pytest.raises(ConfigError, match="input_standardise"):
        create_model("flexmodal", modalities=["rgb", "depth"], input_standardise=["ir"])
