"""The reconstruction core: from an oriented or bare point scan to a checked watertight mesh.

Stages (one module each): outlier filter, normalization, normal estimation, winding numbers, the
signed-distance start, the level-set loss and its samples, training (``fit``), meshing (``extract``), the
check against the scan, trimming and metrics; ``reconstruct`` runs them on a run folder. The core never
imports the sibling modules (``recon.robust``, ``recon.lipschitz``).
"""
