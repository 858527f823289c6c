"""MLP blocks: a plain MLP, a fused bank of parallel MLPs, and the per-task logit towers.

``MLP`` is the usual stack of ``Dense`` layers. ``ParallelMLP`` computes ``N`` independent MLPs of
the same shape at once -- the experts of an MMoE/PLE level, or the per-task towers -- keeping one
weight tensor ``[N, d_in, d_out]`` per layer instead of ``N`` separate ``Dense`` layers, so a
forward pass costs one batched matmul per layer (one plain matmul when all MLPs read the same
input). ``TaskTowers`` turns the ``T`` task representations of a tower layer into ``T`` float32
logits with a ``ParallelMLP``.

Layout convention of the fused blocks: tensors holding one slice per MLP/expert are
*expert-major*, ``[N, batch, d]``, so that ``tf.matmul`` batches over the leading axis without
transposes.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import tensorflow as tf

_PACKAGE = "ranking.layers"


# ----------------------------------------------------------------------------------------------
# Argument validation shared by the layers of this package.
def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_units(name: str, value: Any, allow_empty: bool = False) -> list[int]:
    """A positive int or a sequence of positive ints -> list of ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of positive integers, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty, got {value!r}")
    if any(isinstance(u, bool) or not isinstance(u, numbers.Integral) or u < 1 for u in value):
        raise ValueError(f"{name} must be a sequence of positive integers, got {value!r}")
    return [int(u) for u in value]


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def _get_activation(name: str, value: Any):
    try:
        return tf.keras.activations.get(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} is not a known activation, got {value!r}") from err


def _get_initializer(name: str, value: Any):
    try:
        return tf.keras.initializers.get(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} is not a known initializer, got {value!r}") from err


def _get_regularizer(name: str, value: Any):
    try:
        return tf.keras.regularizers.get(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} is not a known regularizer, got {value!r}") from err


def _serialize_activation(fn) -> Any:
    return None if fn is None else tf.keras.activations.serialize(fn)


def _clone_initializer(base, seed_offset: int = 0):
    """A fresh instance of ``base`` (seed + ``seed_offset`` when seeded).

    tf.keras initializers return the *same* values on every call of one instance (seeded or
    not), so every weight -- and every expert slice -- needs its own instance, or all experts
    start identical and, getting identical gradients, stay identical.
    """
    if not hasattr(base, "get_config"):
        return base  # plain callable: the caller's responsibility
    config = base.get_config()
    if config.get("seed") is not None:
        config = {**config, "seed": config["seed"] + seed_offset}
    return base.__class__.from_config(config)


def _stacked_initializer(base, num_slices: int, identical: bool = False):
    """Initializer for ``[num_slices, d_in, d_out]`` that initializes each slice as a 2-D kernel.

    Calling e.g. ``glorot_uniform`` on the 3-D shape would count ``num_slices`` into fan-in and
    fan-out and shrink the scale by ``sqrt(num_slices)``. Each slice gets its own initializer
    instance (seed + i when seeded), so experts never start identical -- unless ``identical``:
    then one draw is copied into every slice.
    """

    def init(shape, dtype=None, **kwargs):
        if identical:
            return tf.broadcast_to(_clone_initializer(base)(shape[1:], dtype=dtype), shape)
        return tf.stack([_clone_initializer(base, i)(shape[1:], dtype=dtype)
                         for i in range(num_slices)])

    return init


def _common_config(layer) -> dict:
    return {
        "activation": _serialize_activation(layer._activation),
        "dropout": layer.dropout,
        "use_bias": layer.use_bias,
        "kernel_initializer": tf.keras.initializers.serialize(layer._kernel_initializer),
        "bias_initializer": tf.keras.initializers.serialize(layer._bias_initializer),
        "kernel_regularizer": tf.keras.regularizers.serialize(layer._kernel_regularizer)
        if layer._kernel_regularizer is not None else None,
    }


# ----------------------------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class MLP(tf.keras.layers.Layer):
    """Multi-layer perceptron: ``Dense`` layers with an activation, optional dropout after each.

    Args:
      units: positive int or sequence of positive ints, the width of each layer.
      activation: activation of every layer (Keras name or callable); ``"relu"`` by default,
        ``None`` for linear layers.
      dropout: dropout rate in ``[0, 1)`` applied after every layer when ``training``.
      use_bias, kernel_initializer, bias_initializer, kernel_regularizer: as for ``Dense``.

    Input shape: ``[batch, d]``. Output shape: ``[batch, units[-1]]``.
    """

    def __init__(self, units, activation="relu", dropout: float = 0.0, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_units("units", units)
        self._activation = _get_activation("activation", activation)
        self.dropout = _check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._bias_initializer = _get_initializer("bias_initializer", bias_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.dense_layers = [
            tf.keras.layers.Dense(
                u, activation=self._activation, use_bias=self.use_bias,
                kernel_initializer=_clone_initializer(self._kernel_initializer, i),
                bias_initializer=_clone_initializer(self._bias_initializer),
                kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
                name=f"dense_{i}")
            for i, u in enumerate(self.units)]
        self.dropout_layer = tf.keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy) if self.dropout else None

    def call(self, inputs, training=None):
        x = inputs
        for dense in self.dense_layers:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units[-1]])

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), **_common_config(self)}


# ----------------------------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ParallelMLP(tf.keras.layers.Layer):
    """``num_mlps`` independent MLPs of the same shape, computed together (fused experts).

    Layer ``l`` keeps one kernel ``[num_mlps, d_in, d_out]`` (and bias ``[num_mlps, d_out]``);
    slice ``i`` is the kernel of MLP ``i``. Instead of ``num_mlps`` small matmuls the forward pass
    does, per layer:

    * when all MLPs read the same input ``[batch, d]`` (first layer only): one matmul with the
      kernels laid side by side, ``[d, num_mlps * d_out]``, fused with bias and activation;
    * otherwise (input ``[num_mlps, batch, d_in]``): one batched matmul over the MLP axis.

    This is the expert bank of MMoE / PLE (Ma et al., KDD 2018; Tang et al., RecSys 2020) and
    the per-task towers of :class:`TaskTowers`. Weights are float32 variables; under a mixed
    policy the computation runs in ``compute_dtype``.

    Args:
      num_mlps: number of parallel MLPs (experts), >= 1.
      units: positive int or sequence of positive ints, the widths of each MLP's layers.
      activation: activation after every layer (``"relu"``; ``None`` for linear).
      dropout: dropout rate in ``[0, 1)`` after every layer when ``training``.
      use_bias, kernel_initializer, bias_initializer, kernel_regularizer: as for ``Dense``; the
        initializer is applied to each MLP's ``[d_in, d_out]`` slice separately.
      identical_init: False (default): every MLP gets its own draw of ``kernel_initializer``.
        True: one draw per layer, copied into every MLP, so all MLPs start as the same function
        (DeepCTR's experts do, all seeded alike); experts then differ only through the
        gradients their gates route to them. See :class:`~ranking.layers.towers.PLE`.

    Input shape: ``[batch, d]`` (shared by all MLPs) or ``[num_mlps, batch, d]`` (one input per
    MLP). Output shape: ``[num_mlps, batch, units[-1]]``.
    """

    def __init__(self, num_mlps: int, units, activation="relu", dropout: float = 0.0,
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, identical_init: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_mlps = _check_int("num_mlps", num_mlps)
        self.identical_init = bool(identical_init)
        self.units = _check_units("units", units)
        self._activation = _get_activation("activation", activation)
        self.dropout = _check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._bias_initializer = _get_initializer("bias_initializer", bias_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.dropout_layer = tf.keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy) if self.dropout else None

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank not in (2, 3):
            raise ValueError(f"ParallelMLP expects [batch, d] or [num_mlps, batch, d] inputs, "
                             f"got shape {input_shape}")
        if input_shape.rank == 3 and input_shape[0] not in (None, self.num_mlps):
            raise ValueError(f"ParallelMLP with num_mlps={self.num_mlps} got per-MLP inputs "
                             f"of shape {input_shape}")
        d_in = input_shape[-1]
        if d_in is None:
            raise ValueError(f"the last input dimension must be known, got shape {input_shape}")
        self.kernels, self.biases = [], []
        init = _stacked_initializer(self._kernel_initializer, self.num_mlps,
                                    identical=self.identical_init)
        for i, d_out in enumerate(self.units):
            self.kernels.append(self.add_weight(
                f"kernel_{i}", shape=[self.num_mlps, d_in, d_out], initializer=init,
                regularizer=self._kernel_regularizer))
            if self.use_bias:
                self.biases.append(self.add_weight(
                    f"bias_{i}", shape=[self.num_mlps, d_out],
                    initializer=_clone_initializer(self._bias_initializer)))
            d_in = d_out
        super().build(input_shape)

    def _activate(self, y):
        return y if self._activation is None else self._activation(y)

    def call(self, inputs, training=None):
        x = inputs
        for i, kernel in enumerate(self.kernels):
            if x.shape.rank == 2:
                # Same input for every MLP: kernels side by side, one [b, d] x [d, N*h] matmul
                # (grappler fuses MatMul + BiasAdd + Relu), then back to expert-major layout.
                n, d, h = kernel.shape
                wide = tf.reshape(tf.transpose(kernel, [1, 0, 2]), [d, n * h])
                y = tf.matmul(x, wide)
                if self.use_bias:
                    y = tf.nn.bias_add(y, tf.reshape(self.biases[i], [n * h]))
                y = self._activate(y)
                y = tf.transpose(tf.reshape(y, [-1, n, h]), [1, 0, 2])
            else:
                y = tf.matmul(x, kernel)  # [N, b, d] x [N, d, h] -> [N, b, h]
                if self.use_bias:
                    y = y + tf.expand_dims(self.biases[i], 1)
                y = self._activate(y)
            if self.dropout_layer is not None:
                y = self.dropout_layer(y, training=training)
            x = y
        return x

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        batch = input_shape[0] if input_shape.rank == 2 else input_shape[1]
        return tf.TensorShape([self.num_mlps, batch, self.units[-1]])

    def get_config(self):
        return {**super().get_config(), "num_mlps": self.num_mlps, "units": list(self.units),
                **_common_config(self), "identical_init": self.identical_init}


# ----------------------------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class TaskTowers(tf.keras.layers.Layer):
    """Per-task MLP towers ending in one logit each, fused into one :class:`ParallelMLP`.

    Task ``t``'s representation goes through its own MLP (``units``, hidden activation) and a
    linear ``d -> 1`` logit layer. The hidden layers run in the layer's compute dtype (bfloat16
    under ``mixed_bfloat16``); the logit layer is a float32 sublayer, so logits are float32
    whatever the global policy (computed from the hidden activations cast to float32).

    Args:
      num_tasks: number of tasks T, >= 1.
      units: sequence of positive ints, hidden widths of each tower; may be empty (then each
        task's logit is a linear function of its representation).
      activation, dropout, use_bias, kernel_initializer, kernel_regularizer: for the hidden
        layers, as in :class:`ParallelMLP`.

    Input: list of T tensors ``[batch, h]`` (e.g. the output of a tower layer such as
    :class:`~ranking.layers.towers.PLE`). Output: list of T float32 logits ``[batch, 1]``.
    """

    def __init__(self, num_tasks: int, units=(), activation="relu", dropout: float = 0.0,
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.units = _check_units("units", units, allow_empty=True)
        self._activation = _get_activation("activation", activation)
        self.dropout = _check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.hidden = ParallelMLP(
            self.num_tasks, self.units, activation=self._activation, dropout=self.dropout,
            use_bias=self.use_bias, kernel_initializer=self._kernel_initializer,
            kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
            name="hidden") if self.units else None
        self.logit = ParallelMLP(
            self.num_tasks, [1], activation=None, use_bias=True,
            kernel_initializer=self._kernel_initializer,
            kernel_regularizer=self._kernel_regularizer, dtype="float32", name="logit")

    def _stack(self, inputs):
        inputs = list(inputs)
        if len(inputs) != self.num_tasks:
            raise ValueError(f"TaskTowers with num_tasks={self.num_tasks} got "
                             f"{len(inputs)} inputs")
        if all(x is inputs[0] for x in inputs):
            return inputs[0]  # one shared representation (SharedBottom): fused first layer
        return tf.stack(inputs)

    def call(self, inputs, training=None):
        x = self._stack(inputs)
        if self.hidden is not None:
            x = self.hidden(x, training=training)
        logits = self.logit(x)  # float32 sublayer: casts x up, float32 weights
        return tf.unstack(logits, num=self.num_tasks)

    def compute_output_shape(self, input_shape):
        return [tf.TensorShape([tf.TensorShape(s)[0], 1]) for s in input_shape]

    def get_config(self):
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "units": list(self.units),
            "activation": _serialize_activation(self._activation), "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self._kernel_regularizer)
            if self._kernel_regularizer is not None else None,
        }
