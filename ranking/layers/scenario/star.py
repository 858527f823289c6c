"""STAR: star-topology fully connected layers, the STAR tower and the auxiliary network."""
from __future__ import annotations

import tensorflow as tf

from ranking.layers.mlp import (MLP, _check_int, _check_rate, _check_units, _clone_initializer,
                                _get_activation, _get_initializer, _get_regularizer, _PACKAGE,
                                _serialize_activation)
from ranking.layers.scenario.dwg import (_serialize, domain_index_tensor, run_domain_stack,
                                        split_domain_inputs,
                                        split_domain_shapes)
from ranking.layers.scenario.partitioned_norm import (PartitionedNormalization,
                                                      _check_epsilon, _check_fraction)

@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class StarDense(tf.keras.layers.Layer):
    """Star-topology fully connected layer (STAR, Sheng et al., CIKM 2021, section 3.2).

    A shared (centre) layer ``W, b`` and one layer per domain ``W_p, b_p``; domain ``p`` uses
    ``y = x (W * W_p) + (b + b_p)`` (``*`` element-wise), so the shared weights carry what all
    domains have in common and the domain weights rescale them. Domain kernels start at ones and
    domain biases at zeros (every domain starts as the shared layer); the unknown domain (index
    0) uses ``W``, ``b`` alone.

    Computation: the ``D + 1`` effective kernels ``[W, W * W_1, ..., W * W_D]`` are laid side by
    side, ``[d_in, (D+1) * units]``, one matmul gives every domain's output and each row gathers
    its own domain's slice (see :class:`~ranking.layers.scenario.DomainDense` for the timing
    against per-example kernel gathers). Parameters of domains absent from the batch get zero
    gradients.

    Args:
      units: output width, positive int.
      num_domains: number of known domains D, >= 1.
      activation: activation (default None, linear).
      use_bias: whether to add ``b + b_p``.
      kernel_initializer, bias_initializer: for the shared ``W``, ``b``.
      kernel_regularizer: applies to the shared ``W`` (domain kernels start at 1 and are not
        regularized toward 0).

    Call: ``layer([x, domain_index], training=None)``, ``x: [batch, d_in]``, ``domain_index:
    int32 [batch]`` in ``[0, D]``. Output: ``[batch, units]`` in the compute dtype.
    """

    def __init__(self, units: int, num_domains: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_int("units", units)
        self.num_domains = _check_int("num_domains", num_domains)
        self._activation = _get_activation("activation", activation)
        self.use_bias = bool(use_bias)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._bias_initializer = _get_initializer("bias_initializer", bias_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)

    def build(self, input_shape):
        d_in = split_domain_shapes("StarDense", input_shape)[-1]
        n, u = self.num_domains, self.units
        self.shared_kernel = self.add_weight(
            "shared_kernel", shape=[d_in, u],
            initializer=_clone_initializer(self._kernel_initializer),
            regularizer=self._kernel_regularizer)
        self.domain_kernels = self.add_weight("domain_kernels", shape=[n, d_in, u],
                                              initializer="ones")
        self.shared_bias = self.domain_biases = None
        if self.use_bias:
            self.shared_bias = self.add_weight(
                "shared_bias", shape=[u], initializer=_clone_initializer(self._bias_initializer))
            self.domain_biases = self.add_weight("domain_biases", shape=[n, u],
                                                 initializer="zeros")
        super().build(input_shape)

    def effective_weights(self):
        """Kernels ``[D+1, d_in, units]`` and biases ``[D+1, units]`` (or None); slot 0 is the
        shared layer (unknown domain), slot ``p`` domain ``p``'s ``W * W_p``, ``b + b_p``."""
        w = self.shared_kernel
        kernels = tf.concat([w[None], w[None] * self.domain_kernels], 0)
        biases = None
        if self.use_bias:
            b = self.shared_bias
            biases = tf.concat([b[None], b[None] + self.domain_biases], 0)
        return kernels, biases

    def call(self, inputs, training=None):
        x, idx = split_domain_inputs("StarDense", inputs)
        idx = domain_index_tensor(idx, self.num_domains)
        k, u = self.num_domains + 1, self.units
        kernels, biases = self.effective_weights()
        d_in = kernels.shape[1]
        wide = tf.reshape(tf.transpose(kernels, [1, 0, 2]), [d_in, k * u])
        y_all = tf.reshape(tf.matmul(x, wide), [-1, k, u])
        y = tf.gather(y_all, idx, axis=1, batch_dims=1)  # row b: slot idx[b]
        if biases is not None:
            y = y + tf.gather(biases, idx)
        return self._activation(y)

    def compute_output_shape(self, input_shape):
        x_shape = split_domain_shapes("StarDense", input_shape)
        return x_shape[:-1].concatenate([self.units])

    def get_config(self):
        return {
            **super().get_config(), "units": self.units, "num_domains": self.num_domains,
            "activation": _serialize_activation(self._activation), "use_bias": self.use_bias,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "bias_initializer": tf.keras.initializers.serialize(self._bias_initializer),
            "kernel_regularizer": _serialize(self._kernel_regularizer, "regularizers"),
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class StarTower(tf.keras.layers.Layer):
    """STAR tower (Sheng et al., CIKM 2021): partitioned normalization of the input, then a
    stack of star-topology FC layers; the output is shared by all tasks.

    One model serves all domains: the star topology shares a centre network across domains while
    each domain rescales it element-wise (:class:`StarDense`), and partitioned normalization
    (:class:`PartitionedNormalization`) normalizes the input with the row's own domain
    statistics. Seed 000 uses it for in-app vs external traffic: PN for features whose
    distribution differs by source, the star FCN for patterns that differ. The paper's third
    part, the auxiliary network, is :class:`StarAuxiliaryNet`, whose logits the model adds to
    the task logits. The task-specific part is :class:`~ranking.layers.mlp.TaskTowers`.

    Args:
      num_tasks: number of tasks T, >= 1.
      units: positive int or sequence of positive ints, widths of the star FC layers.
      num_domains: number of known domains D, >= 1.
      activation: activation after every layer (``"relu"``).
      dropout: dropout rate in ``[0, 1)`` after every layer when ``training``.
      partitioned_norm: whether to apply :class:`PartitionedNormalization` to the input.
      norm_momentum, norm_epsilon: its ``momentum``, ``epsilon``.
      use_bias, kernel_initializer, kernel_regularizer: for every :class:`StarDense`.

    Call: ``tower([x, domain_index], training=None)``, ``x: [batch, d]``, ``domain_index:
    int32 [batch]`` in ``[0, D]``. Output: list of T tensors ``[batch, units[-1]]`` -- the same
    tensor T times (tower contract).
    """

    def __init__(self, num_tasks: int, units, num_domains: int, activation="relu",
                 dropout: float = 0.0, partitioned_norm: bool = True,
                 norm_momentum: float = 0.99, norm_epsilon: float = 1e-3, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.units = _check_units("units", units)
        self.num_domains = _check_int("num_domains", num_domains)
        self.dropout = _check_rate("dropout", dropout)
        self.partitioned_norm = bool(partitioned_norm)
        self.norm_momentum = _check_fraction("norm_momentum", norm_momentum)
        self.norm_epsilon = _check_epsilon("norm_epsilon", norm_epsilon)
        self._activation = _get_activation("activation", activation)
        self.use_bias = bool(use_bias)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.norm = PartitionedNormalization(
            self.num_domains, momentum=self.norm_momentum, epsilon=self.norm_epsilon,
            dtype=self.dtype_policy, name="partitioned_norm") if self.partitioned_norm else None
        self.dense_layers = [
            StarDense(u, self.num_domains, activation=self._activation, use_bias=self.use_bias,
                      kernel_initializer=_clone_initializer(self._kernel_initializer, 100 * i),
                      kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
                      name=f"star_dense_{i}")
            for i, u in enumerate(self.units)]
        self.dropout_layer = tf.keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy) if self.dropout else None

    def call(self, inputs, training=None):
        x, idx = split_domain_inputs("StarTower", inputs)
        idx = domain_index_tensor(idx, self.num_domains)
        if self.norm is not None:
            x = self.norm([x, idx], training=training)
        x = run_domain_stack(x, idx, self.dense_layers, self.dropout_layer, training)
        return [x] * self.num_tasks

    def compute_output_shape(self, input_shape):
        x_shape = split_domain_shapes("StarTower", input_shape)
        return [x_shape[:-1].concatenate([self.units[-1]])] * self.num_tasks

    def get_config(self):
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "units": list(self.units),
            "num_domains": self.num_domains,
            "activation": _serialize_activation(self._activation), "dropout": self.dropout,
            "partitioned_norm": self.partitioned_norm, "norm_momentum": self.norm_momentum,
            "norm_epsilon": self.norm_epsilon, "use_bias": self.use_bias,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": _serialize(self._kernel_regularizer, "regularizers"),
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class StarAuxiliaryNet(tf.keras.layers.Layer):
    """STAR auxiliary network (Sheng et al., CIKM 2021, section 3.4): a small MLP fed the domain
    indicator, whose logit is added to the main network's logit.

    The star FCN may learn the domain's effect only weakly through the rescaled weights; feeding
    the domain identity straight to a small network next to the main one makes the domain
    shift the logit directly. The domain index is embedded (``num_domains + 1`` rows: row 0 is a
    learned unknown-domain embedding), optionally concatenated with other features that describe
    the domain (e.g. scene/country context), passed through an MLP (``units``), and a linear
    float32 layer gives one logit per task.

    How a model adds it: with main logits ``main = TaskTowers(...)(tower_out)`` (a list of T
    ``[batch, 1]`` float32 tensors) and ``aux = StarAuxiliaryNet(num_domains, num_tasks=T)``,
    the final logits are ``[m + a for m, a in zip(main, aux(domain_index))]`` (or
    ``aux([features, domain_index])``), fed to the sigmoid / ESMM head as usual; both networks
    are trained jointly by the task losses (paper: ``y = sigmoid(s_m + s_a)``).

    Args:
      num_domains: number of known domains D, >= 1.
      num_tasks: number of logits T, >= 1 (default 1).
      embedding_dim: width of the domain embedding, >= 1 (default 8).
      units: sequence of positive ints, hidden widths of the MLP (default ``(16,)``; may be
        empty: logits linear in the embedding and features).
      activation, dropout: for the hidden layers.
      embeddings_initializer, kernel_initializer, kernel_regularizer: for the embedding, the
        hidden layers and the logit layer.

    Call: ``aux(domain_index)`` or ``aux([x, domain_index])`` (``x: [batch, d]``, the same form
    on every call), ``domain_index: int32 [batch]`` in ``[0, D]``. Output: list of T float32
    logits ``[batch, 1]``.
    """

    def __init__(self, num_domains: int, num_tasks: int = 1, embedding_dim: int = 8,
                 units=(16,), activation="relu", dropout: float = 0.0,
                 embeddings_initializer="uniform", kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_domains = _check_int("num_domains", num_domains)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.embedding_dim = _check_int("embedding_dim", embedding_dim)
        self.units = _check_units("units", units, allow_empty=True)
        self._activation = _get_activation("activation", activation)
        self.dropout = _check_rate("dropout", dropout)
        self._embeddings_initializer = _get_initializer("embeddings_initializer",
                                                        embeddings_initializer)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.embedding = tf.keras.layers.Embedding(
            self.num_domains + 1, self.embedding_dim,
            embeddings_initializer=self._embeddings_initializer, dtype=self.dtype_policy,
            name="domain_embedding")
        self.hidden = MLP(self.units, activation=self._activation, dropout=self.dropout,
                          kernel_initializer=self._kernel_initializer,
                          kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
                          name="hidden") if self.units else None
        self.logit = tf.keras.layers.Dense(
            self.num_tasks, kernel_initializer=_clone_initializer(self._kernel_initializer, 7),
            kernel_regularizer=self._kernel_regularizer, dtype="float32", name="logit")
        self._with_features = None

    def _split(self, inputs):
        if isinstance(inputs, (list, tuple)):
            x, idx = split_domain_inputs("StarAuxiliaryNet", inputs)
        else:
            x, idx = None, inputs
        if self._with_features is not None and self._with_features != (x is not None):
            raise ValueError("StarAuxiliaryNet was built for "
                             + ("[x, domain_index]" if self._with_features else "domain_index")
                             + " inputs; call it the same way every time")
        return x, idx

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and len(input_shape) == 2 \
                and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            self._with_features = True
            d = split_domain_shapes("StarAuxiliaryNet", input_shape)[-1]
            batch = tf.TensorShape(input_shape[0])[0]
        else:
            self._with_features = False
            d, batch = 0, tf.TensorShape(input_shape)[0]
        width = self.embedding_dim + d
        self.embedding.build(tf.TensorShape([batch]))
        if self.hidden is not None:
            self.hidden.build(tf.TensorShape([batch, width]))
            width = self.units[-1]
        self.logit.build(tf.TensorShape([batch, width]))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, idx = self._split(inputs)
        idx = domain_index_tensor(idx, self.num_domains)
        h = self.embedding(idx)
        if x is not None:
            h = tf.concat([h, tf.cast(x, h.dtype)], 1)
        if self.hidden is not None:
            h = self.hidden(h, training=training)
        logits = self.logit(h)  # float32 sublayer
        return tf.split(logits, self.num_tasks, axis=1)

    def compute_output_shape(self, input_shape):
        batch = tf.TensorShape(input_shape[0] if isinstance(input_shape, (list, tuple))
                               and len(input_shape) == 2 else input_shape)[0]
        return [tf.TensorShape([batch, 1])] * self.num_tasks

    def get_config(self):
        return {
            **super().get_config(), "num_domains": self.num_domains,
            "num_tasks": self.num_tasks, "embedding_dim": self.embedding_dim,
            "units": list(self.units), "activation": _serialize_activation(self._activation),
            "dropout": self.dropout,
            "embeddings_initializer": tf.keras.initializers.serialize(
                self._embeddings_initializer),
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": _serialize(self._kernel_regularizer, "regularizers"),
        }
