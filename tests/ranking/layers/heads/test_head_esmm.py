"""ESMM head and the log-space CTCVR loss."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import ESMMHead, MMoE, TaskTowers, ctcvr_log_loss


def _log_sigmoid64(z):
    return -np.logaddexp(0.0, -np.asarray(z, np.float64))


@np.errstate(divide="ignore")
def _naive_loss(labels, a, b):
    """Textbook BCE on p = sigmoid(a) sigmoid(b), float64; accurate for moderate logits."""
    p = 1 / (1 + np.exp(-np.float64(a))) / (1 + np.exp(-np.float64(b)))
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


# ------------------------------------------------------------------------------------ head
def test_head_golden():
    ctr_logit = np.array([[0.0], [math.log(3.0)]], np.float32)
    cvr_logit = np.array([[math.log(3.0)], [-math.log(4.0)]], np.float32)
    out = ESMMHead()([ctr_logit, cvr_logit])
    assert set(out) == {"ctr", "cvr", "ctcvr"}
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 4) = 1/5
    # row 1: ctcvr = 1/2 * 3/4 = 0.375; row 2: ctcvr = 3/4 * 1/5 = 0.15
    np.testing.assert_allclose(out["ctr"].numpy(), [[0.5], [0.75]], rtol=1e-6)
    np.testing.assert_allclose(out["cvr"].numpy(), [[0.75], [0.2]], rtol=1e-6)
    np.testing.assert_allclose(out["ctcvr"].numpy(), [[0.375], [0.15]], rtol=1e-6)
    assert all(v.dtype == tf.float32 and v.shape == (2, 1) for v in out.values())


def test_head_is_float32_under_mixed_precision(mixed_bf16):
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 2, [8, 1]).astype(np.float32), rng.normal(0, 2, [8, 1]).astype(np.float32)
    head = ESMMHead()
    assert head.compute_dtype == "float32"
    got = head([tf.cast(a, tf.bfloat16), tf.cast(b, tf.bfloat16)])
    want = ESMMHead()([a, b])
    for key in ("ctr", "cvr", "ctcvr"):
        assert got[key].dtype == tf.float32
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=0.02)
    # float32 logits are not rounded to bfloat16 on the way in
    exact = head([a, b])
    np.testing.assert_allclose(exact["ctcvr"].numpy(), want["ctcvr"].numpy(), rtol=1e-6)


def test_model_mixed_precision_end_to_end(mixed_bf16):
    x = np.random.default_rng(1).standard_normal([16, 6]).astype(np.float32)
    inp = tf.keras.Input([6])
    out = ESMMHead()(TaskTowers(2, [4])(MMoE(2, 2, [8])(inp)))
    model = tf.keras.Model(inp, out)
    assert all(v.dtype == tf.float32 for v in model(x).values())


def test_head_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    a = np.random.default_rng(2).standard_normal([5, 1]).astype(np.float32)
    check_config_roundtrip(ESMMHead(name="esmm"), [a, -a])
    inp = tf.keras.Input([6])
    model = tf.keras.Model(inp, ESMMHead()(TaskTowers(2, [3])(MMoE(2, 2, [4])(inp))))
    x = np.random.default_rng(3).standard_normal([5, 6]).astype(np.float32)
    restored = check_savedmodel(model, x)
    assert set(restored(x)) == {"ctr", "cvr", "ctcvr"}


def test_head_rejects_wrong_inputs():
    with pytest.raises(ValueError, match="expects \\[ctr_logit, cvr_logit\\]"):
        ESMMHead()([np.zeros([1, 1], np.float32)] * 3)
    with pytest.raises(ValueError, match="expects \\[ctr_logit, cvr_logit\\]"):
        ESMMHead()(tf.zeros([2, 1]))  # one tensor, even with 2 rows, is not a pair


def test_gradients_reach_every_variable(check_gradients):
    # The head has no weights: check through towers + head that both logits get gradient.
    inp = tf.keras.Input([6])
    model = tf.keras.Model(inp, ESMMHead()(TaskTowers(2, [3])(MMoE(2, 2, [4])(inp))))
    x = np.random.default_rng(4).standard_normal([32, 6]).astype(np.float32)
    check_gradients(model, x)


def test_cvr_tower_is_trained_only_through_ctcvr():
    a = tf.Variable([[0.3], [-1.0]])
    b = tf.Variable([[0.7], [2.0]])
    clicks, ctcvr_labels = tf.constant([[1.0], [0.0]]), tf.constant([[1.0], [0.0]])
    with tf.GradientTape(persistent=True) as tape:
        ctr_loss = tf.keras.losses.binary_crossentropy(clicks, a, from_logits=True)
        ctcvr = ctcvr_log_loss(ctcvr_labels, a, b)
        total = tf.reduce_sum(ctr_loss) + tf.reduce_sum(ctcvr)
    assert tape.gradient(ctr_loss, b) is None
    np.testing.assert_allclose(tape.gradient(total, b), tape.gradient(ctcvr, b), rtol=1e-6)
    assert np.all(tape.gradient(total, b).numpy() != 0)


# ------------------------------------------------------------------------------------ loss
def test_loss_hand_computed():
    # a = b = 0: p = 1/2 * 1/2 = 1/4; label 1: -ln(1/4) = ln 4 = 1.3862944
    #                                 label 0: -ln(3/4) = 0.2876821
    # a = ln 3, b = -ln 4: p = 3/4 * 1/5 = 3/20; label 0: -ln(17/20) = 0.1625189
    labels = tf.constant([[1.0], [0.0], [0.0]])
    a = tf.constant([[0.0], [0.0], [math.log(3.0)]])
    b = tf.constant([[0.0], [0.0], [-math.log(4.0)]])
    np.testing.assert_allclose(ctcvr_log_loss(labels, a, b).numpy(),
                               [[1.3862944], [0.2876821], [0.1625189]], rtol=1e-6)


def test_loss_matches_naive_formula_on_moderate_logits():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(-8, 8, [200, 1]), rng.uniform(-8, 8, [200, 1])
    labels = rng.uniform(0, 1, [200, 1])  # soft labels too
    got = ctcvr_log_loss(labels, a.astype(np.float32), b.astype(np.float32)).numpy()
    np.testing.assert_allclose(got, _naive_loss(labels, a, b), rtol=2e-5, atol=1e-6)


def test_log_one_minus_p_equals_log_neg_expm1_log_p():
    # p > 1/2 branch (both logits positive) against log(-expm1(log p)) in float64
    rng = np.random.default_rng(6)
    a, b = rng.uniform(0.5, 40, [200, 1]), rng.uniform(0.5, 40, [200, 1])
    log_p = _log_sigmoid64(a) + _log_sigmoid64(b)
    want = -np.log(-np.expm1(log_p))
    got = ctcvr_log_loss(np.zeros_like(a), a.astype(np.float32), b.astype(np.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_loss_is_finite_where_naive_formula_is_not():
    a = tf.constant([[200.0], [200.0], [-200.0], [-200.0], [30.0], [120.0]])
    b = tf.constant([[150.0], [150.0], [3.0], [3.0], [25.0], [-120.0]])
    labels = tf.constant([[0.0], [1.0], [1.0], [0.0], [0.0], [1.0]])
    with tf.GradientTape() as tape:
        tape.watch([a, b])
        loss = ctcvr_log_loss(labels, a, b)
    # row 1: 1 - p = e^-200 + e^-150 + e^-350 (times p ~ 1) -> -log = 150 - log(1 + e^-50) = 150
    # row 2: log p ~ -e^-150 -> 0;  row 3: -log p = softplus(200) + softplus(-3) = 200.048587
    # row 4: 1 - p ~ 1 -> 0;  row 5: 1 - p ~ e^-25 + e^-30 -> 25 - log(1 + e^-5) = 24.993262
    # row 6: -log p = softplus(-120) + softplus(120) = 120
    want = [[150.0], [0.0], [200.0 + math.log1p(math.exp(-3.0))], [0.0],
            [25.0 - math.log1p(math.exp(-5.0))], [120.0]]
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-6, atol=1e-6)
    assert np.isinf(_naive_loss(0.0, 200.0, 150.0))  # float64 p rounds to 1
    for grad in tape.gradient(loss, [a, b]):
        assert np.all(np.isfinite(grad.numpy()))


def test_loss_gradient_matches_naive_autodiff():
    rng = np.random.default_rng(7)
    a = tf.constant(rng.uniform(-5, 5, [50, 1]))
    b = tf.constant(rng.uniform(-5, 5, [50, 1]))
    labels = tf.constant(rng.integers(0, 2, [50, 1]).astype(np.float64))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        stable = ctcvr_log_loss(labels, a, b)  # computed in float32
        p = tf.sigmoid(a) * tf.sigmoid(b)
        naive = -(labels * tf.math.log(p) + (1 - labels) * tf.math.log(1 - p))
    for x in (a, b):
        np.testing.assert_allclose(tape.gradient(stable, x).numpy(),
                                   tape.gradient(naive, x).numpy(), rtol=1e-4, atol=1e-6)


def test_ctcvr_logit_is_the_logit_of_the_product():
    from ranking.layers.heads.esmm import ctcvr_logit

    a = tf.constant([-3.0, 0.0, 2.0, 30.0])
    b = tf.constant([1.0, 0.0, 2.0, 30.0])
    z = ctcvr_logit(a, b).numpy()
    # a = b = 0: p = 1/4, logit = log(1/3); a = b = 2: p = sigmoid(2)^2.
    assert z[1] == pytest.approx(np.log(1 / 3), abs=1e-6)
    p2 = 1 / (1 + np.exp(-2.0)) ** 2
    assert z[2] == pytest.approx(np.log(p2 / (1 - p2)), abs=1e-5)
    # a = b = 30: 1 - p = e^-30 + e^-30 + e^-60 -> logit = log p - log(1-p) ~ 30 - log 2.
    assert z[3] == pytest.approx(30 - np.log(2.0), abs=1e-4)
    labels = tf.constant([1.0, 0.0, 1.0, 0.0])
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=ctcvr_logit(a, b))
    np.testing.assert_allclose(bce.numpy(), ctcvr_log_loss(labels, a, b).numpy(), rtol=1e-5)
