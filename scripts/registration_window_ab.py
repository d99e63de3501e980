#!/usr/bin/env python3
"""Face-window registration, compiled kernel vs numpy window path, side by side in one process on the frames of
``synthetic://default`` (640x480, a 200x240 face window): median CPU ms per window and identity.

    .venv/bin/python scripts/registration_window_ab.py
"""
import time, numpy as np
from edgepad.drivers.registration import Registrar
from edgepad.drivers.registry import open_source
s = open_source("synthetic://default"); s.open()
fs = []
while len(fs) < 60:
    f = s.read(2.0)
    if f is not None and f.modality.value == "depth": fs.append(f)
regs = {m: Registrar.from_rig(s.rig, "rgb", method=m) for m in ("numpy", "auto")}
for r in regs.values(): r.prepare()
w = (220, 120, 420, 360)   # a 200x240 face window at 640x480
res = {m: [] for m in regs}
for rep in range(5):
    for m, reg in regs.items():
        t = time.process_time()
        for f in fs: reg.window(f, w)
        res[m].append((time.process_time() - t) / len(fs) * 1e3)
for m, v in res.items(): print(m, "window median ms CPU", round(float(np.median(v)), 3))
print("ratio native/numpy", round(float(np.median(res["auto"]) / np.median(res["numpy"])), 3))
print("identical:", all(np.array_equal(regs["numpy"].window(f, w).data, regs["auto"].window(f, w).data) for f in fs))
