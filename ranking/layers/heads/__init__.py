"""Prediction heads: per-task logits (``TaskTowers``) and probability heads (``ESMMHead``)."""
from ranking.layers.heads.esmm import ESMMHead, ctcvr_log_loss
from ranking.layers.mlp import TaskTowers

__all__ = ["TaskTowers", "ESMMHead", "ctcvr_log_loss"]
