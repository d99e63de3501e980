"""edgepad.data: samples, dataset loaders (synthetic, WMCA, CASIA-SURF, CeFA) and transforms."""
