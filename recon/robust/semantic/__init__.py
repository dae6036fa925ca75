"""Semantic robustness (Hamdi & Ghanem, "Towards Analyzing Semantic Robustness of Deep Neural Networks").

How a classifier's confidence changes with the camera's viewpoint around a 3D shape:

- :mod:`.render` — a soft point-splatting renderer, differentiable w.r.t. azimuth and elevation.
- :mod:`.shapes` — shape classes from the real meshes available offline, with augmentation.
- :mod:`.views` — the semantic domain and the viewpoint priors (canonical photographer's views, uniform).
- :mod:`.networks` — the classifier architectures (mlp, cnn, vgg, resnet, inception, alexnet).
- :mod:`.classifier` — classifiers trained on renders from random viewpoints; the score f(θ).
- :mod:`.maps` — Network Semantic Maps over azimuth (1D) and azimuth × elevation (2D).
- :mod:`.regions` — robust-region finders Naive, OIR_B, OIR_W (trapezoidal corner rule in n dimensions), and
  the grid check of their boxes (verified, shrunk boxes).
- :mod:`.srvr` — the Semantic Robustness Volume Ratio per classifier.
- :mod:`.plots` — maps and regions as PNG figures.
"""
