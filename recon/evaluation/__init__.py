"""Dataset runs, their tables and pictures: ``batch`` (every method on every scan of a manifest, locally or on
Dask; built from ``plan``, ``claims``, ``methods`` and ``executors``), ``report`` (tables, plots and an HTML
page of a batch folder) and ``sphere_trace`` (images of a run's field, ``recon render``)."""
