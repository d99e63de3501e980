"""Fixtures for the engines tests: a tiny real multi-modal model (torch) and its exported ONNX."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from edgepad.engines.manifest import InputSpec  # noqa: E402

SIZE_PX = 16
MODALITIES = ("rgb", "depth", "ir")
CHANS = {"rgb": 3, "depth": 1, "ir": 1}


class TinyPAD(nn.Module):
    """Conv-BN-ReLU stem per modality → GAP → per-modality heads + joint head (interface E outputs)."""

    def __init__(self, modalities=MODALITIES, width: int = 8, attention: bool = False) -> None:
        super().__init__()
        self.modalities = tuple(modalities)
        self.stems = nn.ModuleDict({m: nn.Sequential(
            nn.Conv2d(CHANS[m], width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()) for m in self.modalities})
        self.attention = attention
        self.heads = nn.ModuleDict({m: nn.Linear(width, 1) for m in self.modalities})
        self.joint = nn.Linear(width * len(self.modalities), 1)
        # non-trivial BN statistics so that folding matters
        for mod in self.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)

    def forward(self, feed):
        feats = {m: self.stems[m](feed[m]) for m in self.modalities}
        if self.attention:  # channel cross-attention island (softmax over C×C), as in the xattn fusion
            rgb = feats[self.modalities[0]]
            b, c, h, w = rgb.shape
            x0 = rgb.reshape(b, c, h * w)
            for m in self.modalities[1:]:
                xm = feats[m].reshape(b, c, h * w)
                attn = torch.softmax(torch.bmm(xm, x0.transpose(1, 2)) / (h * w) ** 0.5, dim=-1)
                feats[m] = feats[m] + torch.bmm(attn, x0).reshape(b, c, h, w)
        pooled = {m: f.mean(dim=(2, 3)) for m, f in feats.items()}
        out = {"logit": self.joint(torch.cat([pooled[m] for m in self.modalities], 1)).reshape(-1),
               "embedding": torch.cat(list(pooled.values()), 1)}
        for m in self.modalities:
            out[f"logit_{m}"] = self.heads[m](pooled[m]).reshape(-1)
        return out


def tiny_specs(size_px: int = SIZE_PX, modalities=MODALITIES) -> dict[str, InputSpec]:
    return {m: InputSpec(m, (1, CHANS[m], size_px, size_px), "float32", mean=(0.5,) * CHANS[m],
                         std=(0.5,) * CHANS[m], clip=(0.0, 255.0), missing_fill=0.0) for m in modalities}


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return TinyPAD().eval()


@pytest.fixture
def tiny_onnx(tmp_path, tiny_model):
    from edgepad.engines.export import export_onnx
    path = tmp_path / "tiny.onnx"
    manifest = export_onnx(tiny_model, path, inputs=tiny_specs(), threshold=0.5, threshold_criterion="bpcer20",
                           dynamic_batch=True, model_name="tiny")
    return path, manifest


def signal_data(n: int, seed: int, size_px: int = SIZE_PX, strength: float = 0.15):
    """Feeds whose class is carried by a vertical ramp (bona fide +, attacks −) under unit noise."""
    import numpy as np
    g = np.random.default_rng(seed)
    live = g.random(n) < 0.5
    species = np.where(live, "bonafide", g.choice(["print_flat", "replay", "rigidmask"], n))
    ramp = np.linspace(-1, 1, size_px, dtype=np.float32)[None, None, :, None]
    sign = np.where(live, strength, -strength).astype(np.float32)[:, None, None, None]
    feeds = {m: (g.standard_normal((n, CHANS[m], size_px, size_px)).astype(np.float32) + sign * ramp)
             for m in MODALITIES}
    return feeds, live, [str(s) for s in species]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A TinyPAD with cross-attention trained briefly on :func:`signal_data`, exported with a dev threshold."""
    import numpy as np
    from edgepad.engines.export import export_onnx
    from edgepad.metrics import fit_threshold
    torch.manual_seed(0)
    model = TinyPAD(attention=True)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for i in range(40):
        f, live, _ = signal_data(32, i)
        out = model({k: torch.from_numpy(v) for k, v in f.items()})
        loss = nn.functional.binary_cross_entropy_with_logits(out["logit"], torch.from_numpy(live.astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    dev = signal_data(300, 1000)
    with torch.no_grad():
        s = torch.sigmoid(model({k: torch.from_numpy(v) for k, v in dev[0].items()})["logit"]).numpy()
    thr = fit_threshold(s, dev[1], dev[2], "bpcer20")
    root = tmp_path_factory.mktemp("trained")
    path = root / "model.onnx"
    export_onnx(model, path, inputs=tiny_specs(), threshold=thr, threshold_criterion="bpcer20", dynamic_batch=True,
                model_name="tiny")
    return {"model": model, "onnx": path, "dev": dev, "eval": signal_data(400, 3000), "root": root,
            "calib": signal_data(128, 2000)}
