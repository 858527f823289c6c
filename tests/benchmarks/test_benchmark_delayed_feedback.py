"""The delayed-feedback benchmark refuses to reuse data simulated with other settings."""
import os
import sys

import pytest

from pipelines.simulator import SimConfig

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import delayed_feedback as df  # noqa: E402

# simulation.json's params of a run without --pay-drift (options at their default are left out)
STATIONARY = {"impressions": 1000, "seed": 11, "days": 21, "items": 2000}


def _config(**kw):
    return SimConfig(**{"out": "sim", "impressions": 1000, "seed": 11, "days": 21,
                        "items": 2000, **kw})


def test_same_settings_are_reused():
    df.check_reusable(STATIONARY, _config(), "/tmp/x")
    df.check_reusable({**STATIONARY, "pay_drift": 0.1}, _config(pay_drift=0.1), "/tmp/x")


@pytest.mark.parametrize("params, config, message", [
    (STATIONARY, _config(pay_drift=0.1), "pay_drift = 0.0, this run asks for pay_drift = 0.1"),
    ({**STATIONARY, "pay_drift": 0.2}, _config(pay_drift=0.1),
     "pay_drift = 0.2, this run asks for pay_drift = 0.1"),
    ({**STATIONARY, "pay_drift": 0.1}, _config(), "pay_drift = 0.1, this run asks for "
     "pay_drift = 0.0"),
    (STATIONARY, _config(impressions=2000), "impressions = 1000, this run asks for "
     "impressions = 2000"),
])
def test_other_settings_are_refused_naming_the_field(params, config, message):
    with pytest.raises(SystemExit, match=f"/tmp/x holds data simulated with {message}"):
        df.check_reusable(params, config, "/tmp/x")
