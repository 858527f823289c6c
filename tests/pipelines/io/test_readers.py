import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.io.readers import detect_format, match_files, read_records

ROWS = [{"impression_id": "a1", "user_id": "u1", "ts": 1767225600, "click_ts": None},
        {"impression_id": "a2", "user_id": "u2", "ts": 1767225700, "click_ts": 1767225710}]


def test_csv_jsonl_parquet_give_the_same_rows(tmp_path):
    (tmp_path / "x.csv").write_text(
        "impression_id,user_id,ts,click_ts\na1,u1,1767225600,\na2,u2,1767225700,1767225710\n")
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "x.parquet")
    csv_rows = [r.row for r in read_records(str(tmp_path / "x.csv"))]
    assert csv_rows == [{"impression_id": "a1", "user_id": "u1", "ts": "1767225600",
                         "click_ts": ""},
                        {"impression_id": "a2", "user_id": "u2", "ts": "1767225700",
                         "click_ts": "1767225710"}]
    assert [r.row for r in read_records(str(tmp_path / "x.jsonl"))] == ROWS
    assert [r.row for r in read_records(str(tmp_path / "x.parquet"))] == ROWS
    assert [r.source for r in read_records(str(tmp_path / "x.csv"))] == [
        f"{tmp_path}/x.csv:2", f"{tmp_path}/x.csv:3"]


def test_undecodable_lines_come_out_with_their_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{not json\n[1, 2]\n')
    records = list(read_records(str(tmp_path / "bad.jsonl")))
    assert [r.error is None for r in records] == [True, False, False]
    assert records[1].error.startswith("invalid JSON") and records[1].raw == "{not json"
    assert "not an object" in records[2].error
    assert records[2].source.endswith("bad.jsonl:3")


def test_format_and_glob_errors(tmp_path):
    assert detect_format("a/b.csv.gz") == "csv"
    with pytest.raises(ValueError, match="'.txt'"):
        detect_format("a/b.txt")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        match_files(str(tmp_path / "*.csv"))
