"""SharedBottom: one MLP, its output handed to every task."""
import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import SharedBottom, TaskTowers


def test_golden():
    layer = SharedBottom(2, [2, 1])
    x = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    layer(x)
    layer.set_weights([np.array([[1.0, -1.0], [0.5, 2.0]]), np.array([0.0, 1.0]),
                       np.array([[1.0], [-0.5]]), np.array([0.5])])
    # layer 1: row 1: relu([1 + 1, -1 + 4] + [0, 1]) = [2, 4]; row 2: relu([-0.75, 2 + 1]) = [0, 3]
    # layer 2: row 1: relu(2 - 2 + 0.5) = 0.5;                   row 2: relu(0 - 1.5 + 0.5) = 0
    outputs = layer(x)
    assert len(outputs) == 2
    for out in outputs:
        np.testing.assert_allclose(out.numpy(), [[0.5], [0.0]], atol=1e-6)


def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x = np.random.default_rng(0).standard_normal([5, 6]).astype(np.float32)
    check_config_roundtrip(SharedBottom(3, [8, 4], dropout=0.1, activation="elu"), x)
    inp = tf.keras.Input([6])
    model = tf.keras.Model(inp, TaskTowers(2, [3])(SharedBottom(2, [8, 4])(inp)))
    check_savedmodel(model, x)


def test_gradients_reach_every_variable(check_gradients):
    x = np.random.default_rng(1).standard_normal([16, 6]).astype(np.float32)
    check_gradients(SharedBottom(2, [8, 4]), x)


def test_mixed_precision_close_to_float32(mixed_bf16):
    x = np.random.default_rng(2).standard_normal([16, 6]).astype(np.float32)
    ref = SharedBottom(2, [8, 4], dtype="float32")
    layer = SharedBottom(2, [8, 4])
    ref(x), layer(x)
    layer.set_weights(ref.get_weights())
    got = layer(x)
    assert got[0].dtype == tf.bfloat16 and ref(x)[0].dtype == tf.float32
    np.testing.assert_allclose(tf.cast(got[1], tf.float32).numpy(), ref(x)[1].numpy(),
                               rtol=0.05, atol=0.05)


@pytest.mark.parametrize("make, message", [
    (lambda: SharedBottom(0, [4]), "num_tasks must be an integer >= 1, got 0"),
    (lambda: SharedBottom(2, []), "units must not be empty, got []"),
    (lambda: SharedBottom(2, [4, -1]),
     "units must be a sequence of positive integers, got [4, -1]"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)
