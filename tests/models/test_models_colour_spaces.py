"""``colour_spaces``: HSV / YCbCr channels for the rgb stream, computed inside the graph from the rgb input."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgepad.errors import ConfigError  # noqa: E402
from edgepad.models.fas import colour_channels  # noqa: E402
from edgepad.models.registry import create_model  # noqa: E402


def test_hsv_and_ycbcr_match_the_reference_formulas():
    rng = np.random.default_rng(0)
    px = np.concatenate([rng.random((60, 3)), np.eye(3), [[0.5, 0.5, 0.5], [0, 0, 0], [1, 1, 1]]]).astype(np.float32)
    x = torch.from_numpy(((px - 0.5) / 0.5).T.copy()).reshape(1, 3, 1, -1)      # normalised as the rgb InputSpec
    out = colour_channels(x, ["hsv", "ycbcr"]) * 0.5 + 0.5                      # back to [0, 1]
    got = out.reshape(6, -1).T.numpy()
    want_hsv = np.array([colorsys.rgb_to_hsv(*p) for p in px])
    np.testing.assert_allclose(got[:, :3], want_hsv, atol=1e-5)
    y = px @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(got[:, 3], y, atol=1e-5)
    np.testing.assert_allclose(got[:, 4], 0.5 + (px[:, 2] - y) * 0.5 / (1 - 0.114), atol=1e-5)   # Cb
    np.testing.assert_allclose(got[:, 5], 0.5 + (px[:, 0] - y) * 0.5 / (1 - 0.299), atol=1e-5)   # Cr


def test_multilayer_with_colour_streams_runs_on_three_channel_rgb():
    torch.manual_seed(0)
    m = create_model("multilayer", modalities=["rgb", "depth", "ir"], backbone_kwargs={"width": 4},
                     colour_spaces=["rgb", "hsv", "ycbcr"]).eval()
    conv = next(mod for mod in m.streams["rgb"].modules() if isinstance(mod, torch.nn.Conv2d))
    assert conv.in_channels == 9
    feed = {"rgb": torch.rand(2, 3, 32, 32) * 2 - 1, "depth": torch.zeros(2, 1, 32, 32),
            "ir": torch.zeros(2, 1, 32, 32)}
    with torch.no_grad():
        assert m(feed)["logit"].shape == (2,)
    assert m.edgepad_spec["model_kwargs"]["colour_spaces"] == ["rgb", "hsv", "ycbcr"]
    with pytest.raises(ConfigError, match="colour_spaces"):
        create_model("multilayer", modalities=["rgb", "depth", "ir"], colour_spaces=["lab"])
