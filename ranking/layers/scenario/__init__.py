"""Scenario (multi-domain) layers: weights, normalization and logits that depend on the domain.

Call convention. Every scenario layer takes the domain index as a second input in a list:
``layer([x, domain_index], training=None)`` with ``x: [batch, d]`` and ``domain_index: int32
[batch]`` (``[batch, 1]`` accepted) in ``[0, num_domains]`` -- the ``"domain_index"`` output of
the feature layer, 0 = unknown domain, ``1..num_domains`` known; values outside that range count
as unknown. The unknown domain always gets the shared (domain-free) computation. Towers
(``DWGTower``, ``StarTower``) follow the tower contract otherwise: they return a list of T
per-task representations ``[batch, h]``. ``StarAuxiliaryNet`` returns T float32 logits that the
model adds to the task logits (also accepts ``domain_index`` alone).

* :class:`DomainDense`, :class:`DWGTower` -- domain-specific weights (DWG): full, residual or
  low-rank per-domain weights, optional shrinkage of rare domains toward the shared weights.
* :class:`StarDense`, :class:`StarTower`, :class:`PartitionedNormalization`,
  :class:`StarAuxiliaryNet` -- STAR (Sheng et al., CIKM 2021).
"""
from ranking.layers.scenario.dwg import DWG_MODES, DomainDense, DWGTower, domain_index_tensor
from ranking.layers.scenario.partitioned_norm import PartitionedNormalization
from ranking.layers.scenario.star import StarAuxiliaryNet, StarDense, StarTower

__all__ = ["DomainDense", "DWGTower", "DWG_MODES", "StarDense", "StarTower",
           "PartitionedNormalization", "StarAuxiliaryNet", "domain_index_tensor"]
