"""Delayed-feedback losses (FNW, FNC, ES-DFM, DEFER, DEFUSE, Bi-DEFUSE, Vanilla/Oracle), their
weights, the auxiliary heads' labels, and the method layer.

Golden cases are worked out in the comments (``ln`` = natural log; ``-log sigmoid(0) = ln 2``,
``-log sigmoid(ln 3) = ln 4/3``, ``-log(1 - sigmoid(ln 3)) = ln 4``). The unbiasedness tests
enumerate a two-feature world: for each ``x`` the true probabilities of an in-window positive
(``ip``), a delayed positive (``dp``) and a real negative (``p0``); each method's stream
distribution ``q`` is built from them, sample type by sample type.
"""
import math

import numpy as np
import pytest

import ranking.losses  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
import tensorflow as tf  # noqa: E402

from ranking.losses import delayed_feedback as dfb  # noqa: E402
from ranking.losses import stream_fields as sf  # noqa: E402

LN2, LN4, LN43 = math.log(2.0), math.log(4.0), math.log(4.0 / 3.0)
LN3 = math.log(3.0)

# The enumerated world: p(x), and per x the in-window-positive / delayed-positive masses.
PX = np.array([0.6, 0.4])
IP = np.array([0.2, 0.05])
DP = np.array([0.1, 0.15])
P1 = IP + DP                        # [0.3, 0.2]
P0 = 1.0 - P1                       # [0.7, 0.8]
RN = P0 / (P0 + DP)                 # P(real negative | observed negative at the window)
Z_ANY = np.array([0.4, -1.1])       # a model that is *not* the truth
Z_TRUE = np.log(P1 / P0)            # logit(p1): the true CVR


def _sp(x):
    return np.log1p(np.exp(x))


def _true_risk(z):
    """sum_x p(x) [p1 (-log f) + p0 (-log(1 - f))]."""
    return float(np.sum(PX * (P1 * _sp(-z) + P0 * _sp(z))))


def _expected(mass, losses):
    return float(np.sum(np.asarray(mass) * np.asarray(losses, np.float64)))


def _rows(types):
    """Stream rows of the world: ``types`` maps a sample type to (label, mass per x, extra
    fields). Returns x index, label, mass (with p(x)) and a dict of the extra fields."""
    xs, labels, masses, extra = [], [], [], {}
    for label, mass, fields in types:
        for x in range(2):
            xs.append(x)
            labels.append(label)
            masses.append(PX[x] * mass[x])
            for name, value in fields.items():
                extra.setdefault(name, []).append(value)
    arrays = {k: np.array(v, np.float32) for k, v in extra.items()}
    return np.array(xs), np.array(labels, np.float32), np.array(masses), arrays


def _stationary_gradient(loss_of_z, xs, mass):
    """d/dz_x of sum_rows mass * loss at z = logit(p1): zero iff the method is unbiased."""
    z = tf.Variable(Z_TRUE.astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(tf.constant(mass, tf.float32) * loss_of_z(tf.gather(z, xs)))
    return tf.convert_to_tensor(tape.gradient(total, z)).numpy()


# ------------------------------------------------------------------- Vanilla / Oracle (BCE)
def test_bce_loss_golden_and_equals_tf():
    got = dfb.bce_loss([1.0, 0.0, 1.0], [0.0, LN3, LN3]).numpy()
    np.testing.assert_allclose(got, [LN2, LN4, LN43], rtol=1e-6)
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, [32, 1]).astype(np.float32)
    y = rng.integers(0, 2, [32, 1]).astype(np.float32)
    np.testing.assert_allclose(dfb.bce_loss(y, z).numpy(),
                               tf.nn.sigmoid_cross_entropy_with_logits(y, z).numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- FNW / FNC
def test_fnw_weights_and_loss_golden():
    # p = 1/2: w+ = 1.5, w- = 0.5 * 1.5 = 0.75; p = 3/4: w+ = 1.75, w- = 0.25 * 1.75 = 0.4375
    w_pos, w_neg = dfb.fnw_weights([0.5, 0.75])
    np.testing.assert_allclose(w_pos.numpy(), [1.5, 1.75])
    np.testing.assert_allclose(w_neg.numpy(), [0.75, 0.4375])
    got = dfb.fnw_loss([1.0, 0.0, 1.0, 0.0], [0.0, 0.0, LN3, LN3]).numpy()
    np.testing.assert_allclose(got, [1.5 * LN2, 0.75 * LN2, 1.75 * LN43, 0.4375 * LN4],
                               rtol=1e-6)


def test_fnw_weights_are_stop_gradient():
    # d/dz [w+ softplus(-z)] with w+ constant = -w+ (1 - p) = -1.5 * 0.5 at z = 0; a weight
    # carrying gradient would add (dw+/dz) ln 2 = 0.25 ln 2.
    z = tf.constant([0.0, 0.0])
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(dfb.fnw_loss([1.0, 0.0], z))
    # negative row: w- p = 0.75 * 0.5
    np.testing.assert_allclose(tape.gradient(loss, z).numpy(), [-0.75, 0.375], rtol=1e-6)


def _fake_negative_stream():
    # every click once as a negative (mass 1), converters again as a positive (mass p1)
    return _rows([(0.0, np.ones(2), {}), (1.0, P1, {})])


def test_fnw_importance_identity_and_marginal_tilt():
    xs, y, mass, _ = _fake_negative_stream()
    w_pos, w_neg = dfb.fnw_weights(P1[xs].astype(np.float32))
    losses = dfb.weighted_bce(y, Z_ANY[xs].astype(np.float32), w_pos, w_neg)
    # normalized per x as the paper does (q(x) = p(x)): the weighted risk is the true risk
    per_x_norm = 1.0 + P1[xs]
    assert _expected(mass / per_x_norm, losses) == pytest.approx(_true_risk(Z_ANY), rel=1e-6)
    # on the raw stream each x's risk is exact but weighted by 1 + p1(x)
    tilted = float(np.sum(PX * (1 + P1) * (P1 * _sp(-Z_ANY) + P0 * _sp(Z_ANY))))
    assert _expected(mass, losses) == pytest.approx(tilted, rel=1e-6)
    assert tilted != pytest.approx(_true_risk(Z_ANY) * float(np.sum(PX * (1 + P1))), rel=1e-3)


def test_fnw_is_stationary_at_the_true_cvr_and_vanilla_bce_is_not():
    xs, y, mass, _ = _fake_negative_stream()
    grad = _stationary_gradient(lambda z: dfb.fnw_loss(y, z), xs, mass)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    # plain cross-entropy on the same stream is pulled below the truth (positive gradient)
    assert np.all(_stationary_gradient(lambda z: dfb.bce_loss(y, z), xs, mass) > 0.01)


def test_fnc_calibration_inverts_the_fake_negative_stream():
    # q = p1 / (1 + p1) is what BCE learns on the stream; its logit is ln p1, exp gives p1
    np.testing.assert_allclose(dfb.fnc_calibrate([math.log(1 / 3), 0.0, 1.0]).numpy(),
                               [1 / 3, 1.0, 1.0], rtol=1e-6)
    xs, y, mass, _ = _fake_negative_stream()
    z_q = tf.Variable(np.log(P1).astype(np.float32))            # logit(q) = ln p1
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(mass * dfb.fnc_loss(y, tf.gather(z_q, xs)))
    np.testing.assert_allclose(tf.convert_to_tensor(tape.gradient(total, z_q)).numpy(), 0.0,
                               atol=1e-6)
    np.testing.assert_allclose(dfb.fnc_calibrate(z_q).numpy(), P1, rtol=1e-6)


def test_fnw_keras_loss_matches_function_and_roundtrips():
    labels = np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)
    logits = np.array([[0.0], [0.0], [LN3], [LN3]], np.float32)
    loss = dfb.FakeNegativeWeightedLoss(name="fnw")
    want = (1.5 * LN2 + 0.75 * LN2 + 1.75 * LN43 + 0.4375 * LN4) / 4
    np.testing.assert_allclose(loss(labels, logits).numpy(), want, rtol=1e-6)
    clone = tf.keras.losses.deserialize(tf.keras.losses.serialize(loss))
    assert isinstance(clone, dfb.FakeNegativeWeightedLoss)
    assert clone.get_config() == loss.get_config()
    np.testing.assert_allclose(clone(labels, logits).numpy(), want, rtol=1e-6)


# ---------------------------------------------------------------------------------- ES-DFM
def test_esdfm_weights_and_loss_golden():
    # w+ = 1 + f_dp; w- = (1 + f_dp) f_rn
    # row 0: y=1, f_dp=.2 -> 1.2 ln2; row 1: y=0, f_dp=.2, f_rn=.75 -> 0.9 ln2
    # row 2: y=0, p=3/4, f_dp=.5, f_rn=.5 -> 0.75 ln4
    w_pos, w_neg = dfb.esdfm_weights([0.2, 0.5], [0.75, 0.5])
    np.testing.assert_allclose(w_pos.numpy(), [1.2, 1.5])
    np.testing.assert_allclose(w_neg.numpy(), [0.9, 0.75])
    got = dfb.esdfm_loss([1.0, 0.0, 0.0], [0.0, 0.0, LN3], [0.2, 0.2, 0.5], [0.5, 0.75, 0.5])
    np.testing.assert_allclose(got.numpy(), [1.2 * LN2, 0.9 * LN2, 0.75 * LN4], rtol=1e-6)


def test_esdfm_without_delayed_positives_is_bce():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, [16, 1]).astype(np.float32)
    y = rng.integers(0, 2, [16, 1]).astype(np.float32)
    np.testing.assert_allclose(dfb.esdfm_loss(y, z, np.zeros_like(z), np.ones_like(z)).numpy(),
                               dfb.bce_loss(y, z).numpy(), rtol=1e-6)


def _esdfm_stream():
    # first copies: positive (mass ip), negative (dp + p0); delayed-positive duplicates (dp)
    return _rows([(1.0, IP, {"dpos": 0.0}), (0.0, DP + P0, {"dpos": 0.0}),
                  (1.0, DP, {"dpos": 1.0})])


def test_esdfm_expected_loss_equals_true_risk():
    xs, y, mass, _ = _esdfm_stream()
    dp, rn = DP[xs].astype(np.float32), RN[xs].astype(np.float32)
    losses = dfb.esdfm_loss(y, Z_ANY[xs].astype(np.float32), dp, rn)
    # the paper's normalization: q(y | x) = counts / (1 + p_dp), q(x) = p(x)
    assert _expected(mass / (1.0 + DP[xs]), losses) == pytest.approx(_true_risk(Z_ANY),
                                                                     rel=1e-6)
    # and with the true auxiliary values the gradient vanishes at the true CVR
    grad = _stationary_gradient(lambda z: dfb.esdfm_loss(y, z, dp, rn), xs, mass)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_auxiliary_probabilities_get_no_gradient():
    dp = tf.constant([0.2, 0.3])
    rn = tf.constant([0.6, 0.7])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([dp, rn])
        esdfm = tf.reduce_sum(dfb.esdfm_loss([1.0, 0.0], [0.5, -0.5], dp, rn))
        defuse = tf.reduce_sum(dfb.defuse_loss([1.0, 0.0], [0.5, -0.5], [0.0, 0.0], dp, rn))
    for loss in (esdfm, defuse):
        assert tape.gradient(loss, dp) is None and tape.gradient(loss, rn) is None


# ----------------------------------------------------------------------------------- DEFER
def test_defer_weights_and_loss_golden():
    # row 0: y=1, p=.5, f_dp=.2: w+ = .5 / (.5 - .1) = 1.25 -> 1.25 ln2
    # row 1: y=0, p=.5, f_dp=.2: w- = .5 / (.5 + .1) = 5/6 -> 5/6 ln2
    # row 2: y=1, p=.75, f_dp=.9 > p: denominator floored at p/2, w+ = 2 -> 2 ln(4/3)
    w_pos, w_neg = dfb.defer_weights([0.5, 0.75], [0.2, 0.9])
    np.testing.assert_allclose(w_pos.numpy(), [1.25, 2.0], rtol=1e-6)
    np.testing.assert_allclose(w_neg.numpy(), [5 / 6, 0.25 / 0.7], rtol=1e-6)
    got = dfb.defer_loss([1.0, 0.0, 1.0], [0.0, 0.0, LN3], [0.2, 0.2, 0.9]).numpy()
    np.testing.assert_allclose(got, [1.25 * LN2, 5 / 6 * LN2, 2 * LN43], rtol=1e-6)
    # no delayed positives: plain cross-entropy
    np.testing.assert_allclose(dfb.defer_loss([1.0, 0.0], [0.3, -2.0], [0.0, 0.0]).numpy(),
                               dfb.bce_loss([1.0, 0.0], [0.3, -2.0]).numpy(), rtol=1e-6)


def test_defer_identity_is_exact_on_the_real_stream():
    # two copies per click, so q(x) = p(x) holds without the paper's approximation:
    # in-window positive (1, 1), delayed positive (0, 1), real negative (0, 0); each copy 1/2
    xs, y, mass, _ = _rows([(1.0, IP, {}), (1.0, IP, {}), (0.0, DP, {}), (1.0, DP, {}),
                            (0.0, P0, {}), (0.0, P0, {})])
    w_pos, w_neg = dfb.defer_weights(P1[xs].astype(np.float32), DP[xs].astype(np.float32))
    losses = dfb.weighted_bce(y, Z_ANY[xs].astype(np.float32), w_pos, w_neg)
    assert _expected(mass / 2.0, losses) == pytest.approx(_true_risk(Z_ANY), rel=1e-6)
    dp = DP[xs].astype(np.float32)
    grad = _stationary_gradient(lambda z: dfb.defer_loss(y, z, dp), xs, mass)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


# ---------------------------------------------------------------------------------- DEFUSE
def test_defuse_weights_and_loss_golden():
    # coefficients (c1 on -log f, c0 on -log(1 - f)):
    # IP (y=1, dpos=0), f_dp=.2:                  (1.2, 0)         -> 1.2 ln2
    # DP (y=1, dpos=1):                           (1, 0)           -> ln2
    # negative, f_dp=.2, f_rn=.75 (z=.25):        (.05, .9)        -> .95 ln2
    # negative, p=3/4, f_dp=.5, f_rn=.5 (z=.5):   (.25, .75)       -> .25 ln(4/3) + .75 ln4
    y, dpos = [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    dp, rn = [0.2, 0.2, 0.2, 0.5], [0.5, 0.5, 0.75, 0.5]
    c1, c0 = dfb.defuse_weights(y, dpos, dp, rn)
    np.testing.assert_allclose(c1.numpy(), [1.2, 1.0, 0.05, 0.25], rtol=1e-6)
    np.testing.assert_allclose(c0.numpy(), [0.0, 0.0, 0.9, 0.75], rtol=1e-6)
    got = dfb.defuse_loss(y, [0.0, 0.0, 0.0, LN3], dpos, dp, rn).numpy()
    np.testing.assert_allclose(got, [1.2 * LN2, LN2, 0.95 * LN2, 0.25 * LN43 + 0.75 * LN4],
                               rtol=1e-6)


def test_defuse_expected_loss_equals_true_risk_and_reduces_to_bce():
    xs, y, mass, extra = _esdfm_stream()
    dp, rn = DP[xs].astype(np.float32), RN[xs].astype(np.float32)
    losses = dfb.defuse_loss(y, Z_ANY[xs].astype(np.float32), extra["dpos"], dp, rn)
    assert _expected(mass / (1.0 + DP[xs]), losses) == pytest.approx(_true_risk(Z_ANY),
                                                                     rel=1e-6)
    grad = _stationary_gradient(lambda z: dfb.defuse_loss(y, z, extra["dpos"], dp, rn), xs,
                                mass)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    # f_dp = 0, f_rn = 1: cross-entropy
    z = Z_ANY[xs].astype(np.float32)
    np.testing.assert_allclose(
        dfb.defuse_loss(y, z, extra["dpos"], np.zeros_like(z), np.ones_like(z)).numpy(),
        dfb.bce_loss(y, z).numpy(), rtol=1e-6)


# ------------------------------------------------------------------------------- Bi-DEFUSE
def test_bidefuse_loss_golden():
    # row 0, first copy y=1: in -log s(0) = ln2; out f_out=.5 as first copy: (.25, .75) -> ln2
    # row 1, first copy y=0, z_in=ln3: in ln4; out as row 0 -> ln2; total 3 ln2
    # row 2, delayed-positive duplicate: no in-window term; out (1, 0), z_out=ln3 -> ln(4/3)
    got = dfb.bidefuse_loss([1.0, 0.0, 1.0], [0.0, LN3, 0.0], [0.0, 0.0, LN3],
                            [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]).numpy()
    np.testing.assert_allclose(got, [2 * LN2, 3 * LN2, LN43], rtol=1e-6)
    c1, c0 = dfb.bidefuse_out_window_weights([0.0, 1.0], [0.5, 0.5])
    np.testing.assert_allclose(c1.numpy(), [0.25, 1.0])
    np.testing.assert_allclose(c0.numpy(), [0.75, 0.0])
    # f = f_in + f_out, clipped at 1: .5 + .75 -> 1; .25 + .5 = .75
    np.testing.assert_allclose(dfb.bidefuse_probability([0.0, -LN3], [LN3, 0.0]).numpy(),
                               [1.0, 0.75], rtol=1e-6)


def test_bidefuse_heads_are_unbiased_for_their_targets():
    xs, y, mass, extra = _esdfm_stream()
    dup = extra["dpos"]                          # ES-DFM stream: duplicates = delayed pos.
    z_any = Z_ANY[xs].astype(np.float32)
    # in-window head alone (out head fixed): first copies, exact: risk of y_in, p(y_in) = ip
    in_losses = dfb.bidefuse_loss(y, z_any, np.zeros_like(z_any), dup, dup) \
        - dfb.bidefuse_loss(y, np.zeros_like(z_any), np.zeros_like(z_any), dup, dup)
    in_risk = float(np.sum(PX * (IP * _sp(-Z_ANY) + (1 - IP) * _sp(Z_ANY))))
    zero_risk = float(np.sum(PX * LN2))          # the same risk at z_in = 0
    assert _expected(mass, in_losses) == pytest.approx(in_risk - zero_risk, rel=1e-6)
    # out-window head: stationary exactly at f_out = p_dp (its own weights), not at p1
    z_out = tf.Variable(np.log(DP / (1 - DP)).astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(mass * dfb.bidefuse_loss(y, np.zeros_like(z_any),
                                                       tf.gather(z_out, xs), dup, dup))
    np.testing.assert_allclose(tf.convert_to_tensor(tape.gradient(total, z_out)).numpy(), 0.0,
                               atol=1e-6)


# ------------------------------------------------------------------------ auxiliary heads
def test_delay_head_targets_golden():
    # (label, in_window): (1, 1) in-window positive, (1, 0) delayed positive, (0, 0) negative
    dp, rn, rn_mask = dfb.delay_head_targets([1.0, 1.0, 0.0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(dp.numpy(), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(rn.numpy(), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(rn_mask.numpy(), [0.0, 1.0, 1.0])
    # DEFER: each duplicate gives its final label, first copies none
    label, mask = dfb.defer_dp_targets([0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(label.numpy(), [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(mask.numpy(), [0.0, 1.0, 1.0, 1.0])


def test_matured_mask_is_exact_at_epoch_scale():
    # clicks at T - W - 1, T - W (matured exactly at T) and T - W + 1 (not yet): one second
    # apart, which float32 epoch seconds (spacing 128 s near 1.7e9) could not tell apart
    as_of, window = 1_700_000_000, 30 * 86400
    clicks = np.array([as_of - window - 1, as_of - window, as_of - window + 1], np.int64)
    elapsed = np.array([900, 900, 0], np.int64)
    got = dfb.matured_mask(clicks + elapsed, elapsed, window, as_of).numpy()
    np.testing.assert_array_equal(got, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(dfb.click_time(clicks + elapsed, elapsed).numpy(), clicks)


def test_delay_heads_loss_golden_and_never_uses_unmatured_labels():
    # rows (label, in_window, matured): (1,1,1), (1,0,1), (0,0,1), (1,0,0)
    # dp labels 0,1,0 with dp logits 0, ln3, 0: (ln2 + ln(4/3) + ln2) / 3
    # rn rows (matured, observed negative at the window): 1, 2 with labels 0, 1 and logits
    # 0, ln3: (ln2 + ln(4/3)) / 2
    labels = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
    in_window = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    matured = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    dp_logits = tf.constant([0.0, LN3, 0.0, 5.0])
    rn_logits = tf.constant([0.0, 0.0, LN3, 5.0])
    with tf.GradientTape() as tape:
        tape.watch([dp_logits, rn_logits])
        dp_loss, rn_loss = dfb.delay_heads_loss(labels, in_window, matured, dp_logits,
                                                rn_logits)
        total = dp_loss + rn_loss
    assert dp_loss.numpy() == pytest.approx((2 * LN2 + LN43) / 3, rel=1e-6)
    assert rn_loss.numpy() == pytest.approx((LN2 + LN43) / 2, rel=1e-6)
    g_dp, g_rn = tape.gradient(total, [dp_logits, rn_logits])
    assert g_dp.numpy()[3] == 0.0 and g_rn.numpy()[3] == 0.0
    # the unmatured click's (future) outcome cannot change either loss
    flipped = dfb.delay_heads_loss([1.0, 1.0, 0.0, 0.0], in_window, matured, dp_logits,
                                   rn_logits)
    np.testing.assert_array_equal([v.numpy() for v in flipped], [dp_loss.numpy(),
                                                                 rn_loss.numpy()])
    # DEFER needs no rn head
    assert dfb.delay_heads_loss(labels, in_window, matured, dp_logits)[1].numpy() == 0.0


# ---------------------------------------------------------------------- the method layer
def _inputs():
    return {
        "logits": np.array([[0.0], [0.0], [LN3], [LN3]], np.float32),
        "dp_logits": np.array([[-1.0], [0.5], [0.0], [-2.0]], np.float32),
        "rn_logits": np.array([[1.0], [2.0], [0.0], [0.3]], np.float32),
        "in_window_logits": np.array([[0.2], [-0.4], [1.0], [0.0]], np.float32),
        "out_window_logits": np.array([[-1.5], [-2.0], [-1.0], [-0.5]], np.float32),
        sf.LABEL: np.array([[1.0], [0.0], [1.0], [0.0]], np.float32),
        sf.IS_DUPLICATE: np.array([[0.0], [0.0], [1.0], [0.0]], np.float32),
        sf.DELAYED_POSITIVE: np.array([[0.0], [0.0], [1.0], [0.0]], np.float32),
    }


def test_layer_dispatches_to_each_method():
    i = _inputs()
    dp, rn = tf.sigmoid(i["dp_logits"]), tf.sigmoid(i["rn_logits"])
    want = {
        "vanilla": dfb.bce_loss(i["label"], i["logits"]),
        "oracle": dfb.bce_loss(i["label"], i["logits"]),
        "fnc": dfb.bce_loss(i["label"], i["logits"]),
        "fnw": dfb.fnw_loss(i["label"], i["logits"]),
        "es_dfm": dfb.esdfm_loss(i["label"], i["logits"], dp, rn),
        "defer": dfb.defer_loss(i["label"], i["logits"], dp),
        "defuse": dfb.defuse_loss(i["label"], i["logits"], i["delayed_positive"], dp, rn),
        "bi_defuse": dfb.bidefuse_loss(i["label"], i["in_window_logits"],
                                       i["out_window_logits"], i["is_duplicate"],
                                       i["delayed_positive"]),
    }
    assert set(want) == set(dfb.METHODS)
    for method, expected in want.items():
        got = dfb.DelayedFeedbackLoss(method)(i).numpy()
        assert got.shape == (4, 1)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-6, err_msg=method)
    # the golden FNW rows again, through the layer
    np.testing.assert_allclose(dfb.DelayedFeedbackLoss("fnw")(i).numpy()[:, 0],
                               [1.5 * LN2, 0.75 * LN2, 1.75 * LN43, 0.4375 * LN4], rtol=1e-6)


def test_layer_config_and_savedmodel_roundtrip(tmp_path):
    layer = dfb.DelayedFeedbackLoss("defuse", name="cvr_defuse")
    config = layer.get_config()
    assert config["method"] == "defuse"
    clone = dfb.DelayedFeedbackLoss.from_config(config)
    assert clone.get_config() == config
    i = _inputs()
    names = dfb.required_inputs("defuse")
    inputs = {n: tf.keras.Input(shape=(1,), name=n) for n in names}
    model = tf.keras.Model(inputs, layer(inputs))
    feed = {n: i[n] for n in names}
    expected = model(feed).numpy()
    path = str(tmp_path / "model")
    model.save(path, save_format="tf")
    restored = tf.keras.models.load_model(path)
    np.testing.assert_allclose(restored(feed).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, clone(i).numpy(), rtol=1e-6)


def test_layer_sends_no_gradient_to_auxiliary_heads():
    i = _inputs()
    dp_logits = tf.constant(i["dp_logits"])
    logits = tf.constant(i["logits"])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([dp_logits, logits])
        loss = tf.reduce_sum(dfb.DelayedFeedbackLoss("defer")(
            {**i, "dp_logits": dp_logits, "logits": logits}))
    assert tape.gradient(loss, dp_logits) is None
    assert np.all(tape.gradient(loss, logits).numpy() != 0)


# -------------------------------------------------------------------------- bad inputs
def test_bad_method_and_missing_inputs():
    with pytest.raises(ValueError, match=r"method must be one of .*got 'esdfm'"):
        dfb.DelayedFeedbackLoss("esdfm")
    with pytest.raises(ValueError, match=r"method 'defuse' needs inputs \['delayed_positive', "
                                         r"'rn_logits'\]"):
        dfb.delayed_feedback_loss("defuse", {"logits": [0.0], "label": [1.0],
                                             "dp_logits": [0.0]})


@pytest.mark.parametrize("call, message", [
    (lambda: dfb.fnw_loss([1.0, 2.0], [0.0, 0.0]), "label must be 0 or 1, got [2.0]"),
    (lambda: dfb.esdfm_loss([1.0], [0.0], [1.5], [0.5]), "dp_prob must be in [0, 1], got [1.5]"),
    (lambda: dfb.esdfm_loss([1.0], [0.0], [0.5], [float("nan")]),
     "rn_prob must be in [0, 1], got [nan]"),
    (lambda: dfb.defuse_loss([0.0], [0.0], [1.0], [0.1], [0.9]),
     "delayed_positive = 1 requires label = 1; label was [0.0]"),
    (lambda: dfb.bidefuse_loss([1.0], [0.0], [0.0], [1.0], [0.0]),
     "is_duplicate = 1 requires delayed_positive = 1; delayed_positive was [0.0]"),
    (lambda: dfb.delay_head_targets([0.0], [1.0]),
     "in_window = 1 requires label = 1; label was [0.0]"),
    (lambda: dfb.defer_loss(np.ones([4]), np.zeros([4, 1]), np.zeros([3])),
     "dp_prob has 3 values (3,), expected 4 (one per logit"),
    (lambda: dfb.matured_mask([0], [0], 0, 10), "horizon_s must be a number of seconds > 0, got 0"),
])
def test_bad_values_name_the_field_and_quote_the_value(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_bad_values_fail_inside_a_graph_too():
    fn = tf.function(lambda y, z: dfb.fnw_loss(y, z))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label must be 0 or 1"):
        fn(tf.constant([0.5]), tf.constant([0.0]))
