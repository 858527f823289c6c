"""Losses of the ranking models: per-example functions (float32, not reduced unless they are
batch-level by nature) and Keras ``Loss`` / ``Layer`` wrappers with ``get_config``.

* :func:`binary_focal_loss` / :class:`BinaryFocalLoss` -- focal loss from logits (Lin et al.,
  2017), for the easy-example-dominated, heavy-user-dominated click logs.
* :func:`pairwise_auc_loss` / :class:`PairwiseAUCLoss` -- approximate-AUC pairwise ranking loss
  over the batch; :func:`bce_with_pairwise_auc_loss` / :class:`BCEWithPairwiseAUCLoss` --
  cross-entropy plus lambda times it (seed 002).
* :func:`masked_mean` -- a task's loss over its labelled rows (CVR on clicks), 0 when none.
* :class:`FixedTaskWeighting`, :class:`UncertaintyWeighting` -- combine the T task losses
  (Kendall, Gal & Cipolla, CVPR 2018 for the learned weights).
"""
from ranking.losses.focal import BinaryFocalLoss, binary_focal_loss
from ranking.losses.pairwise_auc import (BCEWithPairwiseAUCLoss, PairwiseAUCLoss,
                                         bce_with_pairwise_auc_loss, pairwise_auc_loss)
from ranking.losses.task_weighting import (FixedTaskWeighting,
                                           UncertaintyWeighting, masked_mean)

__all__ = ["binary_focal_loss", "BinaryFocalLoss", "pairwise_auc_loss", "PairwiseAUCLoss",
           "bce_with_pairwise_auc_loss", "BCEWithPairwiseAUCLoss", "masked_mean",
           "FixedTaskWeighting", "UncertaintyWeighting"]
