r"""Gate NU: the gate neural unit of Kuaishou's PPNet / PEPNet.

Chang et al., "PEPNet: Parameter and Embedding Personalized Network for Infusing with
Personalized Prior Information", KDD 2023 (section 3.2, eq. 3-4).

A Gate NU is a two-layer MLP fed with *prior* features (user id, item id, scenario, ...):

    x'    = relu(x W + b)
    delta = scale * sigmoid(x' W' + b')          # scale = gamma = 2 in the paper

Its output has the width of the tensor it gates and is multiplied into it element-wise. The
``2 * sigmoid`` range ``(0, 2)`` centres the gate on 1: with small weights every gate starts
near 1 (the gated network starts as the ungated one) and the prior features can scale a
unit up as well as down, whereas a plain sigmoid in ``(0, 1)`` can only shrink (and, averaging
1/2 at the start, halves every activation it touches).
Note: in finite precision a saturated sigmoid rounds to exactly 0 or 1, so very large gate
logits give the closed end points 0 or ``scale``.

:class:`GateNU` is one gate (two ``Dense`` layers). :class:`ParallelGateNU` is a bank of
``num_gates`` Gate NUs of the same shape fused like :class:`~ranking.layers.mlp.ParallelMLP`
(when all gates read one input, their first layers are a single matmul); PPNet uses one bank
per hidden layer, one gate per task.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import tensorflow as tf

from ranking.layers.mlp import (ParallelMLP, _check_int, _clone_initializer, _get_activation,
                                _get_initializer, _get_regularizer, _PACKAGE,
                                _serialize_activation)


def _check_scale(value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"scale must be a finite number > 0, got {value!r}")
    return float(value)


def _scaled_sigmoid(logits: tf.Tensor, scale: float) -> tf.Tensor:
    return tf.cast(scale, logits.dtype) * tf.sigmoid(logits)


def _gate_config(layer) -> dict:
    return {
        "hidden_units": layer.hidden_units, "output_units": layer.output_units,
        "scale": layer.scale, "activation": _serialize_activation(layer._activation),
        "use_bias": layer.use_bias,
        "kernel_initializer": tf.keras.initializers.serialize(layer._kernel_initializer),
        "bias_initializer": tf.keras.initializers.serialize(layer._bias_initializer),
        "kernel_regularizer": tf.keras.regularizers.serialize(layer._kernel_regularizer)
        if layer._kernel_regularizer is not None else None,
    }


def _init_gate_args(layer, hidden_units, output_units, scale, activation, use_bias,
                    kernel_initializer, bias_initializer, kernel_regularizer):
    layer.hidden_units = _check_int("hidden_units", hidden_units)
    layer.output_units = _check_int("output_units", output_units)
    layer.scale = _check_scale(scale)
    layer._activation = _get_activation("activation", activation)
    layer.use_bias = bool(use_bias)
    layer._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
    layer._bias_initializer = _get_initializer("bias_initializer", bias_initializer)
    layer._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class GateNU(tf.keras.layers.Layer):
    r"""Gate NU (PEPNet, Chang et al., KDD 2023): ``scale * sigmoid(relu(x W1 + b1) W2 + b2)``.

    See the module docstring for the idea. The output multiplies, element-wise, a tensor of
    width ``output_units`` (an embedding for EPNet, a hidden layer for PPNet).

    Args:
      hidden_units: width of the hidden layer, >= 1.
      output_units: width of the gate, >= 1 (the width of the gated tensor).
      scale: the gate's upper bound gamma, a finite number > 0; 2 (paper) centres it on 1.
      activation: activation of the hidden layer (``"relu"``, paper).
      use_bias, kernel_initializer, bias_initializer, kernel_regularizer: for both ``Dense``
        layers, as for ``tf.keras.layers.Dense``.

    Input shape: ``[..., d]``. Output shape: ``[..., output_units]``, values in
    ``(0, scale)``, in the layer's compute dtype.
    """

    def __init__(self, hidden_units: int, output_units: int, scale: float = 2.0,
                 activation="relu", use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        _init_gate_args(self, hidden_units, output_units, scale, activation, use_bias,
                        kernel_initializer, bias_initializer, kernel_regularizer)
        self.hidden = tf.keras.layers.Dense(
            self.hidden_units, activation=self._activation, use_bias=self.use_bias,
            kernel_initializer=_clone_initializer(self._kernel_initializer, 0),
            bias_initializer=_clone_initializer(self._bias_initializer),
            kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
            name="hidden")
        self.output_dense = tf.keras.layers.Dense(
            self.output_units, activation=None, use_bias=self.use_bias,
            kernel_initializer=_clone_initializer(self._kernel_initializer, 1),
            bias_initializer=_clone_initializer(self._bias_initializer),
            kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
            name="output")

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank is None or input_shape.rank < 1 or input_shape[-1] is None:
            raise ValueError(f"GateNU expects inputs [..., d] with d known, got {input_shape}")
        self.hidden.build(input_shape)
        self.output_dense.build(input_shape[:-1].concatenate([self.hidden_units]))
        super().build(input_shape)

    def call(self, inputs):
        return _scaled_sigmoid(self.output_dense(self.hidden(inputs)), self.scale)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.output_units])

    def get_config(self):
        return {**super().get_config(), **_gate_config(self)}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ParallelGateNU(tf.keras.layers.Layer):
    r"""``num_gates`` independent :class:`GateNU` of the same shape, computed together.

    Gate ``i`` is ``scale * sigmoid(relu(x_i W1[i] + b1[i]) W2[i] + b2[i])``; the weights are
    two :class:`~ranking.layers.mlp.ParallelMLP` (kernels ``[num_gates, d, hidden_units]`` and
    ``[num_gates, hidden_units, output_units]``). When every gate reads the same input
    ``[batch, d]`` the first layers of all gates are one ``[d, num_gates * hidden_units]``
    matmul.

    Args:
      num_gates: number of gates, >= 1.
      hidden_units, output_units, scale, activation, use_bias, kernel_initializer,
        bias_initializer, kernel_regularizer: as for :class:`GateNU`.

    Input shape: ``[batch, d]`` (shared by all gates) or ``[num_gates, batch, d]``.
    Output shape: ``[num_gates, batch, output_units]``, values in ``(0, scale)``.
    """

    def __init__(self, num_gates: int, hidden_units: int, output_units: int,
                 scale: float = 2.0, activation="relu", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_gates = _check_int("num_gates", num_gates)
        _init_gate_args(self, hidden_units, output_units, scale, activation, use_bias,
                        kernel_initializer, bias_initializer, kernel_regularizer)
        common = dict(use_bias=self.use_bias, bias_initializer=self._bias_initializer,
                      kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy)
        self.hidden = ParallelMLP(
            self.num_gates, [self.hidden_units], activation=self._activation,
            kernel_initializer=_clone_initializer(self._kernel_initializer, 0),
            name="hidden", **common)
        self.output_mlp = ParallelMLP(
            self.num_gates, [self.output_units], activation=None,
            kernel_initializer=_clone_initializer(self._kernel_initializer, 1000),
            name="output", **common)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank not in (2, 3) or input_shape[-1] is None:
            raise ValueError(f"ParallelGateNU expects inputs [batch, d] or "
                             f"[num_gates, batch, d] with d known, got {input_shape}")
        batch = input_shape[0] if input_shape.rank == 2 else input_shape[1]
        self.hidden.build(input_shape)
        self.output_mlp.build(tf.TensorShape([self.num_gates, batch, self.hidden_units]))
        super().build(input_shape)

    def call(self, inputs):
        return _scaled_sigmoid(self.output_mlp(self.hidden(inputs)), self.scale)

    def compute_output_shape(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        batch = input_shape[0] if input_shape.rank == 2 else input_shape[1]
        return tf.TensorShape([self.num_gates, batch, self.output_units])

    def get_config(self):
        return {**super().get_config(), "num_gates": self.num_gates, **_gate_config(self)}


# ----------------------------------------------------------------------------------------------
# Helpers shared by EPNet and PPNet: the gate input is the side features, concatenated, plus
# (optionally) the stop-gradient of the gated network's input.
def _side_list(side) -> list:
    if isinstance(side, (list, tuple)):
        return list(side)
    return [side]


def _side_width(name: str, shapes) -> int:
    """Total width of the side features from their shapes (``[batch, d_i]`` each)."""
    width = 0
    for shape in shapes:
        shape = tf.TensorShape(shape)
        if shape.rank != 2 or shape[-1] is None:
            raise ValueError(f"{name} must be [batch, d] tensors with d known, got shape "
                             f"{shape}")
        width += shape[-1]
    if width == 0:
        raise ValueError(f"{name} must not be empty (total width 0), got shapes {shapes}")
    return width


def _is_shape(value) -> bool:
    """A single shape (TensorShape, or a list/tuple of ints/None), not a list of shapes."""
    if isinstance(value, tf.TensorShape):
        return True
    return isinstance(value, (list, tuple)) and all(
        v is None or isinstance(v, numbers.Integral) for v in value)


def _split_shapes(input_shape, layer_name: str, inputs_doc: str, parts: int = 2):
    """``(x_shape, [side shapes], ...)`` from the build shape of ``[x, side, ...]``: the first
    entry a ``TensorShape``, each further one a list of shapes (one tensor or a list)."""
    if (not isinstance(input_shape, (list, tuple)) or len(input_shape) != parts
            or _is_shape(input_shape)):
        raise ValueError(f"{layer_name} expects inputs {inputs_doc}, got shapes {input_shape}")
    x_shape, *sides = input_shape
    return (tf.TensorShape(x_shape),
            *([side] if _is_shape(side) else list(side) for side in sides))


def _gate_input(side, x, with_input: bool, dtype) -> tf.Tensor:
    """``concat(side..., stop_gradient(x))`` (or the side features alone), in ``dtype``."""
    parts = [tf.cast(s, dtype) for s in _side_list(side)]
    if with_input:
        parts.append(tf.stop_gradient(tf.cast(x, dtype)))
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def _unpack(inputs, layer_name: str, inputs_doc: str, parts: int = 2):
    if not isinstance(inputs, (list, tuple)) or len(inputs) != parts:
        raise ValueError(f"{layer_name} expects inputs {inputs_doc}, got {inputs!r}")
    return tuple(inputs)
