#!/usr/bin/env python3
"""Rebuild edgepad's shipped face detector (three MTCNN stages as ONNX) from the upstream weights.

Upstream: the MTCNN weights (P-Net, R-Net, O-Net; Zhang et al., "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks", 2016) as published in timesler/facenet-pytorch (MIT), files
``data/pnet.pt``, ``data/rnet.pt``, ``data/onet.pt``; the same bytes ship in the PyPI wheel
``facenet-pytorch==2.6.0`` (``facenet_pytorch/data/*.pt``). The sha256 of each file is checked against
:data:`UPSTREAM_SHA256` before anything is converted.

The three networks are re-written here as small torch modules (the layer sizes follow the state dicts; no code
from facenet-pytorch is used, and facenet_pytorch is never imported: only its data files are read) and exported
with ``torch.onnx.export`` (opset 17, the dynamo-free TorchScript exporter) as

- ``mtcnn_pnet.onnx``: input ``image`` (1, 3, H, W) float32, normalised ``(rgb - 127.5) / 128``; outputs
  ``prob`` (1, 2, H', W') softmax (channel 1 = face) and ``reg`` (1, 4, H', W'), H' = ceil((H - 2) / 2) - 4.
- ``mtcnn_rnet.onnx``: ``crops`` (N, 3, 24, 24) -> ``prob`` (N, 2), ``reg`` (N, 4).
- ``mtcnn_onet.onnx``: ``crops`` (N, 3, 48, 48) -> ``prob`` (N, 2), ``reg`` (N, 4), ``landmarks`` (N, 10)
  (five x then five y, relative to the crop box).

and writes ``face_detector.json`` (provenance, sha256 of the upstream files and of the ONNX files) beside them.

Usage::

    python scripts/convert_face_detector.py                      # reads the installed facenet-pytorch wheel
    python scripts/convert_face_detector.py --weights DIR --out edgepad/assets

Needs torch and onnx (the ``torch`` and ``onnx`` extras); the runtime needs neither (ONNX Runtime only).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import warnings
from pathlib import Path

#: sha256 of the upstream weight files (identical in timesler/facenet-pytorch@787da061 data/*.pt and in the
#: facenet-pytorch 2.6.0 wheel).
UPSTREAM_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
UPSTREAM = {
    "repository": "https://github.com/timesler/facenet-pytorch",
    "commit": "787da06156087cd6b616fe6608213722bddc30cd",
    "paths": {"pnet": "data/pnet.pt", "rnet": "data/rnet.pt", "onet": "data/onet.pt"},
    "pypi": "facenet-pytorch==2.6.0 (facenet_pytorch-2.6.0-py3-none-any.whl, sha256 "
            "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca), facenet_pytorch/data/*.pt",
    "licence": "MIT (facenet-pytorch LICENSE.md, Copyright (c) 2019 Timothy Esler)",
    "paper": "K. Zhang, Z. Zhang, Z. Li, Y. Qiao, Joint Face Detection and Alignment using Multi-task Cascaded "
             "Convolutional Networks, IEEE SPL 2016",
}
#: the weights' lineage; every link is MIT-licensed
LINEAGE = [
    "Kaipeng Zhang, original Caffe MTCNN models: https://github.com/kpzhang93/MTCNN_face_detection_alignment "
    "(MIT, Copyright (c) 2016 Kaipeng Zhang)",
    "David Sandberg, TensorFlow port (src/align/det1.npy, det2.npy, det3.npy): "
    "https://github.com/davidsandberg/facenet (MIT, Copyright (c) 2016 David Sandberg)",
    "Timothy Esler, PyTorch state dicts data/{pnet,rnet,onet}.pt: https://github.com/timesler/facenet-pytorch "
    "(MIT, Copyright (c) 2019 Timothy Esler)",
]
MIT_TEXT = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated "
    "documentation files (the \"Software\"), to deal in the Software without restriction, including without "
    "limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the "
    "Software, and to permit persons to whom the Software is furnished to do so, subject to the following "
    "conditions: The above copyright notice and this permission notice shall be included in all copies or "
    "substantial portions of the Software. THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, "
    "EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR "
    "PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, "
    "DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN "
    "CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.")
OPSET = 17


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_weights_dir() -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        sys.exit("facenet-pytorch is not installed: pip install --no-deps facenet-pytorch==2.6.0, or pass --weights")
    return Path(spec.origin).parent / "data"


def build_modules():
    import torch
    from torch import nn

    class Stage(nn.Module):
        """Conv/PReLU/max-pool trunk; dense heads (R/O-Net) read the feature map flattened in (W, H, C) order, as the
        original Caffe models, which were trained on transposed images, expect."""

        def __init__(self, convs, pools, dense, heads):
            super().__init__()
            for i, (cin, cout, k) in enumerate(convs, 1):
                setattr(self, f"conv{i}", nn.Conv2d(cin, cout, k))
                setattr(self, f"prelu{i}", nn.PReLU(cout))
            self._n_conv = len(convs)
            self._pools = pools  # conv index -> (kernel, stride)
            self._dense = dense  # (name, in, out) or None
            if dense is not None:
                name, fin, fout = dense
                setattr(self, name, nn.Linear(fin, fout))
                setattr(self, f"prelu{self._n_conv + 1}", nn.PReLU(fout))
            self._heads = heads  # [(name, in, out)]
            for name, fin, fout in heads:
                setattr(self, name, nn.Conv2d(fin, fout, 1) if dense is None else nn.Linear(fin, fout))

        def forward(self, x):
            for i in range(1, self._n_conv + 1):
                x = getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x))
                if i in self._pools:
                    k, s = self._pools[i]
                    x = torch.nn.functional.max_pool2d(x, k, s, ceil_mode=True)
            if self._dense is not None:
                x = x.permute(0, 3, 2, 1).flatten(1)
                x = getattr(self, f"prelu{self._n_conv + 1}")(getattr(self, self._dense[0])(x))
            outs = [getattr(self, name)(x) for name, _, _ in self._heads]
            outs[0] = torch.softmax(outs[0], dim=1)
            return tuple(outs)

    pnet = Stage([(3, 10, 3), (10, 16, 3), (16, 32, 3)], {1: (2, 2)}, None,
                 [("conv4_1", 32, 2), ("conv4_2", 32, 4)])
    rnet = Stage([(3, 28, 3), (28, 48, 3), (48, 64, 2)], {1: (3, 2), 2: (3, 2)}, ("dense4", 576, 128),
                 [("dense5_1", 128, 2), ("dense5_2", 128, 4)])
    onet = Stage([(3, 32, 3), (32, 64, 3), (64, 64, 3), (64, 128, 2)], {1: (3, 2), 2: (3, 2), 3: (2, 2)},
                 ("dense5", 1152, 256), [("dense6_1", 256, 2), ("dense6_2", 256, 4), ("dense6_3", 256, 10)])
    return {"pnet": pnet, "rnet": rnet, "onet": onet}


def convert(weights: Path, out: Path) -> dict:
    import numpy as np
    import onnx
    import torch

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, want in UPSTREAM_SHA256.items():
        got = sha256(weights / f"{name}.pt")
        if got != want:
            sys.exit(f"{weights / (name + '.pt')}: sha256 {got} != upstream {want}; refusing to convert")
    modules = build_modules()
    specs = {
        "pnet": ((1, 3, 120, 160), ["image"], ["prob", "reg"], {"image": {2: "height", 3: "width"},
                                                                "prob": {2: "oh", 3: "ow"}, "reg": {2: "oh", 3: "ow"}}),
        "rnet": ((4, 3, 24, 24), ["crops"], ["prob", "reg"], {"crops": {0: "n"}, "prob": {0: "n"}, "reg": {0: "n"}}),
        "onet": ((4, 3, 48, 48), ["crops"], ["prob", "reg", "landmarks"],
                 {"crops": {0: "n"}, "prob": {0: "n"}, "reg": {0: "n"}, "landmarks": {0: "n"}}),
    }
    torch.manual_seed(0)
    for name, module in modules.items():
        state = torch.load(weights / f"{name}.pt", map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
        module.eval()
        shape, inputs, outputs, axes = specs[name]
        x = torch.randn(*shape)
        path = out / f"mtcnn_{name}.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated but gives a plain, stable graph
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (x,), str(path), input_names=inputs, output_names=outputs,
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        model.producer_name, model.producer_version = "edgepad scripts/convert_face_detector.py", "1"
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {"source": f"{UPSTREAM['repository']}@{UPSTREAM['commit']} "
                                                      f"{UPSTREAM['paths'][name]}",
                                            "source_sha256": UPSTREAM_SHA256[name], "licence": "MIT"})
        onnx.save(model, str(path))
        # the export must reproduce the torch module
        import onnxruntime as ort
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref = [t.numpy() for t in module(x)]
        got = sess.run(None, {inputs[0]: x.numpy()})
        err = max(float(np.abs(a - b).max()) for a, b in zip(ref, got))
        if err > 1e-4:
            sys.exit(f"{path}: ONNX Runtime differs from torch by {err}")
        files[name] = {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size,
                       "upstream_path": UPSTREAM["paths"][name], "upstream_sha256": UPSTREAM_SHA256[name],
                       "max_abs_diff_vs_torch": err}
        print(f"{path}: {files[name]['bytes']} bytes, sha256 {files[name]['sha256']}, |onnx - torch| {err:.2e}")
    meta = {
        "detector": "mtcnn",
        "description": "MTCNN face detector (P-Net/R-Net/O-Net) with 5 landmarks; decode in "
                       "edgepad/runtime/detector.py",
        "input": "RGB, (x - 127.5) / 128, NCHW float32",
        "landmark_order": "image-left eye, image-right eye, nose tip, image-left mouth corner, image-right "
                          "mouth corner (for an unmirrored camera: subject's right eye first)",
        "upstream": UPSTREAM,
        "lineage": LINEAGE,
        "licence": {"name": "MIT", "copyright": ["Copyright (c) 2016 Kaipeng Zhang", "Copyright (c) 2016 David "
                    "Sandberg", "Copyright (c) 2019 Timothy Esler"], "text": MIT_TEXT},
        "files": files,
        "converter": "scripts/convert_face_detector.py",
        "opset": OPSET,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    (out / "face_detector.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="folder with pnet.pt, rnet.pt, onet.pt "
                    "(default: the installed facenet-pytorch wheel's data/)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "edgepad" / "assets")
    args = ap.parse_args(argv)
    convert(args.weights or default_weights_dir(), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
