"""A real tiny ONNX PAD model with a manifest (exported at test time from a 2-layer torch model)."""
from __future__ import annotations

import pytest

#: crop size of the tiny test model (small keeps the tests fast)
TINY_SIZE = 32
#: thresholds of the tiny model's manifest (full set; degraded subsets are stricter; rgb alone uncalibrated)
TINY_OPERATING_POINTS = {
    "bpcer20": {"rgb+depth+ir": 0.5, "rgb+ir": 0.6, "rgb+depth": 0.65},
    "bpcer100": {"rgb+depth+ir": 0.8},
}


def build_tiny_model(path, gain: float = 4.0):
    """Export ``logit = Σ_m gain · mean(x_m)`` (1×1 conv → global pool → linear per modality) to ONNX.

    Brighter rgb/ir crops (normalised mean > 0) score live; a missing modality (fill 0) contributes nothing.
    """
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from edgepad.engines.export import export_onnx
    from edgepad.preprocess import default_input_specs

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            chans = {"rgb": 3, "depth": 1, "ir": 1}
            self.conv = torch.nn.ModuleDict({m: torch.nn.Conv2d(c, 1, 1) for m, c in chans.items()})
            self.head = torch.nn.ModuleDict({m: torch.nn.Linear(1, 1) for m in chans})
            with torch.no_grad():
                for m, c in chans.items():
                    self.conv[m].weight.fill_(1.0 / c)
                    self.conv[m].bias.zero_()
                    self.head[m].weight.fill_(gain)
                    self.head[m].bias.zero_()

        def forward(self, feed):
            out = {}
            for m in ("rgb", "depth", "ir"):
                f = self.conv[m](feed[m]).mean(dim=(1, 2, 3)).reshape(-1, 1)
                out[f"logit_{m}"] = self.head[m](f).reshape(-1)
            out["logit"] = out["logit_rgb"] + out["logit_depth"] + out["logit_ir"]
            out["embedding"] = torch.stack([out["logit_rgb"], out["logit_depth"], out["logit_ir"]], dim=1)
            return out

    return export_onnx(Tiny().eval(), path, inputs=default_input_specs(TINY_SIZE), threshold=0.5,
                       threshold_criterion="bpcer20", operating_points=TINY_OPERATING_POINTS, model_name="tiny")
