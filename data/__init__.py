"""Dataset preparation code and manifests (imported as ``recon.data``); no third-party data is committed.

- :mod:`recon.data.scanner`: the virtual range scanner (mesh -> FAUST-like raw scan).
- :mod:`recon.data.sources`: real meshes available offline, fetched into ``$RECON_CACHE``.
- :mod:`recon.data.benchmark`: the default benchmark set (scans + ground truth + manifest).
- :mod:`recon.data.manifest`: manifests, FAUST layouts, folders of scans.
"""
