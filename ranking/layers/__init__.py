"""Keras layers of the ranking models: MLP blocks, multi-task towers and prediction heads.

Contract. A *tower* maps the shared input ``x: [batch, d]`` to a list of T per-task
representations ``[batch, h]`` (``SharedBottom``, ``MMoE``, ``PLE``; scenario layers such as
DWG/STAR/PPNet follow the same signature, with the domain index or personal features as a
second input: ``ranking.layers.scenario``, ``ranking.layers.gating``). ``TaskTowers`` maps
those T representations to T float32 logits ``[batch, 1]``; heads (``ESMMHead``) turn logits
into float32 probabilities.
"""
from ranking.layers.heads.esmm import ESMMHead, ctcvr_log_loss
from ranking.layers.mlp import MLP, ParallelMLP, TaskTowers
from ranking.layers.towers.mmoe import MMoE
from ranking.layers.towers.ple import PLE
from ranking.layers.towers.shared_bottom import SharedBottom
# Imported for their Keras registrations (load_model needs the classes registered).
from ranking.layers import gating, scenario  # noqa: E402,F401  isort: skip

__all__ = ["MLP", "ParallelMLP", "TaskTowers", "SharedBottom", "MMoE", "PLE", "ESMMHead",
           "ctcvr_log_loss"]
