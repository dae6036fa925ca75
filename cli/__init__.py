"""The ``recon`` command: click commands only; every piece of logic lives in the ``recon`` library."""
