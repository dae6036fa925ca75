"""recon: surface reconstruction from raw 3D scans with controlled neural level sets.

The library is importable without side effects and never prints; the ``recon`` command lives in
``recon.cli``. Heavy dependencies (torch, open3d, pymeshlab) are imported lazily by the modules that
need them so that ``recon --help`` stays fast.
"""

from recon.errors import ReconError

__version__ = "0.1.0"
__all__ = ["ReconError", "__version__"]
