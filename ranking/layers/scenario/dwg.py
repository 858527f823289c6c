"""Domain-specific weights (DWG): a dense layer and an MLP tower whose weights depend on the
example's domain (country x scene), selected per example without a loop over domains.

Also holds the helpers shared by the scenario layers (domain-index handling, the training flag).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import tensorflow as tf

from ranking.layers.mlp import (_check_int, _check_rate, _check_units, _clone_initializer,
                                _get_activation, _get_initializer, _get_regularizer, _PACKAGE,
                                _serialize_activation, _stacked_initializer)

DWG_MODES = ("full", "residual", "low_rank")


# ----------------------------------------------------------------------------------------------
# Helpers shared by the scenario layers.
def run_domain_stack(x, idx, dense_layers, dropout_layer, training):
    """``x`` through domain-aware dense layers (``layer([x, idx])``), dropout after each."""
    for dense in dense_layers:
        x = dense([x, idx], training=training)
        if dropout_layer is not None:
            x = dropout_layer(x, training=training)
    return x


def domain_index_tensor(domain_index, num_domains: int) -> tf.Tensor:
    """The domain input as ``int32 [batch]``: ``[batch, 1]`` is squeezed, other integer or float
    dtypes are cast, and indices outside ``[0, num_domains]`` become 0 (unknown domain) -- as
    the feature layer maps values missing from its vocabulary."""
    idx = tf.convert_to_tensor(domain_index)
    if idx.shape.rank == 2 and idx.shape[-1] in (1, None):
        idx = tf.squeeze(idx, -1)
    if idx.shape.rank is not None and idx.shape.rank != 1:
        raise ValueError(f"domain_index must be [batch] or [batch, 1], got shape {idx.shape}")
    if idx.dtype != tf.int32:
        idx = tf.cast(idx, tf.int32)
    valid = tf.logical_and(idx >= 0, idx <= num_domains)
    return tf.where(valid, idx, tf.zeros_like(idx))


def split_domain_inputs(layer_name: str, inputs):
    """``[x, domain_index]`` -> ``(x, domain_index)``; anything else is a ValueError."""
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        what = f"{type(inputs).__name__} of length {len(inputs)}" \
            if isinstance(inputs, (list, tuple)) else type(inputs).__name__
        raise ValueError(f"{layer_name} expects inputs [x, domain_index], got a {what}")
    return inputs[0], inputs[1]


def split_domain_shapes(layer_name: str, input_shape):
    """Shapes of ``[x, domain_index]`` -> ``(x_shape [batch, d] with d known, batch)``."""
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 \
            or not isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
        raise ValueError(f"{layer_name} expects inputs [x, domain_index], got shapes "
                         f"{input_shape}")
    x_shape = tf.TensorShape(input_shape[0])
    if x_shape.rank != 2 or x_shape[-1] is None:
        raise ValueError(f"{layer_name} expects x of shape [batch, d] with d known, got "
                         f"{x_shape}")
    return x_shape


def training_flag(training):
    """``training`` as a Python bool when it is static (None = inference), else the tensor."""
    if training is None:
        return False
    if not isinstance(training, (tf.Tensor, tf.Variable)):
        return bool(training)
    static = tf.get_static_value(training)
    return bool(static) if static is not None else training


def smart_cond(pred, true_fn, false_fn):
    """``true_fn()`` / ``false_fn()`` for a Python bool, ``tf.cond`` for a tensor."""
    if isinstance(pred, bool):
        return true_fn() if pred else false_fn()
    return tf.cond(pred, true_fn, false_fn)


def _check_mode(value) -> str:
    if value not in DWG_MODES:
        raise ValueError(f"mode must be one of {DWG_MODES}, got {value!r}")
    return value


def _check_shrinkage_k(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"shrinkage_k must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_delta_scale(value, mode: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"delta_scale must be a finite number > 0, got {value!r}")
    if mode == "full" and value != 1:
        raise ValueError(f"delta_scale is not used with mode='full' (its domain kernels are not "
                         f"deltas), got {value!r}")
    return float(value)


def _check_counts(value, num_domains: int, shrinkage_k: float):
    if value is None:
        return None
    if shrinkage_k == 0.0:
        raise ValueError(f"initial_counts is only used with shrinkage_k > 0, got "
                         f"initial_counts={value!r} with shrinkage_k=0")
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) \
            or len(value) != num_domains \
            or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0
                   for c in value):
        raise ValueError(f"initial_counts must be a sequence of num_domains={num_domains} "
                         f"integers >= 0, got {value!r}")
    return [int(c) for c in value]


def _serialize(obj, kind):
    if obj is None:
        return None
    return getattr(tf.keras, kind).serialize(obj)


# ----------------------------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class DomainDense(tf.keras.layers.Layer):
    """Dense layer with domain-specific weights (DWG), chosen per example by its domain index.

    The idea (seed 000): feeding country/scene as inputs to one shared MLP only shifts its
    input; giving each domain its own weights changes the function itself, which pays off where
    every domain has enough samples. For rare domains the domain part can be shrunk toward the
    shared weights. With ``D = num_domains`` domains, slot 0 being the unknown domain:

    * ``mode="full"``: a shared kernel ``W_0`` and independent per-domain kernels ``W_d``
      (``[D, d_in, units]``, each initialized like a fresh ``Dense`` kernel), likewise biases.
      Effective weights ``W_d_eff = W_0 + lambda_d (W_d - W_0)``, i.e. ``W_d`` itself without
      shrinkage. ``W_0`` serves the unknown domain; without shrinkage it is trained only by
      unknown-domain rows (with shrinkage also by ``1 - lambda_d`` of every domain's gradient),
      so prefer ``"residual"`` when training data has no unknown-domain rows.
    * ``mode="residual"``: ``W_d_eff = W_0 + lambda_d Delta_d`` with a full-rank delta
      ``Delta_d`` initialized to zeros (every domain starts at the shared weights). As
      expressive as ``"full"``, but ``W_0`` learns from every example.
    * ``mode="low_rank"``: ``W_d_eff = W_0 + lambda_d U_d V_d`` with ``U_d: [d_in, rank]``
      (``kernel_initializer``) and ``V_d: [rank, units]`` (zeros, so the delta starts at 0 as in
      LoRA; ``U_d`` gets gradients once ``V_d`` moved), plus a per-domain bias delta. For many
      domains: ``D * rank * (d_in + units)`` parameters instead of ``D * d_in * units``.

    Unknown domain (index 0): ``W_0``, ``b_0`` only, in every mode.

    Shrinkage (``shrinkage_k = k > 0``): ``lambda_d = n_d / (n_d + k)`` where ``n_d`` is the
    number of examples of domain ``d`` seen so far, kept in the non-trainable int64 variable
    ``domain_counts`` (``[D]``, saved with the weights). It starts at ``initial_counts`` (zeros by
    default) and, when ``update_counts``, grows by the batch's per-domain counts on every call
    with ``training=True`` -- before that batch's ``lambda`` is computed. ``k`` is the number of
    examples at which a domain's own part gets half weight. ``k = 0`` disables shrinkage
    (``lambda_d = 1``, no counter). Counts are a ``SUM``-aggregated variable, meant to add up the
    replicas' batches under a mirrored strategy (not tested under a strategy). In a :class:`DWGTower` every layer
    keeps its own (identical) counter.

    Computation (no loop over domains): one matmul of ``x`` with all kernels side by side,
    ``[d_in, (D+1) * units]`` -> ``[batch, D+1, units]``, then each row's slots are mixed by a
    ``[batch, D+1]`` coefficient matrix (one-hot of the domain, times ``lambda``) in one batched
    matmul. Measured at ``batch=1024, d_in=units=256, D=13`` (float32, 2-core CPU, tf.function):
    10 ms forward / 20 ms forward+backward, against 19-21 ms / 180-190 ms for gathering
    per-example kernels ``[batch, d_in, units]`` and contracting with einsum (which also
    materializes 268 MB per layer and scatters that much back in the gradient); a plain
    ``Dense`` takes 0.8 / 1.5 ms. The cost grows with ``D + 1``; for many domains use
    ``"low_rank"`` (one ``[d_in, units + D * rank]`` matmul, then a masked ``[D * rank, units]``
    matmul: 1.7 / 3.6 ms at rank 8). Gradients of the parameters of a domain absent from the
    batch are exactly zero.

    Args:
      units: output width, positive int.
      num_domains: number of known domains D, >= 1 (indices 1..D; 0 = unknown).
      mode: ``"full"``, ``"residual"`` or ``"low_rank"``.
      rank: rank of the per-domain delta, required for (and only for) ``mode="low_rank"``.
      shrinkage_k: ``k >= 0`` of ``lambda_d = n_d / (n_d + k)``; 0 = no shrinkage.
      initial_counts: optional sequence of D ints >= 0, the starting ``n_d`` (shrinkage only).
      update_counts: whether ``training=True`` calls add the batch's domain counts.
      activation: activation (default None, linear, as ``Dense``).
      use_bias: whether to add the (shared + domain) bias.
      kernel_initializer, bias_initializer: for ``W_0``/``W_d``/``U_d`` and ``b_0``/``b_d``.
      kernel_regularizer: applies to ``W_0`` (and ``W_d`` in ``"full"`` mode).
      delta_regularizer: applies to ``Delta_d`` (``"residual"``) or ``U_d`` and ``V_d``
        (``"low_rank"``), pulling domains toward the shared weights; not allowed with ``"full"``.
      delta_scale: ``s > 0`` in ``W_d_eff = W_0 + s lambda_d Delta_d`` (``"residual"``,
        ``"low_rank"``; the bias deltas likewise); 1 in ``"full"``. Under Adam, whose steps
        have about the same size whatever the gradient's scale, this is the deltas' learning
        rate times ``s``: each domain drifts from the shared weights ``s`` times slower.

    Call: ``layer([x, domain_index], training=None)`` with ``x: [batch, d_in]`` and
    ``domain_index: int32 [batch]`` (or ``[batch, 1]``) in ``[0, D]``; other values count as 0.
    Output: ``[batch, units]`` in the layer's compute dtype.
    """

    def __init__(self, units: int, num_domains: int, mode: str = "full", rank=None,
                 shrinkage_k: float = 0.0, initial_counts=None, update_counts: bool = True,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, delta_regularizer=None,
                 delta_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = _check_int("units", units)
        self.num_domains = _check_int("num_domains", num_domains)
        self.mode = _check_mode(mode)
        if self.mode == "low_rank":
            self.rank = _check_int("rank", rank)
        elif rank is not None:
            raise ValueError(f"rank is only used with mode='low_rank', got rank={rank!r} with "
                             f"mode={mode!r}")
        else:
            self.rank = None
        self.shrinkage_k = _check_shrinkage_k(shrinkage_k)
        self.initial_counts = _check_counts(initial_counts, self.num_domains, self.shrinkage_k)
        self.update_counts = bool(update_counts)
        self._activation = _get_activation("activation", activation)
        self.use_bias = bool(use_bias)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._bias_initializer = _get_initializer("bias_initializer", bias_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self._delta_regularizer = _get_regularizer("delta_regularizer", delta_regularizer)
        if self.mode == "full" and self._delta_regularizer is not None:
            raise ValueError(f"delta_regularizer is not used with mode='full', got "
                             f"{delta_regularizer!r}")
        self.delta_scale = _check_delta_scale(delta_scale, self.mode)

    # --- weights ---------------------------------------------------------------------------
    def build(self, input_shape):
        d_in = split_domain_shapes("DomainDense", input_shape)[-1]
        n, u = self.num_domains, self.units
        self.shared_kernel = self.add_weight(
            "shared_kernel", shape=[d_in, u],
            initializer=_clone_initializer(self._kernel_initializer),
            regularizer=self._kernel_regularizer)
        self.shared_bias = self.add_weight(
            "shared_bias", shape=[u], initializer=_clone_initializer(self._bias_initializer)
        ) if self.use_bias else None
        self.domain_kernels = self.domain_u = self.domain_v = self.domain_biases = None
        if self.mode == "full":
            self.domain_kernels = self.add_weight(
                "domain_kernels", shape=[n, d_in, u],
                initializer=_stacked_initializer(_clone_initializer(self._kernel_initializer, 1),
                                                 n),
                regularizer=self._kernel_regularizer)
        elif self.mode == "residual":
            self.domain_kernels = self.add_weight(
                "domain_deltas", shape=[n, d_in, u], initializer="zeros",
                regularizer=self._delta_regularizer)
        else:
            self.domain_u = self.add_weight(
                "domain_u", shape=[n, d_in, self.rank],
                initializer=_stacked_initializer(_clone_initializer(self._kernel_initializer, 1),
                                                 n),
                regularizer=self._delta_regularizer)
            self.domain_v = self.add_weight(
                "domain_v", shape=[n, self.rank, u], initializer="zeros",
                regularizer=self._delta_regularizer)
        if self.use_bias:
            # full: independent biases; residual / low_rank: bias deltas starting at zero.
            self.domain_biases = self.add_weight(
                "domain_biases", shape=[n, u],
                initializer=_clone_initializer(self._bias_initializer)
                if self.mode == "full" else "zeros")
        self.domain_counts = None
        if self.shrinkage_k > 0:
            initial = self.initial_counts or [0] * n
            self.domain_counts = self.add_weight(
                "domain_counts", shape=[n], dtype=tf.int64, trainable=False,
                initializer=tf.keras.initializers.Constant(initial),
                aggregation=tf.VariableAggregation.SUM)
        super().build(input_shape)

    # --- forward ---------------------------------------------------------------------------
    def shrinkage(self) -> tf.Tensor:
        """``lambda_d`` for d = 1..D, float32 ``[D]`` (ones without shrinkage)."""
        if self.domain_counts is None:
            return tf.ones([self.num_domains], tf.float32)
        n = tf.cast(self.domain_counts, tf.float32)
        return n / (n + self.shrinkage_k)

    def _update_counts(self, idx, training):
        if self.domain_counts is None or not self.update_counts:
            return
        flag = training_flag(training)
        if flag is False:
            return

        def update():
            batch = tf.reduce_sum(tf.one_hot(idx - 1, self.num_domains, dtype=tf.float32), 0)
            self.domain_counts.assign_add(tf.cast(batch, tf.int64))
            return tf.constant(True)

        smart_cond(flag, update, lambda: tf.constant(False))

    def call(self, inputs, training=None):
        x, idx = split_domain_inputs("DomainDense", inputs)
        idx = domain_index_tensor(idx, self.num_domains)
        self._update_counts(idx, training)
        dtype = x.dtype
        n, u = self.num_domains, self.units
        # coef[b, d-1] = s lambda_d for the row's own known domain d, else 0 (one_hot(-1) = 0).
        coef = tf.one_hot(idx - 1, n, dtype=tf.float32) * (
            self.delta_scale * self.shrinkage()[None, :])
        if self.mode == "low_rank":
            y = self._low_rank(x, tf.cast(coef, dtype))
        else:
            # full: row weights (1 - lambda) W_0 + lambda W_d; residual: W_0 + lambda Delta_d.
            coef0 = (1.0 - tf.reduce_sum(coef, 1, keepdims=True)) if self.mode == "full" \
                else tf.ones_like(coef[:, :1])
            coef = tf.cast(tf.concat([coef0, coef], 1), dtype)  # [b, D+1]
            kernels = tf.concat([self.shared_kernel[None], self.domain_kernels], 0)
            d_in = kernels.shape[1]
            wide = tf.reshape(tf.transpose(kernels, [1, 0, 2]), [d_in, (n + 1) * u])
            y_all = tf.reshape(tf.matmul(x, wide), [-1, n + 1, u])  # every slot's output
            y = tf.squeeze(tf.matmul(coef[:, None, :], y_all), 1)  # [b, 1, D+1] x [b, D+1, u]
            if self.use_bias:
                y = y + tf.matmul(coef, tf.concat([self.shared_bias[None], self.domain_biases],
                                                  0))
        return y if self._activation is None else self._activation(y)

    def _low_rank(self, x, coef):
        n, u, r = self.num_domains, self.units, self.rank
        d_in = self.shared_kernel.shape[0]
        u_wide = tf.reshape(tf.transpose(self.domain_u, [1, 0, 2]), [d_in, n * r])
        y, z = tf.split(tf.matmul(x, tf.concat([self.shared_kernel, u_wide], 1)),
                        [u, n * r], axis=1)  # x W_0 and x U_d for every d: [b, D*r]
        z = z * tf.repeat(coef, r, axis=1)  # keep (lambda-weighted) only the row's own domain
        y = y + tf.matmul(z, tf.reshape(self.domain_v, [n * r, u]))
        if self.use_bias:
            y = tf.nn.bias_add(y, self.shared_bias) + tf.matmul(coef, self.domain_biases)
        return y

    def compute_output_shape(self, input_shape):
        x_shape = split_domain_shapes("DomainDense", input_shape)
        return x_shape[:-1].concatenate([self.units])

    def get_config(self):
        return {
            **super().get_config(), "units": self.units, "num_domains": self.num_domains,
            "mode": self.mode, "rank": self.rank, "shrinkage_k": self.shrinkage_k,
            "initial_counts": self.initial_counts, "update_counts": self.update_counts,
            "activation": _serialize_activation(self._activation), "use_bias": self.use_bias,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "bias_initializer": tf.keras.initializers.serialize(self._bias_initializer),
            "kernel_regularizer": _serialize(self._kernel_regularizer, "regularizers"),
            "delta_regularizer": _serialize(self._delta_regularizer, "regularizers"),
            "delta_scale": self.delta_scale,
        }


# ----------------------------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class DWGTower(tf.keras.layers.Layer):
    """Multi-task tower of domain-specific weights: an MLP of :class:`DomainDense` layers.

    Seed 000: DWG gives each country and each scene independent weights, instead of feeding
    country/scene as features to one shared MLP (which only shifts the input). The tower is a
    stack of :class:`DomainDense` layers (same ``mode``/``rank``/shrinkage in every layer, an
    activation and optional dropout after each); its output is shared by all tasks, whose
    task-specific part lives in :class:`~ranking.layers.mlp.TaskTowers` (as for
    :class:`~ranking.layers.towers.SharedBottom`). Examples of the unknown domain (index 0) go
    through the shared weights only.

    Args:
      num_tasks: number of tasks T, >= 1.
      units: positive int or sequence of positive ints, widths of the layers.
      num_domains: number of known domains D, >= 1.
      mode, rank, shrinkage_k, initial_counts, update_counts, use_bias, kernel_initializer,
        kernel_regularizer, delta_regularizer, delta_scale: passed to every
        :class:`DomainDense`.
      activation: activation after every layer (``"relu"``).
      dropout: dropout rate in ``[0, 1)`` after every layer when ``training``.

    Call: ``tower([x, domain_index], training=None)``, ``x: [batch, d]``, ``domain_index:
    int32 [batch]`` in ``[0, D]``. Output: list of T tensors ``[batch, units[-1]]`` -- the same
    tensor T times (tower contract).
    """

    def __init__(self, num_tasks: int, units, num_domains: int, mode: str = "full", rank=None,
                 shrinkage_k: float = 0.0, initial_counts=None, update_counts: bool = True,
                 activation="relu", dropout: float = 0.0, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 delta_regularizer=None, delta_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.units = _check_units("units", units)
        self.dropout = _check_rate("dropout", dropout)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self.dense_layers = [
            DomainDense(u, num_domains, mode=mode, rank=rank, shrinkage_k=shrinkage_k,
                        initial_counts=initial_counts, update_counts=update_counts,
                        activation=activation, use_bias=use_bias,
                        kernel_initializer=_clone_initializer(self._kernel_initializer,
                                                              100 * i),
                        kernel_regularizer=kernel_regularizer,
                        delta_regularizer=delta_regularizer, delta_scale=delta_scale,
                        dtype=self.dtype_policy,
                        name=f"domain_dense_{i}")
            for i, u in enumerate(self.units)]
        self.dropout_layer = tf.keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy) if self.dropout else None

    @property
    def num_domains(self) -> int:
        return self.dense_layers[0].num_domains

    def call(self, inputs, training=None):
        x, idx = split_domain_inputs("DWGTower", inputs)
        idx = domain_index_tensor(idx, self.num_domains)
        x = run_domain_stack(x, idx, self.dense_layers, self.dropout_layer, training)
        return [x] * self.num_tasks

    def compute_output_shape(self, input_shape):
        x_shape = split_domain_shapes("DWGTower", input_shape)
        return [x_shape[:-1].concatenate([self.units[-1]])] * self.num_tasks

    def get_config(self):
        first = self.dense_layers[0].get_config()
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "units": list(self.units),
            **{k: first[k] for k in ("num_domains", "mode", "rank", "shrinkage_k",
                                     "initial_counts", "update_counts", "activation",
                                     "use_bias", "kernel_regularizer", "delta_regularizer",
                                     "delta_scale")},
            "dropout": self.dropout,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
        }
