"""The Criteo conversion-log adapter on lines the test writes: golden rows, malformed lines
named by field and value, seeded synthetic refunds, and the pipeline reading the output."""
import glob
import json

import pytest
import tensorflow as tf

from pipelines import cli
from pipelines.config import SampleConfig, load_yaml
from pipelines.io import criteo
from pipelines.io.readers import read_records
from pipelines.samples.example import decode
from pipelines.schema.raw_log import InvalidRow, parse_row

OFFSET = criteo.DEFAULT_TIME_OFFSET  # 1388534400 = 2014-01-01 UTC
CATS = ["a1", "b2", "c3", "d4", "e5", "f6", "g7", "h8", "i9"]


def line(click, conversion="", ints=("1", "2", "3", "4", "5", "6", "7", "8"), cats=CATS):
    return "\t".join([str(click), str(conversion), *ints, *cats]) + "\n"


GOOD = [
    line(100),                                                 # clicked, never converted
    line(200, 7400),                                           # converts 2 h later
    line(300, "", ints=("", "0", "-1", "", "", "", "", "9"), cats=[""] * 9),  # empty features
]
BAD = [
    ("100\t\t1\t2\n", "line", "line has 4 tab-separated fields, expected 19"),
    (line("12x"), "click_ts", "field 'click_ts': '12x' is not an integer"),
    (line(500, 400), "conversion_ts", "'conversion_ts' (1388534800) is before 'click_ts' "
     "(1388534900)"),
    (line(600, ints=("1", "3.5", "3", "4", "5", "6", "7", "8")), "int_1",
     "field 'int_1': '3.5' is not an integer"),
    (line(-1388534400), "click_ts", "field 'click_ts': 0 is outside"),
]


def test_golden_rows_follow_the_raw_schema():
    rows = [criteo.criteo_row(text, f"criteo-{n}") for n, text in enumerate(GOOD, start=1)]
    assert rows[0] == {
        "impression_id": "criteo-1", "user_id": "criteo-1", "item_id": "criteo",
        "category_id": "criteo", "country": "", "scene": "", "ts": str(OFFSET + 100),
        "click_ts": str(OFFSET + 100), "pay_ts": "", "refund_ts": "",
        **{f"int_{i}": str(i + 1) for i in range(8)},
        **{f"cat_{i}": CATS[i] for i in range(9)}}
    assert (rows[1]["click_ts"], rows[1]["pay_ts"]) == (str(OFFSET + 200), str(OFFSET + 7400))
    assert [rows[2][f"int_{i}"] for i in range(8)] == ["", "0", "-1", "", "", "", "", "9"]
    imp = parse_row(rows[2], criteo.EXTRA_PAIRS)
    assert imp.domain == "default|default" and imp.pay_ts is None
    extras = dict(imp.extras)
    assert extras["int_2"] == -1.0 and extras["int_0"] != extras["int_0"]  # NaN when empty
    assert extras["cat_4"] == ""


@pytest.mark.parametrize("text, field, words", BAD)
def test_malformed_lines_name_the_field_and_value(text, field, words):
    with pytest.raises(InvalidRow) as info:
        criteo.criteo_row(text, "criteo-9")
    assert info.value.field == field
    assert words in info.value.reason


def test_synthetic_refunds_are_seeded_and_follow_the_rate():
    synth = criteo.RefundSynthesis(rate=0.14, mean_delay_s=3 * 86400, seed=7)
    refunds = [synth.refund_ts(1_500_000_000, f"criteo-{n}") for n in range(2000)]
    again = [synth.refund_ts(1_500_000_000, f"criteo-{n}") for n in range(2000)]
    other = [criteo.RefundSynthesis(0.14, 3 * 86400, seed=8).refund_ts(1_500_000_000,
                                                                        f"criteo-{n}")
             for n in range(2000)]
    count = sum(r is not None for r in refunds)
    # Binomial(2000, 0.14): mean 280, sd 15.5; +-4 sd.
    assert 218 <= count <= 342
    assert refunds == again and refunds != other
    delays = [r - 1_500_000_000 for r in refunds if r is not None]
    assert min(delays) >= 0
    # Exponential of mean 3 days: the sample mean of ~280 draws within +-30%.
    assert 0.7 * 3 * 86400 <= sum(delays) / len(delays) <= 1.3 * 3 * 86400
    with pytest.raises(ValueError, match="refund rate 1.5"):
        criteo.RefundSynthesis(1.5, 86400)


@pytest.fixture()
def criteo_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("".join(GOOD) + "".join(text for text, _, _ in BAD) + line(700, 800))
    return path


def test_convert_writes_rows_dead_letter_and_a_pipeline_config(tmp_path, criteo_file):
    out = tmp_path / "raw"
    summary = criteo.convert(str(criteo_file), str(out), rows_per_file=2,
                             refunds=criteo.RefundSynthesis(1.0, 86400, seed=1))
    assert (summary["lines"], summary["rows_written"], summary["dead_lettered"]) == (9, 4, 5)
    assert (summary["conversions"], summary["refunds"]) == (2, 2)  # rate 1: every conversion
    assert [p.rsplit("/", 1)[1] for p in summary["files"]] == ["criteo-00000.csv",
                                                                "criteo-00001.csv"]
    config = load_yaml(SampleConfig, str(out / "pipeline.yaml"))
    rows = [r.row for p in summary["files"] for r in read_records(p)]
    assert [r["impression_id"] for r in rows] == ["criteo-1", "criteo-2", "criteo-3",
                                                   "criteo-9"]
    for row in rows:
        imp = parse_row(row, config.extra_pairs)
        assert imp.refund_ts is None or imp.refund_ts >= imp.pay_ts
    dead = [json.loads(x) for x in (out / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source"].rsplit(":", 1)[1], d["field"]) for d in dead] == [
        ("4", "line"), ("5", "click_ts"), ("6", "conversion_ts"), ("7", "int_1"),
        ("8", "click_ts")]
    assert dead[1]["raw"].startswith("12x\t")


def test_strict_mode_and_the_command_line(tmp_path, criteo_file, capsys):
    with pytest.raises(SystemExit, match=r"data.txt:4: line has 4 tab-separated fields"):
        criteo.main(["--input", str(criteo_file), "--output", str(tmp_path / "s"),
                     "--strict"])
    with pytest.raises(SystemExit, match="refund rate -0.1"):
        criteo.main(["--input", str(criteo_file), "--output", str(tmp_path / "s"),
                     "--refund-rate", "-0.1"])
    assert criteo.main(["--input", str(criteo_file), "--output", str(tmp_path / "ok")]) == 0
    assert json.loads(capsys.readouterr().out)["rows_written"] == 4


def test_the_pipeline_reads_the_converted_logs(tmp_path, criteo_file):
    criteo.convert(str(criteo_file), str(tmp_path / "raw"))
    observe_at = OFFSET + 10_000
    args, beam_args = cli.build_parser().parse_known_args([
        "--input", str(tmp_path / "raw" / "criteo-*.csv"), "--output", str(tmp_path / "out"),
        "--observe-at", str(observe_at), "--config", str(tmp_path / "raw" / "pipeline.yaml"),
        "--stream", "fnw"])
    summary = cli.run(args, beam_args)
    assert summary["balanced"] and summary["samples_written"] == 4
    samples = {}
    for path in glob.glob(str(tmp_path / "out" / "samples" / "*.tfrecord")):
        for record in tf.data.TFRecordDataset(path):
            d = decode(record.numpy())
            samples[d["impression_id"][0]] = d
    assert samples["criteo-2"]["conversion"] == [1] and samples["criteo-1"]["conversion"] == [0]
    assert samples["criteo-2"]["cat_8"] == ["i9"] and samples["criteo-2"]["int_7"] == [8.0]
    # FNW: every click a negative at once, the two conversions as positive duplicates.
    assert summary["stream"]["by_kind"] == {"negative": 4, "delayed_positive": 2}
