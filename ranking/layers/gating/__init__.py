"""Personalization gates of Kuaishou's PPNet / PEPNet (Chang et al., KDD 2023).

* :class:`GateNU` / :class:`ParallelGateNU`: ``2 * sigmoid(MLP(prior features))``, a gate in
  ``(0, 2)`` centred on 1.
* :class:`EPNet`: ``[E, domain_side] -> E * GateNU(domain_side (+) stop_gradient(E))``, the
  embedding personalized per scenario.
* :class:`PPNetTower`: a tower (``[x, personal] -> T [batch, h]``) whose per-task hidden layers
  are each gated by ``GateNU_{t,l}(personal (+) stop_gradient(x))``.
* :class:`PEPNet`: EPNet then PPNetTower; follow with ``TaskTowers`` for the logits.
"""
from ranking.layers.gating.epnet import EPNet
from ranking.layers.gating.gate_nu import GateNU, ParallelGateNU
from ranking.layers.gating.ppnet import PEPNet, PPNetTower

__all__ = ["GateNU", "ParallelGateNU", "EPNet", "PPNetTower", "PEPNet"]
