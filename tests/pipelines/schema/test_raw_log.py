import math

import pytest

from pipelines.schema.raw_log import InvalidRow, parse_row

GOOD = {"impression_id": "a1", "user_id": "u1", "item_id": "i1", "category_id": "c1",
        "country": "US", "scene": "home", "ts": "1767225600", "click_ts": "1767225610",
        "pay_ts": "1767300000", "refund_ts": ""}


def test_parses_strings_and_defaults():
    imp = parse_row({**GOOD, "country": "", "scene": None}, [("device", "categorical"),
                                                            ("price", "numeric")])
    assert (imp.ts, imp.click_ts, imp.pay_ts, imp.refund_ts) == (
        1767225600, 1767225610, 1767300000, None)
    assert imp.domain == "default|default"
    assert imp.extras[0] == ("device", "")
    assert imp.extras[1][0] == "price" and math.isnan(imp.extras[1][1])


def test_native_types_from_parquet_and_json():
    imp = parse_row({**GOOD, "ts": 1767225600, "click_ts": 1767225610.0, "pay_ts": None,
                     "user_id": 42})
    assert imp.user_id == "42" and imp.click_ts == 1767225610 and imp.pay_ts is None


@pytest.mark.parametrize("change, field, words", [
    ({"user_id": ""}, "user_id", "missing required field 'user_id'"),
    ({"ts": "12.5"}, "ts", "'12.5' is not an integer"),
    ({"ts": "1767225600000"}, "ts", "milliseconds"),
    ({"click_ts": "1767225500"}, "click_ts", "'click_ts' (1767225500) is before 'ts'"),
    ({"click_ts": ""}, "pay_ts", "'pay_ts' is 1767300000 but 'click_ts' is empty"),
    ({"refund_ts": "1767200000"}, "refund_ts", "before 'pay_ts'"),
])
def test_bad_rows_name_field_and_value(change, field, words):
    with pytest.raises(InvalidRow) as e:
        parse_row({**GOOD, **change})
    assert e.value.field == field
    assert words in e.value.reason


def test_bad_numeric_extra():
    with pytest.raises(InvalidRow, match="numeric field 'price': 'cheap'"):
        parse_row({**GOOD, "price": "cheap"}, [("price", "numeric")])
