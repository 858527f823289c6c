"""The config-driven multi-task ranking model on TensorFlow Recommenders.

    features --FeatureEmbedding--> x [B, d], per-feature embeddings, domain index
             --EPNet (gating epnet/pepnet)--> x [B, d]
             --DCN crosses (optional)--> x' [B, d]
             --tower--> T task representations
             --PPNet task towers (gating ppnet/pepnet)--> T gated representations
             --TaskTowers--> T logits (+ STAR auxiliary logits) (+ per-id biases)
             --head--> named outputs

Every stage is a Keras layer chosen by the experiment config, so scenario layers and
delayed-feedback heads plug in as layers without changing this file's flow: a tower is
anything mapping ``[B, d]`` (or ``[x, domain_index]`` for the scenario towers) to a list of T
``[B, h]`` tensors, a head anything mapping the T logits to named logits.

Scenario layers (``model.tower``, ``model.gating``):

* ``dwg`` / ``star`` towers (:mod:`ranking.layers.scenario`) read the domain index of the
  feature layer (``domain.vocabulary[i]`` -> ``i + 1``); a domain missing from the vocabulary
  (index 0, e.g. a new country at serving time) goes through the shared weights only. STAR's
  auxiliary network (``model.star.aux_net``) is fed the domain index and the embeddings of
  ``model.star.domain_features`` (ids fixed by the domain, left out of the star network's
  input and its partitioned norm), and its logit is added to every task's logit before the
  offsets and the head (Sheng et al., CIKM 2021: ``y = sigmoid(s_main + s_aux)``).
* ``epnet`` rescales the embedding vector by a Gate NU fed the embeddings of
  ``model.domain_side_features`` and ``stop_gradient(x)`` (:class:`~ranking.layers.gating.EPNet`).
* ``ppnet``: the hidden layers of the task towers (``model.task_tower_units``) become one
  :class:`~ranking.layers.gating.PPNetTower` per task, each hidden layer rescaled by a Gate NU
  fed the embeddings of ``model.personal_features`` and ``stop_gradient`` of the embedding
  vector (after EPNet, before the crosses: the paper's general embedding); ``TaskTowers`` then
  keeps only the logit layers. The gates read the embedding vector, not the tower output, so
  PPNet composes with every tower (with no tower in between it is the paper's PEPNet layout,
  :class:`~ranking.layers.gating.PEPNet`).
* ``pepnet``: both.

Losses (``tasks[].loss``): ``bce``, ``focal`` (:class:`~ranking.losses.BinaryFocalLoss`) or
``bce_pairwise_auc`` (:class:`~ranking.losses.BCEWithPairwiseAUCLoss`), all from the logit.
The total is :class:`~ranking.losses.FixedTaskWeighting` (``sum_t w_t L_t``) or
:class:`~ranking.losses.UncertaintyWeighting` (``training.task_weighting``).

Masked tasks (``mask_label``, e.g. CVR on clicked rows). ``tfrs.tasks.Ranking`` hands the mask
to the Keras loss as ``sample_weight``, and Keras' ``SUM_OVER_BATCH_SIZE`` reduction divides
by the batch size ``B``, not by the number of masked-in rows: ``(1/B) sum_i m_i l_i``, which is
``(sum_i m_i / B)`` times the masked mean (CTR times the CVR loss). ``mask_normalization:
batch`` keeps that (the default, so existing configs train as before); ``masked`` passes the
weights ``w_i = m_i B / sum_j m_j`` instead (:func:`masked_mean_weights`), so that
``(1/B) sum_i w_i l_i = sum_i m_i l_i / sum_j m_j``, the mean over the masked-in rows, the
same value as :func:`ranking.losses.masked_mean` (0 when a batch has none). The pairwise AUC
term weighs pair ``(i, j)`` by ``w_i w_j`` normalized by the sum of those weights and AUC
metrics are invariant to a common factor, so the rescaling changes only the cross-entropy
mean.

Heads and the task each trains:

* ``independent``: one tower per task; output ``task.name`` = sigmoid(its logit).
* ``esmm`` (Ma et al., SIGIR 2018): two towers, CTR and CVR; outputs ``ctr``, ``cvr`` and
  ``ctcvr = ctr * cvr``. Tasks named ``ctr``/``ctcvr`` (and optionally ``cvr``, usually with
  ``mask_label: click``) are trained on the matching output. The CTCVR loss is binary
  cross-entropy on the *logit of the product*, ``log p - log(1 - p)`` computed in log space
  (:func:`~ranking.layers.heads.esmm.ctcvr_logit`), so it never takes ``log 0``. Any other
  task (an auxiliary label such as ``category_purchase``) gets a tower and an output of its
  own beside them.

Each task is a ``tfrs.tasks.Ranking`` with its from-logits loss and an AUC metric; the
model's loss combines the task losses as ``training.task_weighting`` says.

Per-id biases (``features.biases``, :class:`~ranking.features.id_bias.IdBias`): a learned
scalar per id row and tower, added to the tower's logit (after the STAR auxiliary logit,
before the calibration offset and the head). ``train_step`` trains their tables by plain SGD
on the per-example loss, every other weight by the compiled optimizer (see
:meth:`MultiTaskRanker.train_step`).

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

from ranking.config import (DOMAIN_TOWERS, ESMM_CTCVR_TASK, ESMM_CTR_TASK, ESMM_CVR_TASK,
                            ExperimentConfig, TaskConfig)
from ranking.data.schema import Schema
from ranking.features.embedding import DENSE, DOMAIN_INDEX, EMBEDDINGS, NUMERICS, FeatureEmbedding
from ranking.features.id_bias import IdBias
from ranking.layers import MMoE, PLE, SharedBottom, TaskTowers
from ranking.layers.gating import EPNet, PPNetTower
from ranking.layers.heads.esmm import ctcvr_logit
from ranking.layers.scenario import DWGTower, StarAuxiliaryNet, StarTower
from ranking.losses import (BCEWithPairwiseAUCLoss, BinaryFocalLoss, FixedTaskWeighting,
                            UncertaintyWeighting)

ESMM_TOWERS = (ESMM_CTR_TASK, ESMM_CVR_TASK)


def _scaled(gradient, factor):
    """``factor * gradient`` for a dense or an ``IndexedSlices`` gradient."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * factor, gradient.indices, gradient.dense_shape)
    return gradient * factor


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

    updates_every_row = True  # see MultiTaskRanker.compile

    def _deduplicate_sparse_grad(self, grads):
        # update_step sums repeated rows itself (unsorted_segment_sum); Keras' unique + sum
        # beforehand would be a second pass over the rows.
        if self.amsgrad:
            return super()._deduplicate_sparse_grad(grads)
        return grads

    def _adam_terms(self, variable) -> dict:
        """The slots ``m``, ``v`` of ``variable`` and this step's Adam constants in its dtype:
        ``beta_1``, ``beta_2``, their powers ``beta_1_power``, ``beta_2_power`` (step
        ``iterations + 1``), ``epsilon`` (scaled when ``adaptive_epsilon``) and ``lr``."""
        index = self._index_dict[self._var_key(variable)]
        dtype = variable.dtype
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_2_power = tf.pow(beta_2, step)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.adaptive_epsilon:
            epsilon = epsilon * tf.sqrt(1 - beta_2_power)
        return {"m": self._momentums[index], "v": self._velocities[index], "beta_1": beta_1,
                "beta_2": beta_2, "beta_1_power": tf.pow(beta_1, step),
                "beta_2_power": beta_2_power, "epsilon": epsilon,
                "lr": tf.cast(self.learning_rate, dtype)}

    def update_step(self, gradient, variable):
        if self.amsgrad:
            return super().update_step(gradient, variable)
        a = self._adam_terms(variable)
        if isinstance(gradient, tf.IndexedSlices):
            # The static row count: tf.shape(variable) would read the variable, and a live
            # read makes ResourceApplyAdam copy the whole table first (copy-on-write).
            gradient = tf.math.unsorted_segment_sum(
                gradient.values, gradient.indices, variable.shape[0])
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=a["m"].handle, v=a["v"].handle,
            beta1_power=a["beta_1_power"], beta2_power=a["beta_2_power"], lr=a["lr"],
            beta1=a["beta_1"], beta2=a["beta_2"], epsilon=a["epsilon"],
            grad=tf.cast(gradient, variable.dtype))


def fused_optimizer(optimizer):
    """``optimizer`` with Adam's fused update: a plain ``tf.keras.optimizers.Adam`` instance
    (exactly that class) becomes a :class:`FusedAdam` in place (same object, state and
    settings); anything else is returned unchanged."""
    if type(optimizer) is tf.keras.optimizers.Adam:
        optimizer.__class__ = FusedAdam
    return optimizer


def build_tower(config: ExperimentConfig, num_towers: int) -> tf.keras.layers.Layer:
    """The multi-task tower layer named by ``model.tower`` (the ``dwg`` and ``star`` towers
    are called on ``[x, domain_index]``, the others on ``x``)."""
    m = config.model
    num_domains = len(config.domain.vocabulary)
    if m.tower == "dwg":
        d = m.dwg_options
        return DWGTower(num_towers, m.bottom_units, num_domains, mode=d.mode, rank=d.rank,
                        shrinkage_k=d.shrinkage_k, delta_scale=d.delta_scale,
                        dropout=m.dropout, name="tower")
    if m.tower == "star":
        return StarTower(num_towers, m.bottom_units, num_domains, dropout=m.dropout,
                         partitioned_norm=m.star_options.partitioned_norm, name="tower")
    if m.tower == "shared_bottom":
        return SharedBottom(num_towers, m.bottom_units, dropout=m.dropout, name="tower")
    if m.tower == "mmoe":
        return MMoE(num_towers, m.experts, m.expert_units, expert_dropout=m.dropout,
                    identical_experts=m.expert_init == "identical", name="tower")
    if m.tower == "ple":
        return PLE(num_towers, m.levels, m.shared_experts, m.task_experts, m.expert_units,
                   expert_dropout=m.dropout, identical_experts=m.expert_init == "identical",
                   name="tower")
    raise ValueError(f"model.tower: unknown tower {m.tower!r}")


def build_star_aux_net(config: ExperimentConfig, num_towers: int):
    """STAR's auxiliary domain network (one logit per tower), or None."""
    m = config.model
    if m.tower != "star" or not m.star_options.aux_net:
        return None
    s = m.star_options
    return StarAuxiliaryNet(len(config.domain.vocabulary), num_tasks=num_towers,
                            embedding_dim=s.aux_embedding_dim, units=s.aux_net_units,
                            dropout=m.dropout, name="star_aux_net")


def build_ppnet_towers(config: ExperimentConfig, names) -> list | None:
    """One :class:`PPNetTower` per task tower (its hidden layers ``task_tower_units``), or
    None. Gate inputs are passed whole (``gate_with_input=False``): the model concatenates the
    personal embeddings with the stop-gradient of the embedding vector itself, since the
    towers' own input is the tower output."""
    m = config.model
    if not m.gates_task_towers:
        return None
    return [PPNetTower(1, m.task_tower_units, m.gate_hidden_units, gate_with_input=False,
                       dropout=m.dropout, name=f"ppnet_{name}") for name in names]


def task_loss(task: TaskConfig) -> tf.keras.losses.Loss:
    """The Keras loss (from logits) named by ``task.loss``."""
    if task.loss == "focal":
        f = task.focal_options
        return BinaryFocalLoss(gamma=f.gamma, alpha=f.alpha)
    if task.loss == "bce_pairwise_auc":
        p = task.pairwise_auc_options
        return BCEWithPairwiseAUCLoss(pairwise_weight=p.weight, tau=p.tau,
                                      surrogate=p.surrogate)
    return tf.keras.losses.BinaryCrossentropy(from_logits=True)


def build_task_weighting(config: ExperimentConfig) -> tf.keras.layers.Layer:
    """Combines the task losses (in ``config.tasks`` order) into the total."""
    if config.training.task_weighting == "uncertainty":
        return UncertaintyWeighting(len(config.tasks), name="task_weighting")
    return FixedTaskWeighting([t.weight for t in config.tasks], name="task_weighting")


def masked_mean_weights(mask: tf.Tensor) -> tf.Tensor:
    """``mask * B / sum(mask)`` (0 when the mask sums to 0): sample weights under which
    Keras' batch-size mean is the mean over the masked-in rows (module docstring)."""
    batch = tf.cast(tf.size(mask), mask.dtype)
    return tf.math.divide_no_nan(mask * batch, tf.reduce_sum(mask))


def _extra_tasks(config: ExperimentConfig) -> tuple[str, ...]:
    """ESMM: the tasks besides ctr/cvr/ctcvr (e.g. an auxiliary label), one tower each."""
    esmm = ESMM_TOWERS + (ESMM_CTCVR_TASK,)
    return tuple(t.name for t in config.tasks if t.name not in esmm)


def tower_names(config: ExperimentConfig) -> tuple[str, ...]:
    """Names of the task towers (one logit each), in order."""
    if config.model.head == "esmm":
        return ESMM_TOWERS + _extra_tasks(config)
    return tuple(t.name for t in config.tasks)


def output_names(config: ExperimentConfig) -> tuple[str, ...]:
    """Names of the model's outputs (what serving returns), in order."""
    if config.model.head == "esmm":
        return tower_names(config) + (ESMM_CTCVR_TASK,)
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
        self.epnet = EPNet(m.gate_hidden_units, name="epnet") if m.gates_embedding else None
        self.tower = build_tower(config, len(self._towers))
        self.ppnet_towers = build_ppnet_towers(config, self._towers)
        # With PPNet the hidden layers live in the gated towers; TaskTowers keeps the logits.
        self.task_towers = TaskTowers(
            len(self._towers), () if self.ppnet_towers else m.task_tower_units,
            dropout=m.dropout, name="task_towers")
        self.star_aux_net = build_star_aux_net(config, len(self._towers))
        self.id_bias = (IdBias(config.features.biases, len(self._towers), name="id_bias")
                        if config.features.biases else None)
        self.bias_optimizer = None  # set by compile when there are id biases
        # Post-training calibration (ranking.calibration): added to each tower's logit,
        # zero until fitted; part of the exported graph.
        self.logit_offsets = {name: tf.Variable(0.0, trainable=False, name=f"{name}_offset")
                              for name in self._towers}
        self.tasks = {
            t.name: tfrs.tasks.Ranking(
                loss=task_loss(t),
                metrics=[tf.keras.metrics.AUC(from_logits=True, name=f"{t.name}_auc")],
                name=t.name)
            for t in config.tasks}
        self.task_weighting = build_task_weighting(config)

    def compile(self, optimizer="rmsprop", **kwargs):
        """``tf.keras.Model.compile``; a plain Adam runs with the fused update
        (:func:`fused_optimizer`)."""
        if isinstance(optimizer, str) and optimizer.lower() == "adam":
            optimizer = tf.keras.optimizers.Adam()
        optimizer = fused_optimizer(optimizer)
        # FusedAdam updates every row of the tables every step: look rows up from the tables'
        # values so that the update is in place (FeatureEmbedding._lookup). LazyAdam
        # (ranking.optimizers) updates the looked-up rows only: sparse reads.
        self.embedding.dense_table_updates = getattr(optimizer, "updates_every_row", False)
        if self.id_bias is not None:
            self.bias_optimizer = tf.keras.optimizers.SGD(
                self.config.training.bias_learning_rate, name="bias_sgd")
        super().compile(optimizer=optimizer, **kwargs)

    def train_step(self, inputs):
        """``tfrs.Model.train_step``, except for the ``features.biases`` tables: the compiled
        optimizer updates every other weight; the bias tables get plain SGD,
        ``b <- b - eta * B * dL/db`` with ``eta = training.bias_learning_rate`` and ``B`` the
        batch's rows. ``L`` is a mean over the batch (each task's loss is), so ``B * dL/db``
        sums the per-example gradients of the rows that look ``b`` up: for one BCE task on
        the logit ``s = ... + b``, ``dl_i/db = p_i - y_i =: r_i``, and with IdBias' centring
        a row moves by ``-eta * sum_i (r_i - mean_j r_j)``. Adam would move a row seen once
        by about its learning rate whatever ``r_i`` is (its step is normalised per
        coordinate), and keep moving it on its momentum; SGD's step is the residual's, so an
        id's bias grows with the evidence for it."""
        if self.id_bias is None:
            return super().train_step(inputs)
        # tfrs.Model.train_step's loss and metrics; only the update is split in two.
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(x) for x in self.losses])
            total_loss = loss + regularization_loss
        biases = self.id_bias.trainable_variables
        others = [v for v in self.trainable_variables if all(v is not b for b in biases)]
        gradients = tape.gradient(total_loss, others + biases)
        self.optimizer.apply_gradients(zip(gradients[:len(others)], others))
        rows = tf.cast(tf.shape(tf.nest.flatten(inputs)[0])[0], tf.float32)
        self.bias_optimizer.apply_gradients(
            (_scaled(g, rows), v) for g, v in zip(gradients[len(others):], biases))
        metrics = {m.name: m.result() for m in self.metrics}
        metrics.update(loss=loss, regularization_loss=regularization_loss,
                       total_loss=total_loss)
        return metrics

    def logits(self, features, training=None) -> dict[str, tf.Tensor]:
        """``{output name: float32 [B] logit}``."""
        embedded = self.embedding(features)
        domain = embedded[DOMAIN_INDEX]
        x = self._tower_input(embedded)
        if self.epnet is not None:
            x = self.epnet([x, self._embeddings(embedded, self.config.model.domain_side_features)])
        x0 = x
        for cross in self.crosses:
            x = cross(x0, x)
        if self.config.model.tower in DOMAIN_TOWERS:
            representations = self.tower([x, domain], training=training)
        else:
            representations = self.tower(x, training=training)
        if self.ppnet_towers is not None:
            prior = self.ppnet_gate_inputs(embedded, x0)
            representations = [tower([r, prior], training=training)[0]
                               for tower, r in zip(self.ppnet_towers, representations)]
        logits = self.task_towers(representations, training=training)
        if self.star_aux_net is not None:
            side = self.config.model.star_options.domain_features
            aux = self.star_aux_net(
                [tf.concat(self._embeddings(embedded, side), axis=1), domain] if side
                else domain, training=training)
            logits = [main + a for main, a in zip(logits, aux)]
        if self.id_bias is not None:
            bias = self.id_bias(features)
            logits = [logit + tf.cast(bias[:, i:i + 1], logit.dtype)
                      for i, logit in enumerate(logits)]
        named = {name: tf.squeeze(logit, -1) + self.logit_offsets[name]
                 for name, logit in zip(self._towers, logits)}
        if self.config.model.head == "esmm":
            named[ESMM_CTCVR_TASK] = ctcvr_logit(named[ESMM_CTR_TASK], named[ESMM_CVR_TASK])
        return named

    def _tower_input(self, embedded) -> tf.Tensor:
        """The dense input vector, without ``model.star.domain_features`` for a STAR tower
        (they feed its auxiliary network)."""
        m = self.config.model
        left_out = set(m.star_options.domain_features) if m.tower == "star" else set()
        if not left_out:
            return embedded[DENSE]
        parts = [embedded[EMBEDDINGS][n] for n in self.config.features.input_names
                 if n in embedded[EMBEDDINGS] and n not in left_out]
        return tf.concat(parts + [embedded[NUMERICS]], axis=1)

    @staticmethod
    def _embeddings(embedded, names) -> list[tf.Tensor]:
        return [embedded[EMBEDDINGS][n] for n in names]

    def ppnet_gate_inputs(self, embedded, x) -> list[tf.Tensor]:
        """What the PPNet gates read: the personal features' embeddings (trained through the
        gates) and ``stop_gradient`` of the embedding vector ``x`` (read, not trained: its
        gradient comes through the towers only, as PPNetTower does with its own input)."""
        return self._embeddings(embedded, self.config.model.personal_features) + [
            tf.stop_gradient(x)]

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
            losses.append(self.tasks[t.name](labels=labels[t.label][:, None],
                                             predictions=logits[t.name][:, None],
                                             sample_weight=self._sample_weight(t, labels),
                                             training=training, compute_metrics=True))
        return self.task_weighting(losses)

    @staticmethod
    def _sample_weight(task: TaskConfig, labels):
        """The task's per-row weights ``[B, 1]`` (None: every row counts 1); see the module
        docstring for ``mask_normalization``."""
        if task.mask_label is None:
            return None
        mask = labels[task.mask_label][:, None]
        return masked_mean_weights(mask) if task.mask_normalization == "masked" else mask
