r"""EPNet: embedding personalization of PEPNet -- domain-side features gate the embedding layer.

Chang et al., "PEPNet: Parameter and Embedding Personalized Network for Infusing with
Personalized Prior Information", KDD 2023 (section 3.3, eq. 5-6).
"""
from __future__ import annotations

import numbers

import tensorflow as tf

from ranking.layers.gating.gate_nu import (GateNU, _check_scale, _gate_input, _side_width,
                                           _split_shapes, _unpack)
from ranking.layers.mlp import (_check_int, _get_activation, _get_initializer,
                                _get_regularizer, _PACKAGE, _serialize_activation)

_INPUTS = "[general_embedding [batch, d], domain_side_features]"


def _check_field_dims(value):
    if value is None:
        return None
    if (isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                   for v in value)):
        raise ValueError(f"field_dims must be None or a non-empty sequence of positive "
                         f"integers, got {value!r}")
    return [int(v) for v in value]


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class EPNet(tf.keras.layers.Layer):
    r"""Embedding Personalized Network (the EP half of PEPNet, Chang et al., KDD 2023).

    Idea. In a multi-scenario model one shared embedding layer serves every domain (country x
    scene, in-app vs external traffic), although a feature's importance differs by domain.
    EPNet rescales the *general embedding* ``E`` (the concatenation of all feature embeddings,
    ``[batch, d]``) per example with a :class:`~ranking.layers.gating.GateNU` conditioned on
    domain-side features ``E_d`` (embeddings of the domain id and domain statistics):

        delta_domain = GateNU(E_d  (+)  stop_gradient(E))          # (0, 2)^d   (eq. 5)
        O_ep         = delta_domain * E                            # element-wise (eq. 6)

    ``(+)`` is concatenation. The general embedding enters the gate only through
    ``stop_gradient`` (the paper's ``⊘``): the gate may *read* it, but ``E``'s gradient comes
    only through the gated path ``delta * E`` -- the gate does not pull the shared embeddings
    towards whatever makes the gate convenient. The domain-side embeddings are trained
    through the gate. Gates start near 1 (``2 * sigmoid(~0)``), so EPNet starts as the
    identity.

    With ``field_dims`` the gate has one value per feature field instead of one per embedding
    unit: ``E`` is the concatenation of fields of widths ``field_dims`` and field ``i``'s slice
    is scaled by gate ``i`` (a cheaper, coarser gate: ``len(field_dims)`` outputs instead of
    ``d``).

    Compose with :class:`~ranking.layers.gating.PPNetTower` for PEPNet (EPNet output feeds the
    PPNet towers, and ``stop_gradient(O_ep)`` their gates); see
    :class:`~ranking.layers.gating.PEPNet`.

    Args:
      gate_hidden_units: hidden width of the Gate NU, >= 1.
      field_dims: ``None`` (one gate per embedding unit, paper) or the widths of the fields
        concatenated in ``E``, summing to ``d`` (one gate per field).
      scale: the gate's upper bound (2, paper).
      gate_with_input: whether the gate also reads ``stop_gradient(E)`` (True, paper); False
        conditions the gate on the domain-side features alone.
      gate_activation: hidden activation of the Gate NU (``"relu"``).
      kernel_initializer, kernel_regularizer: for the Gate NU.

    Input: ``[E, domain_side]`` with ``E: [batch, d]`` and ``domain_side`` one ``[batch, k]``
    tensor or a list of ``[batch, k_i]`` tensors (concatenated).
    Output: ``[batch, d]``, the gated embedding, in the layer's compute dtype.
    """

    def __init__(self, gate_hidden_units: int, field_dims=None, scale: float = 2.0,
                 gate_with_input: bool = True, gate_activation="relu",
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.gate_hidden_units = _check_int("gate_hidden_units", gate_hidden_units)
        self.field_dims = _check_field_dims(field_dims)
        self.scale = _check_scale(scale)
        self.gate_with_input = bool(gate_with_input)
        self._gate_activation = _get_activation("gate_activation", gate_activation)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.gate = None

    def build(self, input_shape):
        x_shape, side_shapes = _split_shapes(input_shape, "EPNet", _INPUTS)
        if x_shape.rank != 2 or x_shape[-1] is None:
            raise ValueError(f"EPNet expects the general embedding [batch, d] with d known, "
                             f"got shape {x_shape}")
        d = x_shape[-1]
        if self.field_dims is not None and sum(self.field_dims) != d:
            raise ValueError(f"field_dims {list(self.field_dims)} sum to {sum(self.field_dims)}, "
                             f"but the general embedding has width {d}")
        gate_in = _side_width("domain_side_features", side_shapes) + (
            d if self.gate_with_input else 0)
        self.gate = GateNU(
            self.gate_hidden_units, d if self.field_dims is None else len(self.field_dims),
            scale=self.scale, activation=self._gate_activation,
            kernel_initializer=self._kernel_initializer,
            kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy, name="gate")
        self.gate.build(tf.TensorShape([x_shape[0], gate_in]))
        super().build(input_shape)

    def gates(self, inputs) -> tf.Tensor:
        """The gate ``delta_domain``, ``[batch, d]`` (field gates repeated over their units)."""
        x, side = _unpack(inputs, "EPNet", _INPUTS)
        x = tf.cast(x, self.compute_dtype)
        gate = self.gate(_gate_input(side, x, self.gate_with_input, self.compute_dtype))
        if self.field_dims is not None:
            gate = tf.repeat(gate, list(self.field_dims), axis=-1)
        return gate

    def call(self, inputs):
        x, _ = _unpack(inputs, "EPNet", _INPUTS)
        return tf.cast(x, self.compute_dtype) * self.gates(inputs)

    def compute_output_shape(self, input_shape):
        x_shape, _ = _split_shapes(input_shape, "EPNet", _INPUTS)
        return x_shape

    def get_config(self):
        return {
            **super().get_config(), "gate_hidden_units": self.gate_hidden_units,
            "field_dims": None if self.field_dims is None else list(self.field_dims),
            "scale": self.scale, "gate_with_input": self.gate_with_input,
            "gate_activation": _serialize_activation(self._gate_activation),
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self._kernel_regularizer)
            if self._kernel_regularizer is not None else None,
        }

