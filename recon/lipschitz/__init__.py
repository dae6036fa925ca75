"""Lipschitz networks: GroupSort activations, Björck / ℓ∞ / spectral linear layers, certified bounds,
robustness certificates, Wasserstein-1 estimation, and 1-Lipschitz implicit surfaces.

Submodules: :mod:`layers`, :mod:`network`, :mod:`certify`, :mod:`wasserstein`, :mod:`implicit`,
:mod:`experiments` (the ``recon lipschitz`` experiments).
"""
