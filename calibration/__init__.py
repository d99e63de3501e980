"""edgepad.calibration: board detection, intrinsics and RGB↔IR↔depth extrinsics, rig files and reports."""
