"""Thin setup: metadata lives in pyproject.toml; this maps drivers/, engines/, calibration/ into edgepad.*."""
from setuptools import setup

PACKAGES = [
    "edgepad", "edgepad.assets", "edgepad.commands", "edgepad.data", "edgepad.models", "edgepad.runtime",
    "edgepad.runtime.service", "edgepad.training", "edgepad.synthesis", "edgepad.bench", "edgepad.benchmark",
    "edgepad.drivers", "edgepad.drivers.registration", "edgepad.engines", "edgepad.calibration",
]

setup(
    packages=PACKAGES,
    package_dir={
        "edgepad": "edgepad",
        "edgepad.drivers": "drivers",
        "edgepad.engines": "engines",
        "edgepad.calibration": "calibration",
    },
    package_data={"edgepad.assets": ["*.onnx", "*.json", "DETECTOR_PROVENANCE.md"], "edgepad.runtime": ["static/*"],
                  "edgepad.drivers.registration": ["_kernel.c"]},  # compiled on first use (registration/native.py)
    include_package_data=False,
)
