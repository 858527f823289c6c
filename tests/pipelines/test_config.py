import pytest

from pipelines.config import ConfigError, SampleConfig, load_yaml


def test_shipped_config_loads():
    config = load_yaml(SampleConfig, "configs/pipeline.yaml")
    assert config.sequence.length == 20
    assert config.extra_pairs == (("device", "categorical"), ("price", "numeric"))
    purchase = config.category_purchase
    assert (purchase.enabled, purchase.window_days, purchase.window_seconds) == (
        True, 7, 7 * 86400)


def test_category_purchase_is_off_by_default():
    assert not SampleConfig().category_purchase.enabled


@pytest.mark.parametrize("text, words", [
    ("sequence: {lenght: 3}", "unknown key(s) ['lenght']"),
    ("sequence: {length: 0}", "sequence.length must be >= 1, got 0"),
    ("crosses: {item_buckets: many}", "crosses.item_buckets: expected int, got 'many'"),
    ("extra_columns: [{name: price, kind: money}]", "'money' is not one of"),
    ("extra_columns: [{name: ts, kind: numeric}]", "fixed schema columns"),
    ("input_format: xml", "input_format: 'xml' is not one of"),
    ("category_purchase: {window_days: 0}",
     "category_purchase.window_days must be >= 1, got 0"),
    ("category_purchase: {enabled: 'yes'}",
     "category_purchase.enabled: expected bool, got 'yes'"),
])
def test_bad_config_names_key_and_value(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml(SampleConfig, path)
    assert words in str(e.value)
    assert str(path) in str(e.value)
