"""LazyAdam: touched rows get Adam's update (hand-computed), other rows stay put."""
import numpy as np
import pytest
import tensorflow as tf

from ranking.optimizers import LazyAdam

B1, B2, EPS, LR = 0.9, 0.999, 1e-7, 0.1


def _adam_rows(g, steps):
    """Adam on one row fed the same gradient ``g`` for ``steps`` steps, by hand."""
    w, m, v = np.zeros_like(g), np.zeros_like(g), np.zeros_like(g)
    for t in range(1, steps + 1):
        m = B1 * m + (1 - B1) * g
        v = B2 * v + (1 - B2) * g * g
        w = w - LR * np.sqrt(1 - B2 ** t) / (1 - B1 ** t) * m / (np.sqrt(v) + EPS)
    return w


def test_touched_rows_get_adam_untouched_rows_stay():
    table = tf.Variable(tf.zeros([4, 2]))
    opt = LazyAdam(LR, beta_1=B1, beta_2=B2, epsilon=EPS)
    # rows 1 (twice: gradients summed) and 3 of a 4-row table
    grad = tf.IndexedSlices(tf.constant([[1.0, -2.0], [0.5, 0.0], [0.25, 4.0]]),
                            tf.constant([1, 1, 3]), tf.constant([4, 2]))
    for _ in range(2):
        opt.apply_gradients([(grad, table)])
    got = table.numpy()
    np.testing.assert_allclose(got[1], _adam_rows(np.array([1.5, -2.0]), 2), rtol=1e-5)
    np.testing.assert_allclose(got[3], _adam_rows(np.array([0.25, 4.0]), 2), rtol=1e-5)
    # step 1 of Adam moves each coordinate by ~lr * sign(g): a sanity check of the by-hand
    np.testing.assert_allclose(_adam_rows(np.array([1.5, -2.0]), 1), [-0.1, 0.1], rtol=1e-5)
    assert (got[[0, 2]] == 0).all()
    m, v = opt._momentums[0].numpy(), opt._velocities[0].numpy()
    assert (m[[0, 2]] == 0).all() and (v[[0, 2]] == 0).all()


def test_dense_gradients_get_keras_adam():
    lazy_w, keras_w = tf.Variable([1.0, -1.0, 3.0]), tf.Variable([1.0, -1.0, 3.0])
    lazy, keras = LazyAdam(LR), tf.keras.optimizers.Adam(LR)
    for g in ([0.3, -0.2, 1.0], [0.1, 0.5, -2.0]):
        lazy.apply_gradients([(tf.constant(g), lazy_w)])
        keras.apply_gradients([(tf.constant(g), keras_w)])
    np.testing.assert_allclose(lazy_w.numpy(), keras_w.numpy(), rtol=1e-5)  # fused: fp32 rounding


def test_config_round_trip_and_amsgrad_refused():
    opt = LazyAdam(0.01, beta_1=0.8)
    again = tf.keras.optimizers.deserialize(tf.keras.optimizers.serialize(opt))
    assert type(again) is LazyAdam and again.get_config()["beta_1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(amsgrad=True)
