r"""PPNet task towers (parameter personalization) and PEPNet = EPNet + PPNet.

Kuaishou's PPNet ("Parameter Personalized Net", 2019) and its multi-task form in Chang et al.,
"PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior
Information", KDD 2023 (section 3.4, eq. 7-9).
"""
from __future__ import annotations

import tensorflow as tf

from ranking.layers.gating.epnet import EPNet, _check_field_dims
from ranking.layers.gating.gate_nu import (ParallelGateNU, _check_scale, _gate_input,
                                           _side_width, _split_shapes, _unpack)
from ranking.layers.mlp import (ParallelMLP, _check_int, _check_rate, _check_units,
                                _clone_initializer, _get_activation, _get_initializer,
                                _get_regularizer, _PACKAGE, _serialize_activation)

_PPNET_INPUTS = "[x [batch, d], personal_features]"
_PEPNET_INPUTS = "[general_embedding [batch, d], domain_side_features, personal_features]"


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PPNetTower(tf.keras.layers.Layer):
    r"""Per-task MLP towers whose hidden layers are gated by personal features (PPNet).

    Idea. A shared network has one set of weights for every user and item, so heavy users,
    whose samples dominate the loss, shape it, and light users are served by parameters fitted
    to others (low UAUC). PPNet keeps the weights shared but rescales each hidden unit per
    example with a Gate NU conditioned on *personal prior* features -- user id, item id,
    author id, user activity tier embeddings, and for multi-scenario models country / scene.
    The effect is a per-user, per-item network at the cost of small gate MLPs. In the
    multi-task form of PEPNet every task tower ``t`` and every hidden layer ``l`` has its own
    gate:

        g          = personal  (+)  stop_gradient(x)                   # gate input
        h_{t,0}    = x
        h_{t,l}    = f(h_{t,l-1} W_{t,l} + b_{t,l}) * GateNU_{t,l}(g)   # l = 1..L
        output t   = h_{t,L}

    ``(+)`` is concatenation, ``f`` the activation, gates in ``(0, 2)`` (near 1 at the start).
    ``x`` enters the gates only through ``stop_gradient``: the gates read the shared
    representation but do not train it (its gradient comes through the towers alone); the
    personal feature embeddings *are* trained through the gates.

    The paper writes the gate on each layer's *input*,
    ``h_{l+1} = f((delta_l * h_l) W_l + b_l)`` for ``l = 1..L`` with ``h_1 = x``. Gating the
    output of hidden layer ``l`` is the same as gating the input of layer ``l + 1``, and the
    tower contract puts the logit layer (:class:`~ranking.layers.mlp.TaskTowers`) after this
    layer, so the layers line up except for the paper's first gate on ``x`` itself; set
    ``gate_tower_input=True`` to add it (each task gets its own ``[batch, d]`` gate on ``x``;
    the first tower layer then becomes a batched matmul instead of one shared matmul).

    PEPNet composes EPNet (gated embedding) and PPNet (gated towers); per the paper the PPNet
    gates read ``stop_gradient`` of the EPNet output::

        e   = EPNet(...)([general_embedding, domain_side])
        hs  = PPNetTower(T, units, ...)([e, personal])     # T task representations
        out = TaskTowers(T, ...)(hs)                        # T logits

    (this is :class:`PEPNet`).

    Fused: layer ``l`` of all T towers is one :class:`~ranking.layers.mlp.ParallelMLP`
    (layer 1: one ``[d, T*units[0]]`` matmul), and the T gates of layer ``l`` one
    :class:`~ranking.layers.gating.ParallelGateNU` (first gate layers: one matmul).

    Args:
      num_tasks: number of tasks T, >= 1.
      units: positive int or sequence of positive ints, the hidden widths of every tower.
      gate_hidden_units: hidden width of every Gate NU, >= 1.
      scale: the gates' upper bound (2, paper).
      gate_with_input: whether the gates read ``stop_gradient(x)`` besides the personal
        features (True, PEPNet); False conditions them on the personal features alone.
      gate_tower_input: also gate ``x`` per task before the first layer (see above).
      activation, dropout, use_bias: of the tower layers (dropout after every layer when
        training).
      gate_activation: hidden activation of the Gate NUs (``"relu"``).
      kernel_initializer, kernel_regularizer: for towers and gates.

    Input: ``[x, personal]`` with ``x: [batch, d]`` and ``personal`` one ``[batch, k]`` tensor or
    a list of ``[batch, k_i]`` tensors (concatenated).
    Output: list of T tensors ``[batch, units[-1]]`` in the layer's compute dtype.
    """

    def __init__(self, num_tasks: int, units, gate_hidden_units: int, scale: float = 2.0,
                 gate_with_input: bool = True, gate_tower_input: bool = False,
                 activation="relu", dropout: float = 0.0, use_bias: bool = True,
                 gate_activation="relu", kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.units = _check_units("units", units)
        self.gate_hidden_units = _check_int("gate_hidden_units", gate_hidden_units)
        self.scale = _check_scale(scale)
        self.gate_with_input = bool(gate_with_input)
        self.gate_tower_input = bool(gate_tower_input)
        self._activation = _get_activation("activation", activation)
        self.dropout = _check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self._gate_activation = _get_activation("gate_activation", gate_activation)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.hidden_layers = [
            ParallelMLP(self.num_tasks, [u], activation=self._activation, dropout=self.dropout,
                        use_bias=self.use_bias,
                        kernel_initializer=_clone_initializer(self._kernel_initializer, 100 * i),
                        kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy,
                        name=f"hidden_{i}")
            for i, u in enumerate(self.units)]
        self.gate_banks = [self._gate_bank(u, f"gates_{i}", 10_000 + 100 * i)
                           for i, u in enumerate(self.units)]
        self.input_gates = None

    def _gate_bank(self, output_units, name, seed_offset):
        return ParallelGateNU(
            self.num_tasks, self.gate_hidden_units, output_units, scale=self.scale,
            activation=self._gate_activation,
            kernel_initializer=_clone_initializer(self._kernel_initializer, seed_offset),
            kernel_regularizer=self._kernel_regularizer, dtype=self.dtype_policy, name=name)

    def build(self, input_shape):
        x_shape, personal_shapes = _split_shapes(input_shape, "PPNetTower", _PPNET_INPUTS)
        if x_shape.rank != 2 or x_shape[-1] is None:
            raise ValueError(f"PPNetTower expects x [batch, d] with d known, got shape "
                             f"{x_shape}")
        batch, d = x_shape[0], x_shape[-1]
        gate_in = tf.TensorShape([batch, _side_width("personal_features", personal_shapes)
                                  + (d if self.gate_with_input else 0)])
        if self.gate_tower_input:
            self.input_gates = self._gate_bank(d, "input_gates", 20_000)
            self.input_gates.build(gate_in)
        width = d
        for i, (layer, gates) in enumerate(zip(self.hidden_layers, self.gate_banks)):
            layer.build(tf.TensorShape([batch, width]) if i == 0 and not self.gate_tower_input
                        else tf.TensorShape([self.num_tasks, batch, width]))
            gates.build(gate_in)
            width = self.units[i]
        super().build(input_shape)

    def gates(self, inputs) -> list[tf.Tensor]:
        """The gates ``[T, batch, units[l]]`` of each hidden layer ``l`` (after the ``[T,
        batch, d]`` input gates when ``gate_tower_input``)."""
        x, personal = _unpack(inputs, "PPNetTower", _PPNET_INPUTS)
        g = _gate_input(personal, x, self.gate_with_input, self.compute_dtype)
        banks = ([self.input_gates] if self.input_gates is not None else []) + self.gate_banks
        return [bank(g) for bank in banks]

    def call(self, inputs, training=None):
        x, personal = _unpack(inputs, "PPNetTower", _PPNET_INPUTS)
        x = tf.cast(x, self.compute_dtype)
        g = _gate_input(personal, x, self.gate_with_input, self.compute_dtype)
        h = x
        if self.input_gates is not None:
            h = self.input_gates(g) * tf.expand_dims(x, 0)  # [T, b, d]
        for layer, gates in zip(self.hidden_layers, self.gate_banks):
            h = layer(h, training=training) * gates(g)  # [T, b, u_l]
        return tf.unstack(h, num=self.num_tasks)

    def compute_output_shape(self, input_shape):
        x_shape, _ = _split_shapes(input_shape, "PPNetTower", _PPNET_INPUTS)
        return [tf.TensorShape([x_shape[0], self.units[-1]])] * self.num_tasks

    def get_config(self):
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "units": list(self.units),
            "gate_hidden_units": self.gate_hidden_units, "scale": self.scale,
            "gate_with_input": self.gate_with_input,
            "gate_tower_input": self.gate_tower_input,
            "activation": _serialize_activation(self._activation), "dropout": self.dropout,
            "use_bias": self.use_bias,
            "gate_activation": _serialize_activation(self._gate_activation),
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self._kernel_regularizer)
            if self._kernel_regularizer is not None else None,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PEPNet(tf.keras.layers.Layer):
    r"""PEPNet (Chang et al., KDD 2023): :class:`~ranking.layers.gating.EPNet` on the general
    embedding, then :class:`PPNetTower` task towers on its output.

        O_ep = EPNet([E, domain_side])                 # domain-personalized embedding
        hs   = PPNetTower([O_ep, personal])            # gates read personal (+) sg(O_ep)

    Domain-side features (country, scene, traffic source embeddings) personalize the
    embedding per scenario; personal prior features (user id, item id, author id, activity
    tier) personalize every hidden layer of every task tower. Follow with
    :class:`~ranking.layers.mlp.TaskTowers` for the logits.

    Args:
      num_tasks, units, gate_tower_input, activation, dropout: of the :class:`PPNetTower`.
      epnet_gate_hidden_units: hidden width of the EPNet Gate NU, >= 1.
      ppnet_gate_hidden_units: hidden width of the PPNet Gate NUs, >= 1.
      field_dims: EPNet ``field_dims`` (``None``: one gate per embedding unit).
      scale: upper bound of every gate (2, paper).
      gate_activation, kernel_initializer, kernel_regularizer: for both parts.

    Input: ``[E, domain_side, personal]``: ``E [batch, d]``; the side inputs each one
    ``[batch, k]`` tensor or a list of ``[batch, k_i]`` tensors.
    Output: list of T tensors ``[batch, units[-1]]``.
    """

    def __init__(self, num_tasks: int, units, epnet_gate_hidden_units: int,
                 ppnet_gate_hidden_units: int, field_dims=None, scale: float = 2.0,
                 gate_tower_input: bool = False, activation="relu", dropout: float = 0.0,
                 gate_activation="relu", kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        field_dims = _check_field_dims(field_dims)
        kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        common = dict(scale=scale, gate_activation=gate_activation,
                      kernel_regularizer=kernel_regularizer, dtype=self.dtype_policy)
        self.epnet = EPNet(epnet_gate_hidden_units, field_dims=field_dims,
                           kernel_initializer=_clone_initializer(kernel_initializer, 50_000),
                           name="epnet", **common)
        self.ppnet = PPNetTower(num_tasks, units, ppnet_gate_hidden_units,
                                gate_tower_input=gate_tower_input, activation=activation,
                                dropout=dropout, kernel_initializer=kernel_initializer,
                                name="ppnet", **common)
        self._kernel_initializer = kernel_initializer

    @property
    def num_tasks(self) -> int:
        return self.ppnet.num_tasks

    def build(self, input_shape):
        x_shape, side_shapes, personal_shapes = _split_shapes(
            input_shape, "PEPNet", _PEPNET_INPUTS, parts=3)
        self.epnet.build([x_shape, side_shapes])
        self.ppnet.build([x_shape, personal_shapes])
        super().build(input_shape)

    def call(self, inputs, training=None):
        x, side, personal = _unpack(inputs, "PEPNet", _PEPNET_INPUTS, parts=3)
        return self.ppnet([self.epnet([x, side]), personal], training=training)

    def compute_output_shape(self, input_shape):
        x_shape, _, _ = _split_shapes(input_shape, "PEPNet", _PEPNET_INPUTS, parts=3)
        return [tf.TensorShape([x_shape[0], self.ppnet.units[-1]])] * self.num_tasks

    def get_config(self):
        pp, ep = self.ppnet.get_config(), self.epnet.get_config()
        return {
            **super().get_config(), "num_tasks": pp["num_tasks"], "units": pp["units"],
            "epnet_gate_hidden_units": ep["gate_hidden_units"],
            "ppnet_gate_hidden_units": pp["gate_hidden_units"],
            "field_dims": ep["field_dims"], "scale": pp["scale"],
            "gate_tower_input": pp["gate_tower_input"], "activation": pp["activation"],
            "dropout": pp["dropout"], "gate_activation": pp["gate_activation"],
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": pp["kernel_regularizer"],
        }
