"""Adversarial robustness of image classifiers: data, models, attacks, level-set margin training, geometry."""
