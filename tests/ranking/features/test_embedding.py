"""FeatureEmbedding: hashing, masked pooling with shared tables, crosses, numerics, domains."""
import dataclasses
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.config import ConfigError, DomainConfig, FeaturesConfig, NumericFeature
from ranking.data.schema import FeatureSpec, Schema, SchemaError
from ranking.features.embedding import FeatureEmbedding
from ranking.utils.typed_config import from_mapping

L = 3
SCHEMA = Schema((
    FeatureSpec("user_id", "string", (), "id"),
    FeatureSpec("item_id", "string", (), "id"),
    FeatureSpec("domain", "string", (), "domain"),
    FeatureSpec("seq_item_ids", "string", (L,), "sequence"),
    FeatureSpec("last_click_item_id", "string", (), "sequence"),
    FeatureSpec("cross_x", "int64", (L,), "cross", buckets=5),
    FeatureSpec("price", "float", (), "extra"),
    FeatureSpec("discount", "float", (), "extra"),
    FeatureSpec("seq_length", "int64", (), "sequence"),
    FeatureSpec("click", "int64", (), "label"),
    FeatureSpec("p_click", "float", (), "truth"),
), observe_at=100, sequence_length=L)

FEATURES = from_mapping(FeaturesConfig, {
    "ids": [{"name": "user_id", "buckets": 7, "dim": 3},
            {"name": "item_id", "buckets": 11, "dim": 2}],
    "sequences": [{"name": "seq_item_ids", "share_embedding_with": "item_id", "pooling": "mean"},
                  {"name": "last_click_item_id", "share_embedding_with": "item_id"}],
    "crosses": [{"name": "cross_x", "dim": 2, "pooling": "mean"}],
    "numerics": [{"name": "price", "transform": "log1p", "fill": 1.0},
                 {"name": "discount", "transform": "none", "fill": 0.25},
                 {"name": "seq_length", "transform": "log1p"}],
}, "features")
DOMAIN = DomainConfig(feature="domain", vocabulary=["US|home", "BR|cart"])

INPUTS = {
    "user_id": tf.constant(["u1", "u2", "u3", "u1"]),
    "item_id": tf.constant(["p1", "p2", "p3", "p9"]),
    "domain": tf.constant(["BR|cart", "XX|home", "US|home", ""]),
    "seq_item_ids": tf.constant([["p1", "p2", ""], ["", "", ""], ["p3", "p3", "p7"],
                                 ["p5", "", ""]]),
    "last_click_item_id": tf.constant(["p1", "", "p3", "p5"]),
    "cross_x": tf.constant([[0, 3, -1], [-1, -1, -1], [4, 4, 1], [2, 9, -1]], tf.int64),
    "price": tf.constant([float("nan"), 0.0, 3.0, -2.0]),
    "discount": tf.constant([0.5, float("nan"), 0.0, 2.0]),
    "seq_length": tf.constant([2, 0, 3, 1], tf.int64),
    "click": tf.constant([1, 0, 0, 1], tf.int64),  # ignored: not a configured feature
}


def _hash(values, buckets):
    return tf.strings.to_hash_bucket_fast(values, buckets).numpy()


def _layer(features=FEATURES, domain=DOMAIN, **kwargs):
    layer = FeatureEmbedding(features, SCHEMA, domain, **kwargs)
    layer.build(None)
    # hand-set tables: row r of a table of width d is [r + 1, 10 (r + 1), 100 (r + 1)][:d]
    for table in layer.tables.values():
        rows, dim = table.shape
        table.assign(np.arange(1, rows + 1, dtype=np.float32)[:, None]
                     * np.array([1.0, 10.0, 100.0][:dim], np.float32))
    return layer


def _row(buckets_id, dim):
    return (buckets_id + 1) * np.array([1.0, 10.0, 100.0][:dim], np.float32)


def test_hashed_ids_equal_to_hash_bucket_fast():
    out = _layer()(INPUTS)
    user = out["embeddings"]["user_id"].numpy()
    for r, u in enumerate(["u1", "u2", "u3", "u1"]):
        np.testing.assert_allclose(user[r], _row(_hash([u], 7)[0], 3))
    item = out["embeddings"]["item_id"].numpy()
    np.testing.assert_allclose(item, [_row(h, 2) for h in _hash(["p1", "p2", "p3", "p9"], 11)])


def test_masked_mean_pooling_shared_table_golden():
    layer = _layer()
    out = layer(INPUTS)
    seq = out["embeddings"]["seq_item_ids"].numpy()
    h = {s: _hash([s], 11)[0] for s in ("p1", "p2", "p3", "p5", "p7")}
    expected = np.stack([
        (_row(h["p1"], 2) + _row(h["p2"], 2)) / 2,           # pad "" ignored
        np.zeros(2),                                           # all pads -> zeros
        (2 * _row(h["p3"], 2) + _row(h["p7"], 2)) / 3,
        _row(h["p5"], 2),
    ])
    np.testing.assert_allclose(seq, expected, rtol=1e-6)
    # a hard-coded golden value for row 0, independent of the helper
    r1, r2 = h["p1"] + 1, h["p2"] + 1
    np.testing.assert_allclose(seq[0], [(r1 + r2) / 2, 10 * (r1 + r2) / 2], rtol=1e-6)
    # a scalar string feature is a sequence of one: "" -> zeros
    last = out["embeddings"]["last_click_item_id"].numpy()
    np.testing.assert_allclose(last, [_row(h["p1"], 2), np.zeros(2), _row(h["p3"], 2),
                                      _row(h["p5"], 2)])
    # the sequences have no table of their own: the item table is shared
    assert sorted(w.name.split("/")[-1].split(":")[0] for w in layer.trainable_weights) == [
        "cross_x_embedding", "item_id_embedding", "user_id_embedding"]
    assert layer.embedding_table("seq_item_ids") is layer.embedding_table("item_id")


def test_sum_pooling_and_gradient_reaches_shared_rows():
    features = from_mapping(FeaturesConfig, {
        "ids": [{"name": "item_id", "buckets": 11, "dim": 2}],
        "sequences": [{"name": "seq_item_ids", "share_embedding_with": "item_id",
                       "pooling": "sum"}]}, "features")
    layer = _layer(features, DomainConfig())
    with tf.GradientTape() as tape:
        out = layer(INPUTS)
        loss = tf.reduce_sum(out["embeddings"]["seq_item_ids"])
    h = {s: _hash([s], 11)[0] for s in ("p1", "p2", "p3", "p5", "p7")}
    np.testing.assert_allclose(out["embeddings"]["seq_item_ids"].numpy()[2],
                               2 * _row(h["p3"], 2) + _row(h["p7"], 2))
    grad = tf.convert_to_tensor(tape.gradient(loss, layer.embedding_table("item_id"))).numpy()
    counts = np.zeros(11)
    for s in ("p1", "p2", "p3", "p3", "p7", "p5"):  # non-pad entries only
        counts[h[s]] += 1
    np.testing.assert_allclose(grad[:, 0], counts)


def test_crosses_mask_pads_and_out_of_range():
    out = _layer()(INPUTS)
    cross = out["embeddings"]["cross_x"].numpy()
    np.testing.assert_allclose(cross, [
        (_row(0, 2) + _row(3, 2)) / 2, np.zeros(2), (2 * _row(4, 2) + _row(1, 2)) / 3,
        _row(2, 2),  # id 9 >= 5 buckets is masked like a pad
    ], rtol=1e-6)


def test_numerics_nan_fill_and_log1p():
    out = _layer()(INPUTS)
    num = out["numerics"].numpy()
    np.testing.assert_allclose(num[:, 0], [math.log1p(1.0), 0.0, math.log1p(3.0),
                                           -math.log1p(2.0)], rtol=1e-6)
    np.testing.assert_allclose(num[:, 1], [0.5, 0.25, 0.0, 2.0])
    np.testing.assert_allclose(num[:, 2], np.log1p([2, 0, 3, 1]), rtol=1e-6)
    assert not np.isnan(out["dense"].numpy()).any()


def test_numerics_log_takes_nan_and_non_positive_as_missing():
    features = dataclasses.replace(FEATURES, numerics=[
        NumericFeature("discount", transform="log", fill=0.125)])
    num = _layer(features)(INPUTS)["numerics"].numpy()
    # discount [0.5, NaN, 0.0, 2.0]: NaN and 0 take the fill before the log
    np.testing.assert_allclose(num[:, 0], np.log([0.5, 0.125, 0.125, 2.0]), rtol=1e-6)


@pytest.mark.parametrize("fill", [0.0, -1.0])
def test_numerics_log_needs_a_positive_fill(fill):
    with pytest.raises(ConfigError, match=rf"numerics\['discount'\]\.fill must be > 0 .*{fill}"):
        NumericFeature("discount", transform="log", fill=fill)


def test_domain_index_unknown_is_zero():
    out = _layer()(INPUTS)
    assert out["domain_index"].dtype == tf.int32
    assert out["domain_index"].numpy().tolist() == [2, 0, 1, 0]
    no_vocab = _layer(domain=DomainConfig())(INPUTS)
    assert no_vocab["domain_index"].numpy().tolist() == [0, 0, 0, 0]


def test_dense_is_concat_in_config_order():
    layer = _layer()
    out = layer(INPUTS)
    e = out["embeddings"]
    expected = np.concatenate([e[n].numpy() for n in (
        "user_id", "item_id", "seq_item_ids", "last_click_item_id", "cross_x")]
        + [out["numerics"].numpy()], axis=1)
    np.testing.assert_allclose(out["dense"].numpy(), expected)
    assert layer.output_dim == 3 + 2 + 2 + 2 + 2 + 3 == out["dense"].shape[1]


def test_without_crosses_drops_them():
    layer = _layer(FEATURES.without("crosses"))
    inputs = {k: v for k, v in INPUTS.items() if k != "cross_x"}  # not needed any more
    out = layer(inputs)
    assert "cross_x" not in out["embeddings"]
    assert out["dense"].shape == (4, layer.output_dim) and layer.output_dim == 3 + 2 + 2 + 2 + 3
    full = _layer()(INPUTS)
    np.testing.assert_allclose(out["dense"].numpy()[:, :9], full["dense"].numpy()[:, :9])


def test_scalar_inputs_as_column_vectors_and_graph_mode():
    layer = _layer()
    columns = {k: (tf.reshape(v, [-1, 1]) if v.shape.rank == 1 else v)
               for k, v in INPUTS.items()}
    eager = layer(INPUTS)
    graph = tf.function(layer)(columns)
    np.testing.assert_allclose(graph["dense"].numpy(), eager["dense"].numpy())
    assert graph["domain_index"].numpy().tolist() == [2, 0, 1, 0]


def test_get_config_round_trip():
    layer = _layer(name="features")
    config = layer.get_config()
    json.dumps(config)  # plain data
    clone = FeatureEmbedding.from_config(config)
    assert clone.features_config == FEATURES and clone.domain_config == DOMAIN
    assert clone.schema == SCHEMA and clone.name == "features"
    assert clone.output_dim == layer.output_dim
    clone.build(None)
    for name in ("user_id", "item_id", "cross_x"):
        clone.embedding_table(name).assign(layer.embedding_table(name))
    np.testing.assert_allclose(clone(INPUTS)["dense"].numpy(), layer(INPUTS)["dense"].numpy())


def test_tables_are_initialised_differently():
    layer = FeatureEmbedding(FEATURES, SCHEMA, DOMAIN)
    layer.build(None)
    a = layer.embedding_table("user_id").numpy()[:5, :2]
    b = layer.embedding_table("item_id").numpy()[:5, :2]
    assert not np.allclose(a, b) and np.abs(a).max() <= 0.05


def test_mixed_precision_outputs_float16():
    layer = FeatureEmbedding(FEATURES, SCHEMA, DOMAIN,
                             dtype=tf.keras.mixed_precision.Policy("mixed_float16"))
    out = layer(INPUTS)
    assert out["dense"].dtype == tf.float16 and out["embeddings"]["item_id"].dtype == tf.float16
    assert layer.embedding_table("item_id").dtype == tf.float32


def test_constructor_validates_against_schema():
    bad = from_mapping(FeaturesConfig, {"ids": [{"name": "shop_id", "buckets": 3}]}, "features")
    with pytest.raises(SchemaError, match=r"features\.ids\[0\]: feature 'shop_id' is not in "
                                          r"the schema"):
        FeatureEmbedding(bad, SCHEMA)
    leak = from_mapping(FeaturesConfig, {"numerics": [{"name": "p_click"}]}, "features")
    with pytest.raises(SchemaError, match=r"feature 'p_click' has role 'truth'"):
        FeatureEmbedding(leak, SCHEMA)
    with pytest.raises(SchemaError, match=r"domain\.feature: feature 'region'"):
        FeatureEmbedding(FEATURES, SCHEMA, DomainConfig(feature="region", vocabulary=["a"]))
    with pytest.raises(TypeError, match="schema must be a Schema"):
        FeatureEmbedding(FEATURES, ["not a schema"])


def test_integer_encoding_uses_the_value_as_the_row():
    """encoding: integer: "3" -> row 3, no hashing; "" and out-of-range rows embed to zeros,
    also inside pooled sequences (the mean is over the valid entries only)."""
    features = from_mapping(FeaturesConfig, {
        "ids": [{"name": "item_id", "buckets": 11, "dim": 2, "encoding": "integer"}],
        "sequences": [{"name": "seq_item_ids", "share_embedding_with": "item_id",
                       "pooling": "mean"}]}, "features")
    layer = _layer(features, DomainConfig())
    out = layer({"item_id": tf.constant(["3", "0", "", "11"]),
                 "seq_item_ids": tf.constant([["1", "5", ""], ["", "", ""], ["10", "-1", "2"],
                                              ["4", "4", "99"]])})
    # row r holds [r + 1, 10 (r + 1)]
    np.testing.assert_allclose(out["embeddings"]["item_id"].numpy(),
                               [[4, 40], [1, 10], [0, 0], [0, 0]])
    np.testing.assert_allclose(out["embeddings"]["seq_item_ids"].numpy(),
                               [[4, 40], [0, 0], [(11 + 3) / 2, (110 + 30) / 2], [5, 50]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="abc"):
        layer({"item_id": tf.constant(["abc"]), "seq_item_ids": tf.constant([["1", "", ""]])})
    with pytest.raises(Exception, match=r"features\.ids\[0\]\.encoding: 'vocab' is not one of \['hash', 'integer'\]"):
        from_mapping(FeaturesConfig, {"ids": [{"name": "x", "buckets": 3,
                                               "encoding": "vocab"}]}, "features")


def test_match_counts_golden():
    """matches: the count of non-"" sequence entries equal to the target, log1p or raw,
    appended after the numerics."""
    features = from_mapping(FeaturesConfig, {
        "ids": [{"name": "item_id", "buckets": 11, "dim": 2}],
        "numerics": [{"name": "price", "transform": "none"}],
        "matches": [{"sequence": "seq_item_ids", "target": "item_id"},
                    {"sequence": "last_click_item_id", "target": "item_id",
                     "transform": "none"},
                    {"sequence": "seq_item_ids", "target": "item_id", "transform": "none",
                     "length": 1}]}, "features")
    assert features.input_names == ["item_id", "price", "seq_item_ids", "last_click_item_id"]
    assert [m.name for m in features.matches] == ["match_seq_item_ids_item_id",
                                                 "match_last_click_item_id_item_id",
                                                 "match_seq_item_ids_item_id_1"]
    layer = _layer(features, DomainConfig())
    out = layer(INPUTS)
    # item_id p1 p2 p3 p9; seq [p1 p2 ""] [""...] [p3 p3 p7] [p5 "" ""]; last p1 "" p3 p5
    # the last column counts the first entry only: p3 vs [p3] in row 2, p1 vs [p1] in row 0
    np.testing.assert_allclose(out["numerics"].numpy(), [
        [0.0, math.log(2), 1, 1], [0.0, 0.0, 0, 0], [3.0, math.log(3), 1, 1],
        [-2.0, 0.0, 0, 0]], rtol=1e-6)
    assert layer.output_dim == 2 + 4 == out["dense"].shape[1]
    empty_target = dict(INPUTS, item_id=tf.constant(["", "", "", ""]))
    assert np.all(layer(empty_target)["numerics"].numpy()[:, 1:] == 0)  # "" never matches
    with pytest.raises(SchemaError, match=r"features\.matches\[0\]\.sequence: feature 'nope'"):
        FeatureEmbedding(from_mapping(FeaturesConfig, {
            "matches": [{"sequence": "nope", "target": "item_id"}]}, "features"), SCHEMA,
            DomainConfig())


def test_embedding_init_options():
    """uniform(scale) stays inside [-scale, scale]; normal(scale) has stddev ~ scale."""
    base = {"ids": [{"name": "item_id", "buckets": 4000, "dim": 8}]}
    uniform = FeatureEmbedding(from_mapping(FeaturesConfig, dict(
        base, embedding_init_scale=0.01), "features"), SCHEMA, DomainConfig())
    uniform.build(None)
    table = uniform.tables["item_id"].numpy()
    assert np.abs(table).max() <= 0.01 and np.abs(table).max() > 0.009
    normal = FeatureEmbedding(from_mapping(FeaturesConfig, dict(
        base, embedding_init="normal", embedding_init_scale=1e-4), "features"), SCHEMA,
        DomainConfig())
    normal.build(None)
    std = normal.tables["item_id"].numpy().std()
    assert 0.95e-4 < std < 1.05e-4  # 32,000 draws: the sample stddev is within 1%
    with pytest.raises(Exception, match=r"features\.embedding_init_scale must be a finite "
                                        r"number > 0, got 0"):
        from_mapping(FeaturesConfig, dict(base, embedding_init_scale=0), "features")


def test_embedding_l2_is_a_layer_loss_over_every_table():
    features = from_mapping(FeaturesConfig, dict(
        ids=[{"name": "user_id", "buckets": 7, "dim": 3}],
        crosses=[{"name": "cross_x", "dim": 2}], embedding_l2=1e-3), "features")
    layer = _layer(features, DomainConfig())
    # hand-set rows: row r of width d is [r + 1, 10 (r + 1), 100 (r + 1)][:d]
    squares = sum(float(np.sum(t.numpy() ** 2)) for t in layer.tables.values())
    assert len(layer.losses) == 2
    np.testing.assert_allclose(float(tf.add_n(layer.losses)), 1e-3 * squares, rtol=1e-6)
    assert _layer(FEATURES).losses == []
