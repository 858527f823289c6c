"""IdBias: per-id logit offsets, hashed or integer rows, summed over ids; config round trips."""
import json

import numpy as np
import pytest
import tensorflow as tf

from ranking.config import BiasFeature, ConfigError
from ranking.features.id_bias import IdBias

FEATURES = [BiasFeature("user_id", 7), BiasFeature("item_id", 5, encoding="integer")]
INPUTS = {"user_id": tf.constant(["u1", "u2", "u1", ""]),
          "item_id": tf.constant(["3", "0", "9", ""]),  # "9": out of range, "": missing
          "other": tf.constant([1.0, 2.0, 3.0, 4.0])}


def _layer():
    layer = IdBias(FEATURES, outputs=2, name="id_bias")
    layer.build(None)
    layer.tables["user_id"].assign(np.arange(14, dtype=np.float32).reshape(7, 2) / 10)
    layer.tables["item_id"].assign(np.arange(10, dtype=np.float32).reshape(5, 2) * 100)
    return layer


def test_golden_sum_of_hashed_user_and_integer_item_rows():
    layer = _layer()
    u = tf.strings.to_hash_bucket_fast(["u1", "u2", ""], 7).numpy()
    user = {"u1": [2 * u[0] / 10, (2 * u[0] + 1) / 10], "u2": [2 * u[1] / 10, (2 * u[1] + 1) / 10],
            "": [2 * u[2] / 10, (2 * u[2] + 1) / 10]}
    expected = np.array([
        np.add(user["u1"], [600, 700]),   # item row 3
        np.add(user["u2"], [0, 100]),     # item row 0
        np.add(user["u1"], [0, 0]),       # item 9 >= 5 buckets: no bias
        np.add(user[""], [0, 0]),         # item "": no bias; a hashed "" is a row like any
    ], dtype=np.float32)
    out = layer(INPUTS)
    assert out.shape == (4, 2) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    # [batch, 1] inputs and graph mode give the same
    columns = {k: tf.reshape(v, [-1, 1]) for k, v in INPUTS.items()}
    np.testing.assert_allclose(tf.function(layer)(columns).numpy(), expected, rtol=1e-6)


def test_tables_start_at_zero_and_get_the_batch_centred_gradient():
    """Upstream gradient column 0: [1, 2, 3, 6] for the rows u1, u2, u1, "" (item ids 3, 0,
    invalid, invalid). User table: the mean over all 4 rows is 3, so the rows get
    -2, -1, 0, 3 and u1's row sums -2 + 0. Item table: the mean over the 2 valid rows is
    1.5, so row 3 gets -0.5, row 0 +0.5, and the invalid ids nothing."""
    layer = IdBias(FEATURES, outputs=2)
    upstream = tf.constant([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [6.0, 0.0]])
    with tf.GradientTape() as tape:
        out = layer(INPUTS)
        loss = tf.reduce_sum(out * upstream)
    assert np.all(out.numpy() == 0) and out.shape == (4, 2)
    grads = dict(zip(["user_id", "item_id"], tape.gradient(loss, layer.trainable_variables)))
    assert all(isinstance(g, tf.IndexedSlices) for g in grads.values())  # sparse SGD updates
    user = tf.convert_to_tensor(grads["user_id"]).numpy()
    u1, u2, empty = tf.strings.to_hash_bucket_fast(["u1", "u2", ""], 7).numpy()
    expected = np.zeros((7, 2))
    expected[u1, 0] += -2.0 + 0.0
    expected[u2, 0] += -1.0
    expected[empty, 0] += 3.0
    np.testing.assert_allclose(user, expected, atol=1e-6)
    item = tf.convert_to_tensor(grads["item_id"]).numpy()
    expected = np.zeros((5, 2))
    expected[3, 0], expected[0, 0] = -0.5, 0.5
    np.testing.assert_allclose(item, expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(features=[], outputs=1), r"non-empty list of BiasFeature, got \[\]"),
    (dict(features=["user_id"], outputs=1), r"non-empty list of BiasFeature, got \['user_id'\]"),
    (dict(features=FEATURES, outputs=0), r"outputs must be an int >= 1, got 0"),
    (dict(features=FEATURES, outputs=True), r"outputs must be an int >= 1, got True"),
])
def test_constructor_errors_quote_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IdBias(**kwargs)


def test_bad_feature_mapping_names_the_field():
    with pytest.raises(ConfigError, match=r"features\.biases\['user_id'\]\.buckets.*got 0"):
        IdBias([{"name": "user_id", "buckets": 0}], outputs=1)
    with pytest.raises(ConfigError, match=r"features\.biases\[0\].*dim"):
        IdBias([{"name": "user_id", "buckets": 3, "dim": 4}], outputs=1)


def test_get_config_round_trip():
    layer = _layer()
    config = layer.get_config()
    json.dumps(config)  # plain data
    clone = IdBias.from_config(config)
    assert clone.bias_features == FEATURES and clone.outputs == 2 and clone.name == "id_bias"
    clone.build(None)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(INPUTS).numpy(), layer(INPUTS).numpy())


def test_savedmodel_round_trip(tmp_path):
    inputs = {k: tf.keras.Input(shape=(), dtype=tf.string, name=k) for k in ("user_id", "item_id")}
    layer = _layer()
    model = tf.keras.Model(inputs, layer(inputs))
    feed = {k: INPUTS[k] for k in inputs}
    expected = model(feed).numpy()
    model.save(str(tmp_path / "m"), save_format="tf")
    restored = tf.keras.models.load_model(str(tmp_path / "m"))
    np.testing.assert_allclose(restored(feed).numpy(), expected, rtol=1e-6)
