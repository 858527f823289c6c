"""Multi-task towers: ``call(x: [batch, d], training=None) -> list of T [batch, h] tensors``."""
from ranking.layers.towers.mmoe import MMoE
from ranking.layers.towers.ple import PLE
from ranking.layers.towers.shared_bottom import SharedBottom

__all__ = ["SharedBottom", "MMoE", "PLE"]
