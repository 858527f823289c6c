"""The end-to-end demo on a small simulation: every stage runs and the report holds."""
import json

from ranking import demo


def test_demo_end_to_end(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--impressions", "8000", "--seed", "3"]) == 0
    report = json.loads((tmp_path / "demo_report.json").read_text())
    assert report["max_abs_diff_grpc_vs_in_process"] <= 1e-6
    assert report["export"].endswith("/run/export/ple_esmm/1")
    test_rows = report["grpc"]["rows"]
    ctr = report["metrics"]["tasks"]["ctr"]["overall"]
    assert ctr["count"] == test_rows > 500  # the whole test day was scored over gRPC
    assert 0.5 < ctr["auc"] <= ctr["oracle_auc"] + 0.05 and ctr["oracle_auc"] > 0.7
    assert set(report["metrics"]["tasks"]) == {"ctr", "cvr", "ctcvr"}
    assert "US|home" in report["metrics"]["tasks"]["ctr"]["slices"]["domain"]
    out = capsys.readouterr().out
    for stage in ("1. simulate", "2. sample builder", "3. train", "4. ranking-serve",
                  "5. score the test day", "6. metrics"):
        assert stage in out
    assert "max |gRPC score - in-process score|" in out
