"""edgepad.runtime: face crops, inference, fail-closed decisions at frame rate."""
