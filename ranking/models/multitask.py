"""The config-driven multi-task ranking model on TensorFlow Recommenders.

    features --FeatureEmbedding--> x [B, d] --DCN crosses (optional)--> x' [B, d]
             --tower--> T task representations
             --TaskTowers--> T logits --head--> named outputs (probabilities)

Every stage is a Keras layer chosen by the experiment config, so scenario layers (DWG, STAR,
PPNet/EPNet) and delayed-feedback heads plug in as layers without changing this file's flow:
a tower is anything mapping ``[B, d]`` to a list of T ``[B, h]`` tensors, a head anything
mapping the T logits to named logits.

Heads and the task each trains:

* ``independent``: one tower per task; output ``task.name`` = sigmoid(its logit).
* ``esmm`` (Ma et al., SIGIR 2018): two towers, CTR and CVR; outputs ``ctr``, ``cvr`` and
  ``ctcvr = ctr * cvr``. Tasks named ``ctr``/``ctcvr`` (and optionally ``cvr``, usually with
  ``mask_label: click``) are trained on the matching output. The CTCVR loss is binary
  cross-entropy on the *logit of the product*, ``log p - log(1 - p)`` computed in log space
  (:func:`~ranking.layers.heads.esmm.ctcvr_logit`), so it never takes ``log 0``.

Each task is a ``tfrs.tasks.Ranking`` with a from-logits cross-entropy and an AUC metric; the
model's loss is the weighted sum of the task losses.

Optimizer: ``compile`` runs a plain ``tf.keras.optimizers.Adam`` with TensorFlow's fused Adam
kernel (:class:`FusedAdam`): the same update, one pass over each variable and its two slots.
Keras' Adam spends about ten element-wise passes per variable, and for the embedding tables'
sparse gradients it still decays the slots of every row and updates every row, so a 100k x 16
table costs ~10 full-table passes a step (plus a copy of the table and slots: a variable that
had a sparse access is copied before each dense update); the fused kernel does it in one (after
one scatter-add of the gradient rows), and the embedding layer then gathers rows from the
tables' values so that the update is in place (``FeatureEmbedding.dense_table_updates``). The
Adam part of a training step went from ~20 to ~6 ms of CPU time in the 12-feature PLE benchmark
(``benchmarks/deepctr_comparison.py``, batch 1024); at ``configs/ple_esmm.yaml``'s batch 256,
where the per-step table update weighs 4x more per example, input-fed training ran ~1.8x
faster (9.6k -> 16.9k examples/s, before and after measured in one run).
Adam stays exact (every row every step); a lazy (touched rows only) update would be cheaper
still but is a different optimizer.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranking.config import ESMM_CTCVR_TASK, ESMM_CTR_TASK, ESMM_CVR_TASK, ExperimentConfig
from ranking.data.schema import Schema
from ranking.features.embedding import DENSE, FeatureEmbedding
from ranking.layers import MMoE, PLE, SharedBottom, TaskTowers
from ranking.layers.heads.esmm import ctcvr_logit

ESMM_TOWERS = (ESMM_CTR_TASK, ESMM_CVR_TASK)


@tf.keras.utils.register_keras_serializable(package="ranking")
class FusedAdam(tf.keras.optimizers.Adam):
    """``tf.keras.optimizers.Adam`` whose update is TensorFlow's fused ``ResourceApplyAdam``.

    Same hyperparameters, slots (``m``, ``v``), checkpoint layout and update as Keras' Adam
    (``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 - b2)``,
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, every row every step),
    computed in one pass over ``w``, ``m`` and ``v``. A sparse gradient (``IndexedSlices``, an
    embedding table's) is first summed into a dense one (``unsorted_segment_sum``, which also
    adds up repeated rows). ``amsgrad`` falls back to Keras' implementation.
    """

    def _deduplicate_sparse_grad(self, grads):
        # update_step sums repeated rows itself (unsorted_segment_sum); Keras' unique + sum
        # beforehand would be a second pass over the rows.
        if self.amsgrad:
            return super()._deduplicate_sparse_grad(grads)
        return grads

    def update_step(self, gradient, variable):
        if self.amsgrad:
            return super().update_step(gradient, variable)
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.adaptive_epsilon:
            epsilon = epsilon * tf.sqrt(1 - beta_2_power)
        if isinstance(gradient, tf.IndexedSlices):
            # The static row count: tf.shape(variable) would read the variable, and a live
            # read makes ResourceApplyAdam copy the whole table first (copy-on-write).
            gradient = tf.math.unsorted_segment_sum(
                gradient.values, gradient.indices, variable.shape[0])
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=tf.cast(self.learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=epsilon, grad=tf.cast(gradient, dtype))


def fused_optimizer(optimizer):
    """``optimizer`` with Adam's fused update: a plain ``tf.keras.optimizers.Adam`` instance
    (exactly that class) becomes a :class:`FusedAdam` in place (same object, state and
    settings); anything else is returned unchanged."""
    if type(optimizer) is tf.keras.optimizers.Adam:
        optimizer.__class__ = FusedAdam
    return optimizer


def build_tower(config: ExperimentConfig, num_towers: int) -> tf.keras.layers.Layer:
    """The multi-task tower layer named by ``model.tower``."""
    m = config.model
    if m.tower == "shared_bottom":
        return SharedBottom(num_towers, m.bottom_units, dropout=m.dropout, name="tower")
    if m.tower == "mmoe":
        return MMoE(num_towers, m.experts, m.expert_units, expert_dropout=m.dropout,
                    name="tower")
    if m.tower == "ple":
        return PLE(num_towers, m.levels, m.shared_experts, m.task_experts, m.expert_units,
                   expert_dropout=m.dropout, name="tower")
    raise ValueError(f"model.tower: unknown tower {m.tower!r}")


def tower_names(config: ExperimentConfig) -> tuple[str, ...]:
    """Names of the task towers (one logit each), in order."""
    if config.model.head == "esmm":
        return ESMM_TOWERS
    return tuple(t.name for t in config.tasks)


def output_names(config: ExperimentConfig) -> tuple[str, ...]:
    """Names of the model's outputs (what serving returns), in order."""
    if config.model.head == "esmm":
        return ESMM_TOWERS + (ESMM_CTCVR_TASK,)
    return tower_names(config)


class MultiTaskRanker(tfrs.models.Model):
    """Embedding -> multi-task tower -> task towers -> head, one TFRS ranking task per task.

    Args:
      config: the experiment (features, model, tasks).
      schema: the samples' schema (cross bucket counts, feature checks).

    Call: ``model(features)`` with ``features`` a dict of batched tensors as yielded by
    :func:`ranking.data.make_dataset` returns ``{output name: float32 [B] probability}``.
    ``model.logits(features)`` returns the same keys as logits.
    """

    def __init__(self, config: ExperimentConfig, schema: Schema, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self._towers = tower_names(config)
        self._outputs = output_names(config)
        unknown = [t.name for t in config.tasks if t.name not in self._outputs]
        if unknown:
            raise ValueError(f"tasks {unknown} name no output of head {config.model.head!r}; "
                             f"outputs are {list(self._outputs)}")
        m = config.model
        self.embedding = FeatureEmbedding(config.features, schema, domain=config.domain,
                                          name="embedding")
        self.crosses = [tfrs.layers.dcn.Cross(projection_dim=m.cross_projection_dim,
                                              name=f"cross_{i}")
                        for i in range(m.cross_layers)]
        self.tower = build_tower(config, len(self._towers))
        self.task_towers = TaskTowers(len(self._towers), m.task_tower_units,
                                      dropout=m.dropout, name="task_towers")
        # Post-training calibration (ranking.calibration): added to each tower's logit,
        # zero until fitted; part of the exported graph.
        self.logit_offsets = {name: tf.Variable(0.0, trainable=False, name=f"{name}_offset")
                              for name in self._towers}
        self.tasks = {
            t.name: tfrs.tasks.Ranking(
                loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                metrics=[tf.keras.metrics.AUC(from_logits=True, name=f"{t.name}_auc")],
                name=t.name)
            for t in config.tasks}

    def compile(self, optimizer="rmsprop", **kwargs):
        """``tf.keras.Model.compile``; a plain Adam runs with the fused update
        (:func:`fused_optimizer`)."""
        if isinstance(optimizer, str) and optimizer.lower() == "adam":
            optimizer = tf.keras.optimizers.Adam()
        optimizer = fused_optimizer(optimizer)
        # FusedAdam updates every row of the tables every step: look rows up from the tables'
        # values so that the update is in place (FeatureEmbedding._lookup).
        self.embedding.dense_table_updates = isinstance(optimizer, FusedAdam)
        super().compile(optimizer=optimizer, **kwargs)

    def logits(self, features, training=None) -> dict[str, tf.Tensor]:
        """``{output name: float32 [B] logit}``."""
        x0 = x = self.embedding(features)[DENSE]
        for cross in self.crosses:
            x = cross(x0, x)
        representations = self.tower(x, training=training)
        logits = self.task_towers(representations, training=training)
        named = {name: tf.squeeze(logit, -1) + self.logit_offsets[name]
                 for name, logit in zip(self._towers, logits)}
        if self.config.model.head == "esmm":
            named[ESMM_CTCVR_TASK] = ctcvr_logit(named[ESMM_CTR_TASK], named[ESMM_CVR_TASK])
        return named

    def call(self, features, training=None):
        return {name: tf.sigmoid(logit)
                for name, logit in self.logits(features, training=training).items()}

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        features, labels = inputs
        logits = self.logits(features, training=training)
        losses = []
        for t in self.config.tasks:
            # [B, 1]: Keras losses average over the last axis, so a [B] input would be reduced
            # to one number before the per-example sample weights could apply.
            weight = None if t.mask_label is None else labels[t.mask_label][:, None]
            loss = self.tasks[t.name](labels=labels[t.label][:, None],
                                      predictions=logits[t.name][:, None],
                                      sample_weight=weight, training=training,
                                      compute_metrics=True)
            losses.append(t.weight * loss)
        return tf.add_n(losses)
