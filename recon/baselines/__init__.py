"""Baselines fitted in the same harness as ``recon fit``: screened Poisson, AtlasNet-style charts."""
