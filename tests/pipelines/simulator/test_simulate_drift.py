"""The simulator's hourly domain drift (``--domain-drift``): the scene mix of each country moves
with its clock hour as the table says, and stays flat with the option off."""
import glob
import io
import json
import os

import numpy as np
import pyarrow.csv as pacsv
import pytest

from pipelines.simulator import SimConfig, cli, run_simulation
from pipelines.simulator import world as W
from pipelines.simulator.simulate import DEFAULT_DOMAIN_DRIFT, local_clock_hour

MIN_ROWS = 100  # (country, hour) cells with fewer rows are too noisy to compare


def test_scene_share_by_hour_golden():
    np.testing.assert_allclose(W.scene_share_by_hour(0.0),
                               np.broadcast_to(W.SCENE_SHARE[:, None, :], (4, 24, 3)))
    # US at 21:00, amplitude 0.8; peaks home 21, search 11, cart 15:
    #   home   0.5 * (1 + 0.8 cos 0)                 = 0.9
    #   search 0.3 * (1 + 0.8 cos(2 pi 10/24))       = 0.3 * (1 - 0.69282) = 0.0921539
    #   cart   0.2 * (1 + 0.8 cos(2 pi 6/24))        = 0.2
    # sum 1.1921539 -> shares 0.754937, 0.077301, 0.167763
    np.testing.assert_allclose(W.scene_share_by_hour(0.8)[0, 21],
                               [0.754937, 0.077301, 0.167763], atol=1e-6)
    shares = W.scene_share_by_hour(0.8)
    np.testing.assert_allclose(shares.sum(-1), 1.0)
    assert (shares > 0).all()
    with pytest.raises(ValueError, match=r"amplitude must be in \[0, 1\], got 1\.5"):
        W.scene_share_by_hour(1.5)


def _observed_shares(out):
    """Observed scene shares ``[country, local hour, scene]`` and the row counts per cell."""
    (path,) = glob.glob(os.path.join(out, "impressions", "*.csv"))
    table = pacsv.read_csv(path).to_pydict()
    country = np.array([W.COUNTRIES.index(c) for c in table["country"]])
    scene = np.array([W.SCENES.index(s) for s in table["scene"]])
    hour = local_clock_hour(np.array(table["ts"]), country)
    counts = np.zeros((len(W.COUNTRIES), 24, len(W.SCENES)))
    np.add.at(counts, (country, hour, scene), 1)
    rows = counts.sum(-1)
    return counts / np.maximum(rows, 1)[..., None], rows


@pytest.mark.parametrize("drift", [0.0, 0.8])
def test_scene_mix_follows_the_hour_only_with_drift(tmp_path, drift):
    out = str(tmp_path / "sim")
    run_simulation(SimConfig(out=out, impressions=24_000, seed=1, workers=1,
                             domain_drift=drift), log=io.StringIO())
    shares, rows = _observed_shares(out)
    dense = rows >= MIN_ROWS
    assert dense.sum() >= 40
    # Observed mixes follow the table (binomial noise at >= 100 rows: sd <= 0.05).
    assert np.abs(shares - W.scene_share_by_hour(drift))[dense].max() < 0.12
    for c in range(len(W.COUNTRIES)):
        cells = shares[c][dense[c]]
        spread = (cells.max(0) - cells.min(0)).max()  # the most-moving scene's range over hours
        assert (spread > 0.4) if drift else (spread < 0.2), (W.COUNTRIES[c], spread)
    with open(os.path.join(out, "simulation.json")) as f:
        params = json.load(f)["params"]
    assert params.get("domain_drift") == (drift or None)  # absent when off: output as before


def test_cli_domain_drift_flag(tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(cli.S, "simulate", lambda cfg: seen.append(cfg.domain_drift))
    base = ["--out", str(tmp_path), "--impressions", "10"]
    assert cli.main(base) == 0
    assert cli.main(base + ["--domain-drift"]) == 0
    assert cli.main(base + ["--domain-drift", "0.3"]) == 0
    assert seen == [0.0, DEFAULT_DOMAIN_DRIFT, 0.3] and DEFAULT_DOMAIN_DRIFT == 0.8
    assert cli.main(base + ["--domain-drift", "1.5"]) == 2
    assert "domain_drift must be in [0, 1], got 1.5" in capsys.readouterr().err
