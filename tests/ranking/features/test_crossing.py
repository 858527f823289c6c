import numpy as np
import pytest
import tensorflow as tf

from ranking.features.crossing import PAD_ID, cross_hash, cross_hash_numpy


def test_cross_hash_is_fingerprint_of_joined_string_and_pads():
    seq = np.array([["phone", "case", ""], ["", "", ""]], dtype=object)
    target = np.array(["charger", "phone"], dtype=object)
    got = cross_hash_numpy(seq, target, 997)
    expected = tf.strings.to_hash_bucket_fast(["phone\x1fcharger", "case\x1fcharger"], 997)
    assert got[0, :2].tolist() == expected.numpy().tolist()
    assert got[0, 2] == PAD_ID and got[1].tolist() == [PAD_ID] * 3


def test_graph_and_eager_agree():
    fn = tf.function(lambda s, t: cross_hash(s, t, 50),
                     input_signature=[tf.TensorSpec([None, 2], tf.string),
                                      tf.TensorSpec([None], tf.string)])
    seq = np.array([["a", "b"], ["c", ""]], dtype=object)
    target = np.array(["x", "y"], dtype=object)
    assert fn(seq, target).numpy().tolist() == cross_hash_numpy(seq, target, 50).tolist()


def test_rejects_bad_bucket_count():
    with pytest.raises(ValueError, match="num_buckets must be >= 1, got 0"):
        cross_hash(np.array([["a"]], dtype=object), np.array(["b"], dtype=object), 0)
