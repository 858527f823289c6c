"""Shared check of a ``ranking-simulate`` flag that takes a finite number >= 0."""
from pipelines.simulator import cli


def check_nonnegative_float_flag(tmp_path, capsys, monkeypatch, flag: str, field: str,
                                 default: float, good: str, bad: dict):
    """``flag`` reaches ``SimConfig.<field>`` (``default`` without it, ``float(good)`` with
    it); each ``bad`` value exits 2 with the message ending in ``bad[value]``."""
    seen = []
    monkeypatch.setattr(cli.S, "simulate", lambda cfg: seen.append(getattr(cfg, field)))
    base = ["--out", str(tmp_path), "--impressions", "10"]
    assert cli.main(base) == 0
    assert cli.main(base + [flag, good]) == 0
    assert seen == [default, float(good)]
    for value, shown in bad.items():
        assert cli.main(base + [flag, value]) == 2
        assert f"{field} must be a finite number >= 0, got {shown}" in capsys.readouterr().err
