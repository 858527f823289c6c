"""Raw request fields -> the model's features, in the graph: the real-time path of seed 000.

A scoring request carries what a serving system knows at request time: the user's context
(recent clicked items and categories, most recent first, country, scene, device, ...) and the
candidate items (id, category, price, ...). The sample builder derived the rest of each
sample's features from the same fields; this module derives them again, with the same
definitions, inside the exported graph, so no caller ever re-implements hashing:

* ``domain`` = ``country + "|" + scene``, an empty country or scene being ``"default"``
  (``pipelines.schema.raw_log.domain_of``);
* ``last_click_item_id`` / ``last_click_category_id`` = the first (most recent) entry of
  ``seq_item_ids`` / ``seq_category_ids`` (``""`` when the sequence is empty);
* ``seq_length`` = the number of non-``""`` entries of ``seq_item_ids``;
* ``cross_seq_item_x_item`` / ``cross_seq_category_x_category`` /
  ``cross_imp_category_x_category`` = :func:`ranking.features.crossing.cross_hash` of the
  click (or exposure) sequence with the target, into the schema's bucket counts, exactly as
  the pipeline computed them.

The exposure sequence ``seq_imp_category_ids`` and the counts ``imp_count`` / ``click_count``
are request fields as they are (the serving system keeps them per user).

The parity test feeds the raw fields of pipeline samples through this path and checks the
scores equal those of the pipeline's own tf.Examples.
"""
from __future__ import annotations

from typing import Callable, Mapping

import tensorflow as tf

from pipelines.schema.raw_log import DEFAULT_DOMAIN_VALUE, DOMAIN_SEPARATOR
from ranking.data.schema import Schema
from ranking.features.crossing import cross_hash

SEQUENCES = {"seq_item_ids": "item_id", "seq_category_ids": "category_id"}
CROSSES = {"cross_seq_item_x_item": ("seq_item_ids", "item_id"),
           "cross_seq_category_x_category": ("seq_category_ids", "category_id"),
           "cross_imp_category_x_category": ("seq_imp_category_ids", "category_id")}
LAST_CLICK = {"last_click_item_id": "seq_item_ids",
              "last_click_category_id": "seq_category_ids"}


def _or_default(values: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.equal(values, ""), DEFAULT_DOMAIN_VALUE, values)


def _derivations(schema: Schema) -> dict[str, tuple[tuple[str, ...], Callable]]:
    """Derived feature -> (the raw fields it needs, how to compute it from them)."""
    rules: dict[str, tuple[tuple[str, ...], Callable]] = {
        "domain": (("country", "scene"), lambda r: tf.strings.join(
            [_or_default(r["country"]), _or_default(r["scene"])], DOMAIN_SEPARATOR)),
        "seq_length": (("seq_item_ids",), lambda r: tf.reduce_sum(
            tf.cast(tf.not_equal(r["seq_item_ids"], ""), tf.int64), axis=1)),
    }
    for name, seq in LAST_CLICK.items():
        rules[name] = ((seq,), lambda r, seq=seq: r[seq][:, 0])
    for name, (seq, target) in CROSSES.items():
        if name in schema:
            buckets = int(schema[name].buckets)
            rules[name] = ((seq, target), lambda r, seq=seq, target=target, b=buckets:
                           cross_hash(r[seq], r[target], b))
    return rules


def raw_input_names(schema: Schema, feature_names) -> list[str]:
    """The raw fields a request must carry to compute ``feature_names``."""
    rules = _derivations(schema)
    names: list[str] = []
    for name in feature_names:
        for raw in (rules[name][0] if name in rules else (name,)):
            if raw not in names:
                names.append(raw)
    return names


def raw_input_signature(schema: Schema, feature_names) -> dict[str, tf.TensorSpec]:
    """``tf.TensorSpec`` per raw field: ``[batch]`` scalars, ``[batch, L]`` sequences."""
    specs = {}
    for name in raw_input_names(schema, feature_names):
        spec = schema[name]
        shape = [None, *spec.shape]
        specs[name] = tf.TensorSpec(shape, spec.tf_dtype, name=name)
    return specs


def derive_features(raw: Mapping[str, tf.Tensor], schema: Schema,
                    feature_names) -> dict[str, tf.Tensor]:
    """The model's ``feature_names`` from the raw request fields (see the module doc)."""
    rules = _derivations(schema)
    return {name: rules[name][1](raw) if name in rules else raw[name]
            for name in feature_names}
