"""schema.json -> typed specs, parse specs, and the config check naming the bad feature."""
import dataclasses
import json
import math
import os

import pytest
import tensorflow as tf

from pipelines.config import SampleConfig, from_mapping
from pipelines.samples.example import encode, sample_schema, schema_json
from ranking.config import BiasFeature, load_experiment
from ranking.data.schema import (Schema, SchemaError, check_config, load_schema, parse_spec)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SAMPLE_CONFIG = from_mapping(SampleConfig, {
    "sequence": {"length": 5, "impression_length": 5},
    "crosses": {"item_buckets": 1000, "category_buckets": 100},
    "category_affinity": {"enabled": True},  # as configs/pipeline.yaml
    "extra_columns": [{"name": "device", "kind": "categorical"},
                      {"name": "price", "kind": "numeric"}]})
OBSERVE_AT = 1_767_830_400


@pytest.fixture
def schema_dir(tmp_path):
    specs = sample_schema(SAMPLE_CONFIG, with_truth=True)
    (tmp_path / "schema.json").write_text(schema_json(specs, SAMPLE_CONFIG, OBSERVE_AT))
    return tmp_path


@pytest.fixture
def experiment():
    return load_experiment(os.path.join(ROOT, "configs", "ple_esmm.yaml"))


def test_load_schema_from_dir_and_file(schema_dir):
    schema = load_schema(schema_dir)
    assert schema == load_schema(schema_dir / "schema.json")
    assert schema.observe_at == OBSERVE_AT and schema.sequence_length == 5
    pipeline_specs = sample_schema(SAMPLE_CONFIG, with_truth=True)
    assert schema.names == [s.name for s in pipeline_specs]
    cross = schema["cross_seq_item_x_item"]
    assert (cross.dtype, cross.shape, cross.role, cross.buckets) == ("int64", (5,), "cross", 1000)
    assert schema["price"].dtype == "float" and schema["price"].role == "extra"
    assert [f.name for f in schema.by_role("label")] == [
        "click", "conversion", "refund", "net_conversion"]
    assert Schema.from_json(schema.to_json()) == schema


def test_load_schema_errors(tmp_path):
    with pytest.raises(SchemaError, match="cannot read the schema"):
        load_schema(tmp_path)
    (tmp_path / "schema.json").write_text(json.dumps({"features": [{"name": "a", "dtype": "x"}]}))
    with pytest.raises(SchemaError, match=r"feature 'a': dtype 'x' is not one of"):
        load_schema(tmp_path)


def test_parse_spec_shapes_and_pads(schema_dir):
    schema = load_schema(schema_dir)
    spec = parse_spec(schema, ["seq_item_ids", "cross_seq_item_x_item", "price", "click", "ts",
                               "user_id"])
    assert spec["seq_item_ids"] == tf.io.FixedLenFeature((5,), tf.string, [""] * 5)
    assert spec["cross_seq_item_x_item"] == tf.io.FixedLenFeature((5,), tf.int64, [-1] * 5)
    assert spec["user_id"] == tf.io.FixedLenFeature((), tf.string, "")
    assert spec["price"].dtype == tf.float32 and math.isnan(spec["price"].default_value)
    # labels and time have no default: a sample without them fails to parse
    assert spec["click"] == tf.io.FixedLenFeature((), tf.int64)
    assert spec["ts"].default_value is None
    with pytest.raises(SchemaError, match=r"feature 'itemid' is not in the schema"):
        parse_spec(schema, ["user_id", "itemid"])


def test_parse_spec_parses_pipeline_examples(schema_dir):
    schema = load_schema(schema_dir)
    specs = sample_schema(SAMPLE_CONFIG, with_truth=True)
    sample = {s.name: ([0] * 5 if s.dtype == "int64" else [0.0] * 5 if s.dtype == "float"
                       else ["a"] * 5) if s.shape else
              (7 if s.dtype == "int64" else 1.5 if s.dtype == "float" else "x") for s in specs}
    sample["seq_item_ids"] = ["p1", "p2", "", "", ""]
    parsed = tf.io.parse_example([encode(sample, specs)], parse_spec(schema, schema.names))
    assert parsed["seq_item_ids"].numpy().tolist() == [[b"p1", b"p2", b"", b"", b""]]
    assert parsed["ts"].numpy().tolist() == [7] and parsed["price"].numpy().tolist() == [1.5]


def test_check_config_accepts_shipped_configs(schema_dir, experiment):
    schema = load_schema(schema_dir)
    for name in ("ple_esmm.yaml", "mmoe_esmm.yaml", "shared_bottom.yaml"):
        check_config(schema, load_experiment(os.path.join(ROOT, "configs", name)))


def _with(experiment, **features):
    return dataclasses.replace(
        experiment, features=dataclasses.replace(experiment.features, **features))


def test_check_config_names_missing_feature(schema_dir, experiment):
    schema = load_schema(schema_dir)
    crosses = [*experiment.features.crosses,
               dataclasses.replace(experiment.features.crosses[0], name="cross_user_x_item")]
    with pytest.raises(SchemaError, match=rf"features\.crosses\[{len(crosses) - 1}\]: feature "
                                          r"'cross_user_x_item' is not in the schema"):
        check_config(schema, _with(experiment, crosses=crosses))


def test_check_config_wrong_dtype_role_shape(schema_dir, experiment):
    schema = load_schema(schema_dir)
    f = experiment.features
    numerics = [*f.numerics, dataclasses.replace(f.numerics[0], name="impression_id")]
    with pytest.raises(SchemaError, match=rf"features\.numerics\[{len(numerics) - 1}\]: feature "
                                          r"'impression_id' has dtype "
                                          r"'string' in the schema, expected float or int64"):
        check_config(schema, _with(experiment, numerics=numerics))
    ids = [*f.ids, dataclasses.replace(f.ids[0], name="user_tier")]  # truth must not leak in
    with pytest.raises(SchemaError, match=rf"features\.ids\[{len(ids) - 1}\]: feature 'user_tier' has role "
                                          r"'truth'"):
        check_config(schema, _with(experiment, ids=ids))
    ids = [*f.ids, dataclasses.replace(f.ids[0], name="seq_item_ids")]
    with pytest.raises(SchemaError, match=rf"features\.ids\[{len(ids) - 1}\]: feature 'seq_item_ids' has "
                                          r"shape \[5\] in the schema, expected \[\]"):
        check_config(schema, _with(experiment, ids=ids, sequences=[]))


def test_check_config_checks_the_biases_ids(schema_dir, experiment):
    """A bias reads a scalar string id; a truth column or a count is refused by name."""
    schema = load_schema(schema_dir)
    for name, words in (("user_tier", r"has role 'truth'"),
                        ("imp_count", r"has dtype 'int64' in the schema, expected string"),
                        ("user", r"is not in the schema")):
        biases = [BiasFeature("item_id", 10), BiasFeature(name, 10)]
        with pytest.raises(SchemaError, match=rf"features\.biases\[1\]: feature '{name}' {words}"):
            check_config(schema, _with(experiment, biases=biases))


def test_check_config_labels_and_domain(schema_dir, experiment):
    schema = load_schema(schema_dir)
    tasks = [experiment.tasks[0], dataclasses.replace(experiment.tasks[1], label="purchase")]
    with pytest.raises(SchemaError, match=r"tasks\[1\]\.label: feature 'purchase' is not in "
                                          r"the schema"):
        check_config(schema, dataclasses.replace(experiment, tasks=tasks))
    domain = dataclasses.replace(experiment.domain, feature="region")
    with pytest.raises(SchemaError, match=r"domain\.feature: feature 'region' is not in"):
        check_config(schema, dataclasses.replace(experiment, domain=domain))
