"""DelayedFeedbackModel: the heads of each method, the wiring of each batch kind to its loss
(golden values for one batch), output-bias priors, validation and the save/load round trip.

Golden cases fix the heads' outputs by zeroing each head's final kernel and setting its bias
(``ln`` = natural log): bias ``ln 3`` gives ``f = 3/4``, ``-ln 3`` gives ``1/4``, ``0`` gives
``1/2``; so ``-log f`` is ``ln 4/3``, ``ln 4`` or ``ln 2``.
"""
import dataclasses
import math

import numpy as np
import pytest

import ranking  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf  # noqa: E402

from ranking.config import BiasFeature, FeaturesConfig  # noqa: E402
from ranking.data.schema import FeatureSpec, Schema  # noqa: E402
from ranking.losses import stream_fields as sf  # noqa: E402
from ranking.models.delayed_feedback import (CVR, MATURED_CLICKS,  # noqa: E402
                                             MATURED_CONVERSIONS, METHODS, NET, NET_LABEL,
                                             NET_MODES, NET_STREAM, PRETRAIN, REFUND,
                                             REFUND_LABEL, STREAM, DelayedFeedbackModel)
from ranking.losses.net_conversion import refund_given_conversion_loss  # noqa: E402
from ranking.utils.typed_config import from_mapping  # noqa: E402

LN2, LN3, LN4, LN43 = math.log(2), math.log(3), math.log(4), math.log(4 / 3)

SCHEMA = Schema((FeatureSpec("item_id", "string", (), "id"),
                 FeatureSpec("price", "float", (), "extra")))
FEATURES = from_mapping(FeaturesConfig, {"ids": [{"name": "item_id", "buckets": 7, "dim": 2}],
                                         "numerics": [{"name": "price"}]}, "features")
X = {"item_id": np.array([b"a", b"b", b"c"]), "price": np.array([1.0, 2.0, 3.0], np.float32)}


def _model(method, net=None, options=None, **biases):
    """A tiny model whose named heads output the constant sigmoid(bias)."""
    model = DelayedFeedbackModel(FEATURES, SCHEMA, method, net=net, hidden_units=[4],
                                 aux_units=[3], **(options or {}))
    model(X)
    for head, bias in biases.items():
        layer = model.head_layer(head)
        layer.kernel.assign(tf.zeros_like(layer.kernel))
        layer.bias.assign([bias])
    return model


def _loss(model, kind, **fields):
    batch = {**X, **{k: np.array(v) for k, v in fields.items()}}
    return float(model.batch_loss(kind, batch, model(X)))


# ----------------------------------------------------------------------------------- heads
@pytest.mark.parametrize("method,net,outputs", [
    ("vanilla", None, {"logits", CVR}),
    ("fnc", None, {"logits", CVR}),
    ("es_dfm", None, {"logits", "dp_logits", "rn_logits", CVR}),
    ("defer", None, {"logits", "dp_logits", CVR}),
    ("defuse", None, {"logits", "dp_logits", "rn_logits", CVR}),
    ("bi_defuse", None, {"in_window_logits", "out_window_logits", CVR}),
    ("defer", "cascade", {"logits", "dp_logits", "refund_logits", CVR, REFUND, NET}),
    ("defer", "direct", {"logits", "dp_logits", "net_logits", CVR, NET}),
    ("vanilla", "importance_sampling", {"logits", "dp_logits", "dr_logits", "net_logits",
                                        CVR, NET}),
])
def test_each_method_has_the_heads_its_losses_need(method, net, outputs):
    out = _model(method, net)(X)
    assert set(out) == outputs
    assert all(v.shape == (3,) and v.dtype == tf.float32 for v in out.values())


def test_batch_kinds_put_the_auxiliary_rows_before_the_stream():
    assert _model("vanilla").batch_kinds == (STREAM,)
    assert _model("es_dfm").batch_kinds == (MATURED_CLICKS, STREAM)
    assert _model("defer", "cascade").batch_kinds == (MATURED_CLICKS, MATURED_CONVERSIONS,
                                                      STREAM)
    assert _model("oracle", "importance_sampling").batch_kinds == (
        MATURED_CLICKS, MATURED_CONVERSIONS, STREAM, NET_STREAM)


def test_predictions_calibrate_fnc_and_add_the_bi_defuse_heads():
    # FNC: q = sigmoid(ln 1/3) = 1/4 -> p = q / (1 - q) = exp(z) = 1/3.
    fnc = _model("fnc", logits=math.log(1 / 3))(X)[CVR].numpy()
    np.testing.assert_allclose(fnc, [1 / 3] * 3, rtol=1e-6)
    # Bi-DEFUSE: f_in + f_out = 1/4 + 1/4; and 3/4 + 3/4 is clipped to 1.
    bi = _model("bi_defuse", in_window_logits=-LN3, out_window_logits=-LN3)(X)[CVR].numpy()
    np.testing.assert_allclose(bi, [0.5] * 3, rtol=1e-6)
    bi = _model("bi_defuse", in_window_logits=LN3, out_window_logits=LN3)(X)[CVR].numpy()
    np.testing.assert_allclose(bi, [1.0] * 3)
    # Cascade: pNet = pCVR (1 - pRefund) = 3/4 * 1/2.
    cascade = _model("vanilla", "cascade", logits=LN3, refund_logits=0.0)(X)
    np.testing.assert_allclose(cascade[NET].numpy(), [0.375] * 3, rtol=1e-6)
    np.testing.assert_allclose(cascade[REFUND].numpy(), [0.5] * 3, rtol=1e-6)


# ---------------------------------------------------------------------------- golden losses
def test_es_dfm_stream_loss_golden():
    # f = 3/4, f_dp = 1/4, f_rn = 1/2: w+ = 1 + f_dp = 5/4, w- = (1 + f_dp) f_rn = 5/8.
    model = _model("es_dfm", logits=LN3, dp_logits=-LN3, rn_logits=0.0)
    got = _loss(model, STREAM, label=[1, 0, 0], delayed_positive=[0, 0, 0],
                is_duplicate=[0, 0, 0])
    assert got == pytest.approx((1.25 * LN43 + 2 * 0.625 * LN4) / 3, rel=1e-6)


def test_defer_stream_loss_golden_and_train_batch_returns_it():
    # p = 3/4, f_dp = 1/4: w+ = p / (p - f_dp/2) = 0.75 / 0.625 = 6/5,
    # w- = (1 - p) / (1 - p + f_dp/2) = 0.25 / 0.375 = 2/3.
    model = _model("defer", logits=LN3, dp_logits=-LN3)
    fields = {"label": [1, 0, 1], "delayed_positive": [0, 0, 1], "is_duplicate": [0, 0, 1]}
    want = (1.2 * LN43 + (2 / 3) * LN4 + 1.2 * LN43) / 3
    assert _loss(model, STREAM, **fields) == pytest.approx(want, rel=1e-6)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.1))
    batch = {**X, **{k: np.array(v) for k, v in fields.items()}}
    # The step reports the loss before its update, then moves the CVR head.
    assert model.train_batch(STREAM, batch) == pytest.approx(want, rel=1e-6)
    assert _loss(model, STREAM, **fields) != pytest.approx(want, rel=1e-3)


def test_bi_defuse_stream_loss_golden():
    # f_in = 3/4, f_out = 1/4. First copy, label 1: in-window ln 4/3, plus the out-window
    # coefficients (f_out^2, (1 - f_out)(1 + f_out)) = (1/16, 15/16) on (ln 4, ln 4/3).
    # Delayed-positive duplicate: no in-window term, out-window 1 * ln 4.
    model = _model("bi_defuse", in_window_logits=LN3, out_window_logits=-LN3)
    got = _loss(model, STREAM, label=[1, 1, 1], is_duplicate=[0, 1, 1],
                delayed_positive=[0, 1, 1])
    first = LN43 + LN4 / 16 + 15 * LN43 / 16
    assert got == pytest.approx((first + 2 * LN4) / 3, rel=1e-6)


def test_pretrain_losses_golden():
    # Plain cross-entropy on the labels observed at t0 (f = 3/4).
    assert _loss(_model("vanilla", logits=LN3), PRETRAIN, label=[1, 0, 0]) == pytest.approx(
        (LN43 + 2 * LN4) / 3, rel=1e-6)
    # FNC: a negative copy of every click plus a positive copy of a converted one (f = 1/2).
    assert _loss(_model("fnc", logits=0.0), PRETRAIN, label=[1, 0, 0]) == pytest.approx(
        4 * LN2 / 3, rel=1e-6)
    # Bi-DEFUSE: f_in on in_window, f_out on label * (1 - in_window); both heads at 1/2.
    bi = _model("bi_defuse", in_window_logits=0.0, out_window_logits=0.0)
    assert _loss(bi, PRETRAIN, label=[1, 1, 0], in_window=[1, 0, 0]) == pytest.approx(
        2 * LN2, rel=1e-6)
    # A net head adds its cross-entropy on net_label (f_net = 1/4, f = 3/4).
    direct = _model("vanilla", "direct", logits=LN3, net_logits=-LN3)
    assert _loss(direct, PRETRAIN, label=[1, 1, 0], net_label=[1, 0, 0]) == pytest.approx(
        (2 * LN43 + LN4) / 3 + (LN4 + 2 * LN43) / 3, rel=1e-6)


def test_matured_clicks_train_the_delay_heads_golden():
    # f_dp = 1/4, f_rn = 1/2. dp labels label * (1 - in_window) = [1, 0, 0] over all rows;
    # rn labels 1 - label over the rows observed negative at the window (in_window = 0).
    model = _model("es_dfm", dp_logits=-LN3, rn_logits=0.0)
    got = _loss(model, MATURED_CLICKS, label=[1, 0, 1], in_window=[0, 0, 1])
    assert got == pytest.approx((LN4 + 2 * LN43) / 3 + LN2, rel=1e-6)


def test_matured_conversions_train_the_refund_head_golden():
    # Refund head at 1/4: refunded rows ln 4, the others ln 4/3; the same value as the
    # library's refund_given_conversion_loss over converted rows.
    model = _model("defer", "cascade", refund_logits=-LN3)
    got = _loss(model, MATURED_CONVERSIONS, refund_label=[1, 0, 0], delayed_refund=[1, 0, 0])
    assert got == pytest.approx((LN4 + 2 * LN43) / 3, rel=1e-6)
    library = refund_given_conversion_loss([1, 0, 0], model(X)["refund_logits"], [1, 1, 1])
    assert got == pytest.approx(float(library), rel=1e-6)
    # Refunds weighted by k = 3: 3 ln 4 on the refunded row.
    weighted = _model("defer", "cascade", {"refund_positive_weight": 3.0}, refund_logits=-LN3)
    got = _loss(weighted, MATURED_CONVERSIONS, refund_label=[1, 0, 0], delayed_refund=[0, 0, 0])
    assert got == pytest.approx((3 * LN4 + 2 * LN43) / 3, rel=1e-6)


def test_refund_prior_correction_divides_the_odds_by_k():
    # Logit 0 (odds 1) with k = 3: corrected odds 1/3, pRefund = 1/4; pNet = 3/4 * (1 - 1/4).
    options = {"refund_positive_weight": 3.0, "refund_prior_correction": True}
    out = _model("vanilla", "cascade", options, logits=LN3, refund_logits=0.0)(X)
    np.testing.assert_allclose(out[REFUND].numpy(), [0.25] * 3, rtol=1e-6)
    np.testing.assert_allclose(out[NET].numpy(), [0.5625] * 3, rtol=1e-6)
    # The re-weighted head's loss is minimized at odds k r / (1 - r): its prior starts there.
    model = _model("vanilla", "cascade", options)
    rates = model.prior_rates({PRETRAIN: {sf.LABEL: [1, 0]},
                               MATURED_CONVERSIONS: {REFUND_LABEL: [1, 0, 0, 0, 0, 0, 0, 0]}})
    assert rates["refund_logits"] == pytest.approx(3 * 0.125 / (3 * 0.125 + 0.875))
    model.set_output_biases(rates)  # r = 1/8 once corrected: odds 3/7 / 3 = 1/7
    np.testing.assert_allclose(model(X)[REFUND].numpy(), [0.125] * 3, rtol=1e-5)


def test_net_stream_losses_golden():
    # Direct: plain cross-entropy of the net head (1/2): ln 2 per row.
    direct = _model("defer", "direct", net_logits=0.0)
    assert _loss(direct, NET_STREAM, label=[1, 0, 0]) == pytest.approx(LN2, rel=1e-6)
    # Importance sampling: p = 1/2, P_dp = f_dp = 1/4, P_dr = pCVR * f_dr = 3/4 * 1/2.
    # q+ = p + (2 P_dr - P_dp) / 3 = 1/2 + 1/6 -> w+ = 3/4; q- = 1/2 - 1/6 -> w- = 3/2.
    model = _model("defer", "importance_sampling", net_logits=0.0, dp_logits=-LN3,
                   logits=LN3, dr_logits=0.0)
    assert _loss(model, NET_STREAM, label=[1, 0, 0]) == pytest.approx(
        (0.75 * LN2 + 2 * 1.5 * LN2) / 3, rel=1e-6)


# ------------------------------------------------------------------------------------ priors
def test_prior_rates_and_set_output_biases_start_each_head_at_its_rate():
    model = _model("es_dfm", "cascade")
    rates = model.prior_rates({
        PRETRAIN: {sf.LABEL: [1, 0, 0, 0], sf.IN_WINDOW: [1, 0, 0, 0], NET_LABEL: [1, 0, 0, 0],
                   "item_id": ["ignored"] * 4},
        MATURED_CLICKS: {sf.LABEL: [1, 1, 0, 0, 0], sf.IN_WINDOW: [1, 0, 0, 0, 0]},
        MATURED_CONVERSIONS: {REFUND_LABEL: [1, 0, 0, 0, 0, 0, 0, 0],
                              sf.DELAYED_REFUND: [1, 0, 0, 0, 0, 0, 0, 0]},
    })
    # dp: 1 delayed positive of 5 matured clicks; rn: 3 real of 4 observed negatives.
    assert rates == pytest.approx({"logits": 0.25, "dp_logits": 0.2, "rn_logits": 0.75,
                                   "refund_logits": 0.125})
    model.set_output_biases(rates)
    out = model(X)
    np.testing.assert_allclose(out[CVR].numpy(), [0.25] * 3, rtol=1e-5)
    np.testing.assert_allclose(out[REFUND].numpy(), [0.125] * 3, rtol=1e-5)
    np.testing.assert_allclose(tf.sigmoid(out["rn_logits"]).numpy(), [0.75] * 3, rtol=1e-5)
    # FNC's head learns its stream's positive share m / (1 + m); Bi-DEFUSE splits the rate.
    assert _model("fnc").prior_rates({PRETRAIN: {sf.LABEL: [1, 0, 0, 0]}}) == pytest.approx(
        {"logits": 0.2})
    assert _model("bi_defuse").prior_rates(
        {PRETRAIN: {sf.LABEL: [1, 1, 0, 0], sf.IN_WINDOW: [1, 0, 0, 0]}}) == pytest.approx(
        {"in_window_logits": 0.25, "out_window_logits": 0.25})
    with pytest.raises(ValueError, match=r"rate of head 'logits' must be in \[0, 1\], got 1.5"):
        model.set_output_biases({"logits": 1.5})


# -------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs,words", [
    ({"method": "esdfm"}, "method must be one of .* got 'esdfm'"),
    ({"method": "defer", "net": "both"}, "net must be one of .* got 'both'"),
    ({"method": "defer", "hidden_units": [0]}, r"hidden_units .* got \[0\]"),
    ({"method": "defer", "aux_units": "32"}, "aux_units .* got '32'"),
    ({"method": "defer", "net": "cascade", "refund_positive_weight": 0.5},
     "refund_positive_weight must be a finite number >= 1, got 0.5"),
    ({"method": "defer", "net": "direct", "refund_positive_weight": 2.0},
     "need net='cascade' .* got net='direct'"),
    ({"method": "defer", "net": "cascade", "refund_prior_correction": 1},
     "refund_prior_correction must be a bool, got 1"),
])
def test_bad_arguments_name_the_value(kwargs, words):
    with pytest.raises(ValueError, match=words):
        DelayedFeedbackModel(FEATURES, SCHEMA, **kwargs)


def test_id_biases_are_refused_by_name():
    features = dataclasses.replace(FEATURES, biases=[BiasFeature("item_id", 7)])
    with pytest.raises(ValueError, match=r"features\.biases is not supported .* \['item_id'\]"):
        DelayedFeedbackModel(features, SCHEMA, "defer")


def test_bad_batches_name_the_kind_and_the_field():
    model = _model("es_dfm")
    with pytest.raises(ValueError, match="kind must be one of .* got 'net_stream'"):
        model.batch_loss(NET_STREAM, X, model(X))
    with pytest.raises(ValueError, match=r"label must be 0 or 1, got \[2.0\]"):
        _loss(model, STREAM, label=[1, 2, 0], delayed_positive=[0, 0, 0],
              is_duplicate=[0, 0, 0])
    with pytest.raises(ValueError, match="compile"):
        model.train_batch(STREAM, X)


@pytest.mark.parametrize("method,net", [(m, None) for m in METHODS]
                         + [("bi_defuse", n) for n in NET_MODES])
def test_each_batch_kind_trains_one_step_in_graph_mode(method, net):
    model = _model(method, net)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    batch = {**X, sf.LABEL: np.array([1, 0, 1]), sf.IN_WINDOW: np.array([1, 0, 0]),
             sf.DELAYED_POSITIVE: np.array([0, 0, 1]), sf.IS_DUPLICATE: np.array([0, 0, 1]),
             NET_LABEL: np.array([1, 0, 0]), REFUND_LABEL: np.array([0, 1, 0]),
             sf.DELAYED_REFUND: np.array([0, 1, 0])}
    before = [w.copy() for w in model.get_weights()]
    for kind in (PRETRAIN,) + model.batch_kinds:
        assert np.isfinite(model.train_batch(kind, batch)), kind
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


# ----------------------------------------------------------------------------- serialization
def test_config_and_savedmodel_round_trip(tmp_path):
    options = {"refund_positive_weight": 4.0, "refund_prior_correction": True}
    model = _model("es_dfm", "cascade", options, logits=0.3, refund_logits=-1.0)
    expected = {k: v.numpy() for k, v in model(X).items()}
    config = model.get_config()
    assert config["method"] == "es_dfm" and config["net"] == "cascade"
    assert config["refund_positive_weight"] == 4.0 and config["refund_prior_correction"]
    clone = DelayedFeedbackModel.from_config(config)
    assert clone.get_config() == config
    clone(X)
    clone.set_weights(model.get_weights())
    for name, value in clone(X).items():
        np.testing.assert_allclose(value.numpy(), expected[name], rtol=1e-6)
    path = str(tmp_path / "model")
    model.save(path, save_format="tf")
    restored = tf.keras.models.load_model(path)
    for name, value in restored(X).items():
        np.testing.assert_allclose(value.numpy(), expected[name], rtol=1e-6)
