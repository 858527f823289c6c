"""Shared checks for the layer tests: config and SavedModel round trips, gradient flow, and a
fixture that switches the global Keras policy to mixed_bfloat16 and restores it."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import ranking.layers  # noqa: E402,F401  (registers the serializable layers)


def _as_list(outputs):
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def _numpy(outputs):
    return [np.asarray(tf.cast(o, tf.float32)) for o in _as_list(outputs)]




@pytest.fixture
def check_config_roundtrip():
    """``check(layer, inputs)``: ``from_config(get_config())`` + copied weights = same outputs."""

    def check(layer, inputs):
        expected = _numpy(layer(inputs))
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        clone(inputs)  # build
        clone.set_weights(layer.get_weights())
        for got, want in zip(_numpy(clone(inputs)), expected):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        return clone

    return check


@pytest.fixture
def check_savedmodel(tmp_path):
    """``check(model, inputs)``: ``model.save(dir)`` then ``load_model`` gives equal outputs."""

    def check(model, inputs):
        expected = _numpy(model(inputs))
        path = str(tmp_path / "model")
        model.save(path, save_format="tf")
        restored = tf.keras.models.load_model(path)
        for got, want in zip(_numpy(restored(inputs)), expected):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        return restored

    return check


@pytest.fixture
def check_gradients():
    """``check(layer, inputs)``: every trainable variable gets a gradient, non-zero somewhere."""

    def check(layer, inputs):
        layer(inputs)  # build
        rng = np.random.default_rng(0)
        with tf.GradientTape() as tape:
            outputs = _as_list(layer(inputs, training=True))
            loss = tf.add_n([
                tf.reduce_sum(tf.cast(o, tf.float32)
                              * rng.standard_normal(o.shape).astype(np.float32))
                for o in outputs])
        variables = layer.trainable_variables
        assert variables
        grads = tape.gradient(loss, variables)
        for var, grad in zip(variables, grads):
            assert grad is not None, f"no gradient reaches {var.name}"
            assert np.any(np.asarray(tf.convert_to_tensor(grad)) != 0), \
                f"gradient of {var.name} is zero everywhere"

    return check
