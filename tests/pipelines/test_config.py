import pytest

from pipelines.config import ConfigError, SampleConfig, load_yaml


def test_shipped_config_loads():
    config = load_yaml(SampleConfig, "configs/pipeline.yaml")
    assert config.sequence.length == 20
    assert config.extra_pairs == (("device", "categorical"), ("price", "numeric"))


@pytest.mark.parametrize("text, words", [
    ("sequence: {lenght: 3}", "unknown key(s) ['lenght']"),
    ("sequence: {length: 0}", "sequence.length must be >= 1, got 0"),
    ("crosses: {item_buckets: many}", "crosses.item_buckets: expected int, got 'many'"),
    ("extra_columns: [{name: price, kind: money}]", "'money' is not one of"),
    ("extra_columns: [{name: ts, kind: numeric}]", "fixed schema columns"),
    ("input_format: xml", "input_format: 'xml' is not one of"),
])
def test_bad_config_names_key_and_value(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(SampleConfig, path)
    assert words in str(e.value)
    assert str(path) in str(e.value)
