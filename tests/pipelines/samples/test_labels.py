from pipelines.samples.labels import UNKNOWN_TS, observed_labels


def test_events_at_or_after_observe_at_are_unknown():
    got = observed_labels(100, 200, 300, observe_at=300)
    assert got == {"click": 1, "conversion": 1, "refund": 0, "net_conversion": 1, "click_ts": 100,
                   "pay_ts": 200, "refund_ts": UNKNOWN_TS}
    got = observed_labels(100, 200, 300, observe_at=301)
    assert (got["refund"], got["net_conversion"], got["refund_ts"]) == (1, 0, 300)
    got = observed_labels(100, None, None, observe_at=100)
    assert got == {"click": 0, "conversion": 0, "refund": 0, "net_conversion": 0, "click_ts": UNKNOWN_TS,
                   "pay_ts": UNKNOWN_TS, "refund_ts": UNKNOWN_TS}
