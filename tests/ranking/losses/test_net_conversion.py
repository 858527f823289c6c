"""Net conversion: the cascade pCVR x (1 - pRefund | conv), the refund head's loss on converted
rows, the direct head, and seed 004's three-moment importance-sampling loss (with the
corrected q(x, y=0) and w-).

The enumerated world has two feature values; per x the masses of the six kinds of click and
the net labels of their three stream copies (window; after delayed conversions; after delayed
refunds = final):

    never converts                     0 0 0
    TP converts in window, no refund   1 1 1
    converts and refunds in window     0 0 0
    FP converts in window, refund late 1 1 0      (a delayed refund)
    FN converts late, no refund        0 1 1      (a delayed conversion)
    LL converts late, refunded         0 1 0      (both)
"""
import math

import numpy as np
import pytest

import ranking.losses  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
import tensorflow as tf  # noqa: E402

from ranking.losses import net_conversion as nc  # noqa: E402
from ranking.losses.delayed_feedback import bce_loss, weighted_bce  # noqa: E402

LN2, LN4, LN43, LN3 = math.log(2.0), math.log(4.0), math.log(4.0 / 3.0), math.log(3.0)

PX = np.array([0.6, 0.4])
COPIES = {"none": (0, 0, 0), "tp": (1, 1, 1), "in_in": (0, 0, 0), "fp": (1, 1, 0),
          "fn": (0, 1, 1), "ll": (0, 1, 0)}
MASS = {"none": [0.70, 0.74], "tp": [0.15, 0.08], "in_in": [0.02, 0.01], "fp": [0.05, 0.04],
        "fn": [0.06, 0.10], "ll": [0.02, 0.03]}
M = {k: np.array(v) for k, v in MASS.items()}
P1 = M["tp"] + M["fn"]                  # final net label 1: [0.21, 0.18]
P0 = 1.0 - P1
P_DR = M["fp"] + M["ll"]                # a refund arrives after the window: [0.07, 0.07]
P_DP = M["fn"] + M["ll"]                # the conversion arrives after the window: [0.08, 0.13]
Z_ANY = np.array([0.4, -1.1])


def _sp(x):
    return np.log1p(np.exp(x))


def _stream():
    """Every copy of every kind of click: x index, label, mass p(x) m / 3 (three copies)."""
    xs, labels, mass = [], [], []
    for kind, copies in COPIES.items():
        for label in copies:
            for x in range(2):
                xs.append(x)
                labels.append(label)
                mass.append(PX[x] * M[kind][x] / 3.0)
    return np.array(xs), np.array(labels, np.float32), np.array(mass)


def test_world_is_a_distribution():
    np.testing.assert_allclose(sum(M.values()), [1.0, 1.0])


# ----------------------------------------------------------------------------- cascade
def test_cascade_golden():
    # pCVR = sigmoid(ln3) = 3/4, pRefund = sigmoid(-ln3) = 1/4: pNet = 3/4 * 3/4 = 9/16,
    # logit ln(9/7); pCVR = pRefund = 1/2: pNet = 1/4, logit ln(1/3)
    a = np.array([LN3, 0.0], np.float32)
    b = np.array([-LN3, 0.0], np.float32)
    np.testing.assert_allclose(nc.cascade_net_cvr(a, b).numpy(), [9 / 16, 1 / 4], rtol=1e-6)
    np.testing.assert_allclose(nc.cascade_net_cvr_logit(a, b).numpy(),
                               [math.log(9 / 7), -LN3], rtol=1e-5)


def test_cascade_logit_matches_product_and_stays_finite():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 3, [64]).astype(np.float32)
    b = rng.normal(0, 3, [64]).astype(np.float32)
    np.testing.assert_allclose(tf.sigmoid(nc.cascade_net_cvr_logit(a, b)).numpy(),
                               nc.cascade_net_cvr(a, b).numpy(), rtol=1e-5, atol=1e-7)
    extreme = nc.cascade_net_cvr_logit([100.0, -100.0, 100.0], [-100.0, 100.0, 100.0]).numpy()
    assert np.all(np.isfinite(extreme))
    assert extreme[0] > 80 and extreme[1] < -150 and extreme[2] < -80


def test_refund_loss_uses_converted_matured_rows_only():
    # rows: converted [1, 1, 0, 1], refund labels [1, 0, 0, 0], logits [0, ln3, 7, 0],
    # matured [1, 1, 1, 0]: rows 0 and 1 count: (ln2 + ln4) / 2
    converted = [1.0, 1.0, 0.0, 1.0]
    labels = [1.0, 0.0, 0.0, 0.0]
    matured = [1.0, 1.0, 1.0, 0.0]
    logits = tf.constant([0.0, LN3, 7.0, 0.0])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = nc.refund_given_conversion_loss(labels, logits, converted, matured)
    assert loss.numpy() == pytest.approx((LN2 + LN4) / 2, rel=1e-6)
    grad = tape.gradient(loss, logits).numpy()
    assert grad[2] == 0.0 and grad[3] == 0.0 and grad[0] != 0.0
    # row 3's refund is not final yet: its future label cannot change the loss
    flipped = nc.refund_given_conversion_loss([1.0, 0.0, 0.0, 1.0], logits, converted, matured)
    assert flipped.numpy() == loss.numpy()
    # without the maturity mask every converted row counts: (ln2 + ln4 + ln2) / 3
    assert nc.refund_given_conversion_loss(labels, logits, converted).numpy() == \
        pytest.approx((2 * LN2 + LN4) / 3, rel=1e-6)
    # no converted row: 0, not NaN
    assert nc.refund_given_conversion_loss([0.0], [1.0], [0.0]).numpy() == 0.0


def test_direct_head_is_bce():
    np.testing.assert_allclose(nc.direct_net_cvr_loss([1.0, 0.0], [0.0, LN3]).numpy(),
                               [LN2, LN4], rtol=1e-6)


# ------------------------------------------------------------------ importance sampling
def test_observed_distribution_and_the_typo_in_the_notes():
    xs, y, mass = _stream()
    q1 = np.array([np.sum(mass[(xs == x) & (y == 1)]) for x in range(2)]) / PX
    q0 = np.array([np.sum(mass[(xs == x) & (y == 0)]) for x in range(2)]) / PX
    np.testing.assert_allclose(q1 + q0, 1.0)                      # q(x) = p(x): 3 copies each
    np.testing.assert_allclose(q1, P1 + 2 / 3 * P_DR - 1 / 3 * P_DP)   # the notes' line 1
    np.testing.assert_allclose(q0, P0 - 2 / 3 * P_DR + 1 / 3 * P_DP)   # the corrected line 2
    notes_q0 = P1 + 2 / 3 * P_DP - 1 / 3 * P_DR                   # the notes' line 2, as written
    assert not np.allclose(notes_q0, q0)
    # even with p(x, y=0) restored, the mirrored delay terms do not sum to p(x)
    mirrored = P0 + 2 / 3 * P_DP - 1 / 3 * P_DR
    np.testing.assert_allclose(q1 + mirrored, 1.0 + (P_DR + P_DP) / 3)


def test_weights_golden():
    # p=.5, P_dr=.15, P_dp=.15: q+ = .5 + (.3 - .15)/3 = .55, q- = .45: w+ = 10/11, w- = 10/9
    # p=.25, P_dr=0, P_dp=.3: q+ = .25 - .1 = .15 < 2/3 * .25, floored: w+ = 3/2;
    #   q- = .75 + .1 = .85: w- = 15/17
    # p=.5, P_dr=.9, P_dp=0: q+ = 1.1, w+ = 5/11; q- = -.1 < .5/3, floored: w- = 3
    w_pos, w_neg = nc.net_conversion_weights([0.5, 0.25, 0.5], [0.15, 0.0, 0.9],
                                             [0.15, 0.3, 0.0])
    np.testing.assert_allclose(w_pos.numpy(), [10 / 11, 1.5, 5 / 11], rtol=1e-6)
    np.testing.assert_allclose(w_neg.numpy(), [10 / 9, 15 / 17, 3.0], rtol=1e-6)


def test_is_loss_golden():
    # labels [1, 0, 1, 0], logits [0, 0, -ln3, -ln3] (p = .5, .5, .25, .25),
    # P_dr [.15, .15, 0, 0], P_dp [.15, .15, .3, .3]; weights from test_weights_golden:
    # (10/11) ln2, (10/9) ln2, (3/2) * -log(1/4) = 1.5 ln4, (15/17) * -log(3/4)
    got = nc.net_conversion_is_loss([1.0, 0.0, 1.0, 0.0], [0.0, 0.0, -LN3, -LN3],
                                    [0.15, 0.15, 0.0, 0.0], [0.15, 0.15, 0.3, 0.3]).numpy()
    np.testing.assert_allclose(got, [10 / 11 * LN2, 10 / 9 * LN2, 1.5 * LN4, 15 / 17 * LN43],
                               rtol=1e-5)


def test_expected_weighted_loss_equals_the_true_risk():
    xs, y, mass = _stream()
    w_pos, w_neg = nc.net_conversion_weights(P1[xs], P_DR[xs], P_DP[xs])
    losses = weighted_bce(y, Z_ANY[xs].astype(np.float32), w_pos, w_neg).numpy()
    true_risk = np.sum(PX * (P1 * _sp(-Z_ANY) + P0 * _sp(Z_ANY)))
    assert np.sum(mass * losses) == pytest.approx(true_risk, rel=1e-6)
    # the loss itself (weights from the model's own prediction) is stationary at the truth
    z = tf.Variable(np.log(P1 / P0).astype(np.float32))
    dr, dp = P_DR[xs].astype(np.float32), P_DP[xs].astype(np.float32)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(mass * nc.net_conversion_is_loss(y, tf.gather(z, xs), dr, dp))
    np.testing.assert_allclose(tf.convert_to_tensor(tape.gradient(total, z)).numpy(), 0.0,
                               atol=1e-6)
    # ... where plain cross-entropy on the stream is not (it is pulled towards q(y=1|x))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(mass * bce_loss(y, tf.gather(z, xs)))
    assert np.all(np.abs(tf.convert_to_tensor(tape.gradient(total, z)).numpy()) > 1e-3)


def test_without_delays_is_bce_and_aux_gets_no_gradient():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, [16]).astype(np.float32)
    y = rng.integers(0, 2, [16]).astype(np.float32)
    zero = np.zeros_like(z)
    np.testing.assert_allclose(nc.net_conversion_is_loss(y, z, zero, zero).numpy(),
                               bce_loss(y, z).numpy(), rtol=1e-6)
    dr = tf.constant(np.full([16], 0.1, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(dr)
        loss = tf.reduce_sum(nc.net_conversion_is_loss(y, z, dr, zero))
    assert tape.gradient(loss, dr) is None


def test_delay_heads_loss_golden():
    # matured rows 0, 1; P_dp head: labels 1, 0 at logits ln3, 0 -> (ln(4/3) + ln2) / 2
    # P_dr head: labels 0, 1 at logits ln3, ln3 -> (ln4 + ln(4/3)) / 2; row 2 (unmatured) out
    dp_loss, dr_loss = nc.net_delay_heads_loss([1.0, 0.0, 0.0], [0.0, 1.0, 1.0],
                                               [1.0, 1.0, 0.0], [LN3, 0.0, 9.0],
                                               [LN3, LN3, -9.0])
    assert dp_loss.numpy() == pytest.approx((LN43 + LN2) / 2, rel=1e-6)
    assert dr_loss.numpy() == pytest.approx((LN4 + LN43) / 2, rel=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda: nc.refund_given_conversion_loss([1.0], [0.0], [0.0]),
     "refund_labels = 1 requires converted = 1; converted was [0.0]"),
    (lambda: nc.net_conversion_is_loss([1.0], [0.0], [1.2], [0.0]),
     "delayed_refund_prob must be in [0, 1], got [1.2"),
    (lambda: nc.net_conversion_is_loss([1.0], [0.0], [0.0], [-0.5]),
     "delayed_conversion_prob must be in [0, 1], got [-0.5]"),
    (lambda: nc.direct_net_cvr_loss([3.0], [0.0]), "net_labels must be 0 or 1, got [3.0]"),
    (lambda: nc.net_delay_heads_loss([1.0], [2.0], [1.0], [0.0], [0.0]),
     "delayed_refund must be 0 or 1, got [2.0]"),
])
def test_bad_values_name_the_field(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)
