"""Per-id logit biases: the first-order id terms of a logistic model, beside the deep tower.

A click model's logit holds effects that belong to one user or one item and nothing else: a
user who clicks more than users like them, an item better than its category, price and
popularity say. The simulator draws them as random effects (a user's click bias, sd 0.4; an
item's quality, 0.35 sd on the logit), and the best estimate from logged clicks is each id's
MAP under its prior (``benchmarks/achievable_auc.py``). Fed as embeddings into the MLP such
ids memorise (a user id embedding of dim 16 lowered the demo's CTR AUC); as one scalar per
id added to the logit -- the wide / first-order part of Wide & Deep (Cheng et al., DLRS 2016)
and of factorization machines (Rendle, ICDM 2010) -- they are that random effect.

How they learn matters as much. Adam normalises each coordinate's step, so an id seen once
moves by about the learning rate whatever its gradient, and keeps moving on its momentum.
:class:`~ranking.models.multitask.MultiTaskRanker` trains these tables by plain SGD instead
(``training.bias_learning_rate``): a row moves by ``eta * (y - p)`` per example (less the
batch's mean residual, below), so an id's bias is a running sum of its residuals. It starts
at 0 and in one pass moves only as far as its own rows take it: an id seen rarely stays near
0, as a prior would keep it.

The tables hold deviations, not the intercept: the gradient that reaches them is centred over
the batch's rows (each column minus its mean over the rows with a valid id), the sum-to-zero
constraint of random effects. Without it, while the network's intercept is still far off
(an untrained model predicts ~0.5 where the click rate is ~0.07), every row's residual is
negative and each id's bias falls in proportion to how often it was seen: the most active
users, who click most, ended lowest. On the tests' 6k-row fixture (2 shuffled epochs at lr
1e-3, ``tests/ranking/test_early_stopping.py``) the validation CTR AUC was 0.37 with
uncentred updates, 0.67-0.71 centred and 0.59 without biases (scratch runs).

Each id is read as in :class:`~ranking.features.embedding.FeatureEmbedding`: hashed
(``to_hash_bucket_fast(value, buckets)``) or, with ``encoding: integer``, a row number;
``""`` and out-of-range integers get no bias.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from ranking.config import BiasFeature
from ranking.features.embedding import id_rows
from ranking.utils.typed_config import from_mapping

__all__ = ["IdBias"]


@tf.custom_gradient
def _centred_gradient(bias, weight):
    """``bias * weight`` (``weight [B, 1]``: 1 for a valid id, 0 for none); the gradient to
    ``bias`` is the upstream one minus its mean over the valid rows, zero on the others."""

    def gradient(upstream):
        mean = (tf.reduce_sum(upstream * weight, 0, keepdims=True)
                / tf.maximum(tf.reduce_sum(weight), 1.0))
        return (upstream - mean) * weight, tf.zeros_like(weight)

    return bias * weight, gradient


@tf.keras.utils.register_keras_serializable(package="ranking")
class IdBias(tf.keras.layers.Layer):
    """Sum over ids of a learned per-row vector: one logit offset per output (tower).

    Args:
      features: the ids, a list of :class:`~ranking.config.BiasFeature` (or their mappings),
        each with its own table of ``buckets`` rows.
      outputs: how many offsets per row (the model's towers), >= 1.
      **kwargs: ``tf.keras.layers.Layer`` arguments.

    Call args:
      features: mapping name -> ``string [batch]`` (``[batch, 1]`` is accepted); other keys
        are ignored.

    Returns:
      ``float32 [batch, outputs]``: ``sum_f table_f[row_f(id)]``. Tables start at zero.
    """

    def __init__(self, features: Sequence, outputs: int, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        parsed = [from_mapping(BiasFeature, f, f"features.biases[{i}]")
                  if isinstance(f, Mapping) else f for i, f in enumerate(features)]
        if not parsed or not all(isinstance(f, BiasFeature) for f in parsed):
            raise ValueError(f"features must be a non-empty list of BiasFeature, got {features!r}")
        if isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1:
            raise ValueError(f"outputs must be an int >= 1, got {outputs!r}")
        self.bias_features = parsed
        self.outputs = outputs
        self.tables: dict[str, tf.Variable] = {}

    def build(self, input_shape=None):
        for f in self.bias_features:
            self.tables[f.name] = self.add_weight(
                name=f"{f.name}_bias", shape=(f.buckets, self.outputs), initializer="zeros",
                trainable=True, experimental_autocast=False)
        super().build(input_shape)

    def call(self, features):
        total = None
        for f in self.bias_features:
            rows, valid = id_rows(tf.reshape(features[f.name], [-1]), f)
            weight = (tf.ones_like(rows, tf.float32) if valid is None
                      else tf.cast(valid, tf.float32))[:, None]
            bias = _centred_gradient(tf.gather(self.tables[f.name], rows), weight)
            total = bias if total is None else total + bias
        return total

    def get_config(self):
        config = super().get_config()
        config.update(features=[dict(name=f.name, buckets=f.buckets, encoding=f.encoding)
                                for f in self.bias_features],
                      outputs=self.outputs)
        return config
