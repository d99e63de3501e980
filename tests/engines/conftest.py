"""Fixtures for the engines tests: a tiny real multi-modal model (torch) and its exported ONNX."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tests.helpers.engines_model import TinyPAD, signal_data, tiny_specs  # noqa: E402


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
