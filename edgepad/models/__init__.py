"""edgepad.models (needs torch): backbones, fusion modules and the registered fusion networks."""
