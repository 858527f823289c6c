"""FusedAdam: the same updates as tf.keras.optimizers.Adam, dense and sparse gradients."""
import numpy as np
import tensorflow as tf

from ranking.models.multitask import FusedAdam, fused_optimizer


def _run(optimizer_cls, steps=3):
    dense = tf.Variable(np.linspace(-1, 1, 6).reshape(2, 3), dtype=tf.float32)
    table = tf.Variable(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
    opt = optimizer_cls(learning_rate=0.01)
    for step in range(steps):
        with tf.GradientTape() as tape:
            rows = tf.nn.embedding_lookup(table, [1, 3, 1])  # repeated row 1
            loss = tf.reduce_sum(dense * (step + 1.0)) ** 2 / 10 + tf.reduce_sum(rows ** 3)
        grads = tape.gradient(loss, [dense, table])
        assert isinstance(grads[1], tf.IndexedSlices)
        opt.apply_gradients(zip(grads, [dense, table]))
    return dense.numpy(), table.numpy()


def test_fused_adam_matches_keras_adam_on_dense_and_sparse_gradients():
    keras_dense, keras_table = _run(tf.keras.optimizers.Adam)
    fused_dense, fused_table = _run(FusedAdam)
    np.testing.assert_allclose(fused_dense, keras_dense, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fused_table, keras_table, rtol=1e-5, atol=1e-7)
    # Rows 0 and 2 never had a gradient; they stay put in both.
    np.testing.assert_array_equal(fused_table[[0, 2]], np.array([[0, .1, .2], [.6, .7, .8]],
                                                                np.float32))
    assert not np.allclose(fused_table[1], [0.3, 0.4, 0.5])


def test_fused_optimizer_swaps_only_plain_adam():
    adam = tf.keras.optimizers.Adam(0.1)
    assert type(fused_optimizer(adam)) is FusedAdam and adam.learning_rate.numpy() == np.float32(0.1)
    adagrad = tf.keras.optimizers.Adagrad()
    assert type(fused_optimizer(adagrad)) is tf.keras.optimizers.Adagrad
