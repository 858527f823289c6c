"""Ranking models assembled from the layers in ``ranking.layers``."""
