"""tf.Example encoding of samples: split encodings concatenate into one Example."""
import tensorflow as tf

from pipelines.config import SampleConfig, SequenceConfig
from pipelines.samples import example as E

CONFIG = SampleConfig(sequence=SequenceConfig(length=3, impression_length=2))


def _sample():
    return {
        "impression_id": "imp1", "user_id": "u1", "item_id": "i9", "category_id": "c2",
        "country": "US", "scene": "home", "domain": "US|home", "ts": 1767225600,
        "seq_item_ids": ["i1", "i2", ""], "seq_category_ids": ["c1", "c2", ""],
        "seq_click_ts": [1767225500, 1767225400, -1], "seq_length": 2,
        "last_click_item_id": "i1", "last_click_category_id": "c1",
        "cross_seq_item_x_item": [5, 7, -1], "cross_seq_category_x_category": [1, 2, -1],
        "seq_imp_category_ids": ["c7", "c2"], "cross_imp_category_x_category": [3, 4],
        "imp_count": 9, "click_count": 2, "item_imp_count": 40, "item_click_count": 3,
        "item_imp_per_million": 250.0,
        "click": 1, "conversion": 0, "refund": 0, "net_conversion": 0,
        "click_ts": 1767225601, "pay_ts": -1, "refund_ts": -1, "observe_at": 1767300000,
    }


def _parse(serialized, specs):
    spec = {}
    for f in specs:
        dtype = {"string": tf.string, "int64": tf.int64, "float": tf.float32}[f.dtype]
        spec[f.name] = tf.io.FixedLenFeature(f.shape, dtype)
    parsed = tf.io.parse_example(tf.constant(serialized), spec)
    return {k: v.numpy().tolist() for k, v in parsed.items()}


def test_concatenated_feature_encodings_parse_as_one_example():
    specs = E.sample_schema(CONFIG)
    sample = _sample()
    seq = [f for f in specs if f.name in E.SEQUENCE_FEATURES]
    rest = [f for f in specs if f.name not in E.SEQUENCE_FEATURES]
    split = E.wrap_example(E.make_features_encoder(seq)(sample)
                           + E.make_features_encoder(rest)(sample))
    whole = E.encode(sample, specs)
    parsed_split, parsed_whole = _parse([split], specs), _parse([whole], specs)
    assert parsed_split == parsed_whole
    assert parsed_split["seq_item_ids"] == [[b"i1", b"i2", b""]]
    assert parsed_split["seq_click_ts"] == [[1767225500, 1767225400, -1]]
    assert parsed_split["cross_seq_item_x_item"] == [[5, 7, -1]]
    assert parsed_split["impression_id"] == [b"imp1"] and parsed_split["click"] == [1]
    assert parsed_split["seq_imp_category_ids"] == [[b"c7", b"c2"]]
    assert parsed_split["imp_count"] == [9] and parsed_split["click_count"] == [2]
    assert E.decode(split) == E.decode(whole)


def test_wrap_example_length_prefix_over_127_bytes():
    features = E.make_features_encoder(E.sample_schema(CONFIG))(_sample())
    assert len(features) > 300  # needs a two-byte varint length
    assert E.decode(E.wrap_example(features))["item_id"] == ["i9"]


def test_memoized_calls_once_per_key_and_forgets_at_the_bound():
    calls = []
    double = E.memoized(lambda x: calls.append(x) or 2 * x, max_entries=2)
    assert [double(1), double(1), double(2), double(1)] == [2, 2, 4, 2]
    assert calls == [1, 2]
    assert double(3) == 6 and double(1) == 2  # 3 clears the cache: 1 is computed again
    assert calls == [1, 2, 3, 1]


def test_group_encoder_equals_the_features_encoder():
    specs = [f for f in E.sample_schema(CONFIG) if f.name in ("country", "scene", "click_ts")]
    group = E.make_group_encoder(specs)
    values = ("US", "home", -1)
    expected = E.make_features_encoder(specs)(dict(zip(["country", "scene", "click_ts"], values)))
    assert group(values) == expected and group(("US", "home", -1)) == expected
    assert E.decode(E.wrap_example(group(("BR", "cart", 5)))) == {
        "country": ["BR"], "scene": ["cart"], "click_ts": [5]}
