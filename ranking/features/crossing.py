"""Sequence x target crosses hashed into buckets: the one definition of the feature.

Seed 000's real-time feature: every item the user clicked recently is crossed with the target
item (clicked a phone -> likely to click a phone case), and the cross is hashed into a fixed
number of buckets. The cross of ``a`` and ``b`` is ``to_hash_bucket_fast(a + SEP + b, n)``,
i.e. FarmHash Fingerprint64 of the joined string modulo ``n``.

The Beam sample builder calls :func:`cross_hash_numpy` (this same TensorFlow op, in eager
mode, on batches) and the exported model calls :func:`cross_hash` in its graph, so the ids a
model was trained on are, by construction, the ids it computes at serving time. Padding
positions of a sequence (empty strings) get :data:`PAD_ID`.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

CROSS_SEPARATOR = "\x1f"  # ASCII unit separator: cannot collide with ordinary ids
PAD_ID = -1


def cross_hash(sequence: tf.Tensor, target: tf.Tensor, num_buckets: int) -> tf.Tensor:
    """Hashes each sequence entry crossed with its row's target.

    Args:
      sequence: string tensor ``[batch, length]``; ``""`` marks padding.
      target: string tensor ``[batch]``.
      num_buckets: number of hash buckets (>= 1).

    Returns:
      int64 tensor ``[batch, length]`` with ids in ``[0, num_buckets)``, ``PAD_ID`` at padding.
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets!r}")
    sequence = tf.convert_to_tensor(sequence, tf.string)
    target = tf.broadcast_to(tf.expand_dims(tf.convert_to_tensor(target, tf.string), -1),
                             tf.shape(sequence))
    joined = tf.strings.join([sequence, target], separator=CROSS_SEPARATOR)
    ids = tf.strings.to_hash_bucket_fast(joined, num_buckets)
    return tf.where(tf.equal(sequence, ""), tf.constant(PAD_ID, tf.int64), ids)


def cross_hash_numpy(sequence: np.ndarray, target: np.ndarray, num_buckets: int) -> np.ndarray:
    """:func:`cross_hash` on numpy arrays of ``str``/``bytes`` (eager; batch for speed)."""
    if len(target) == 0:
        return np.zeros(np.shape(sequence), np.int64)
    return cross_hash(sequence, target, num_buckets).numpy()
