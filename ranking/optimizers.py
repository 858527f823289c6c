"""Lazy Adam: Adam whose embedding-table update touches only the rows the batch looked up.

Keras' Adam (and :class:`~ranking.models.multitask.FusedAdam`, the same update in one fused
pass) decays the moments of *every* row of a table and moves every row every step, also rows
the batch never saw (they keep drifting on their stale momentum). For large tables that
full-table pass is a fixed cost per step however small the batch. The lazy variant (TF1's
``LazyAdamOptimizer``; Criteo/ads practice for sparse features) applies the Adam update to the
looked-up rows only: for a table row ``r`` with summed gradient ``g_r`` in this batch

    m_r <- b1 m_r + (1 - b1) g_r
    v_r <- b2 v_r + (1 - b2) g_r^2
    w_r <- w_r - lr sqrt(1 - b2^t) / (1 - b1^t) * m_r / (sqrt(v_r) + eps)

with ``t`` the global step (as Keras' Adam); rows not in the batch keep ``w``, ``m`` and ``v``.
Dense gradients (every non-table weight) get the exact fused Adam update. An embedding L2
penalty over the whole table makes the table's gradient dense, and then the update is Adam's.

Measured (``benchmarks/deepctr_comparison.py --optimizer lazy_adam --embedding-l2 0``, 12
tables of 167k rows x 16 in all, batch 1024, seeds 0-2): no speed gain over the fused Adam
(45.5k vs 47.3k examples/s, within run-to-run noise: the fused full-table pass is ~6 ms of a
~45 ms step) and mean CTR AUC 0.0009 lower than Adam's with the same settings (0.7658 vs
0.7667; DeepCTR 0.7670). It pays where tables are
far larger than the rows a step touches (millions of rows), not at this size.
"""
from __future__ import annotations

import tensorflow as tf

from ranking.models.multitask import FusedAdam

__all__ = ["LazyAdam"]


@tf.keras.utils.register_keras_serializable(package="ranking")
class LazyAdam(FusedAdam):
    """Adam with row-wise (lazy) updates of sparse gradients; see the module docstring.

    Same constructor, hyperparameters and slots as ``tf.keras.optimizers.Adam``; ``amsgrad``
    is not supported (the lazy update has no per-row maximum of ``v``).
    """

    updates_every_row = False  # the embedding layer keeps sparse (in-place) row reads

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam does not support amsgrad=True")

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        a = self._adam_terms(variable)
        m, v, beta_1, beta_2 = a["m"], a["v"], a["beta_1"], a["beta_2"]
        alpha = a["lr"] * tf.sqrt(1 - a["beta_2_power"]) / (1 - a["beta_1_power"])
        rows, position = tf.unique(gradient.indices)
        g = tf.cast(tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0]),
                    variable.dtype)
        m_rows = beta_1 * m.sparse_read(rows) + (1 - beta_1) * g
        v_rows = beta_2 * v.sparse_read(rows) + (1 - beta_2) * tf.square(g)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        return variable.scatter_sub(tf.IndexedSlices(
            alpha * m_rows / (tf.sqrt(v_rows) + a["epsilon"]), rows))
