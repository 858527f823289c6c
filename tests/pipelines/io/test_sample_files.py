"""Day-partitioned TFRecord writing: byte-exact framing, one set of files per day."""
import glob
import os

import apache_beam as beam
import pytest
import tensorflow as tf

from pipelines.io.sample_files import WriteSamplesByDay, remove_temp_dir, tfrecord_frame
from ranking.data.layout import file_day


def test_frame_is_byte_identical_to_tensorflow_writer(tmp_path):
    records = [b"", b"a", b"\x00\xff" * 300, "é".encode()]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    assert b"".join(tfrecord_frame(r) for r in records) == open(path, "rb").read()
    # golden: length 1 (uint64 LE), masked crc of it, data, masked crc of the data
    assert tfrecord_frame(b"a")[:8] == b"\x01" + b"\x00" * 7 and len(tfrecord_frame(b"a")) == 17


@pytest.mark.parametrize("shards", [0, 2])
def test_write_by_day(tmp_path, shards):
    pairs = [(20454 + i % 3, f"r{i}".encode()) for i in range(40)]
    out, temp = str(tmp_path / "samples"), str(tmp_path / ".tmp")
    with beam.Pipeline() as p:
        _ = p | beam.Create(pairs) | WriteSamplesByDay(out, temp, shards=shards)
    remove_temp_dir(temp)
    assert not os.path.exists(temp)
    files = sorted(glob.glob(os.path.join(out, "*")))
    got = {}
    for f in files:
        got.setdefault(file_day(f), []).extend(
            r.numpy() for r in tf.data.TFRecordDataset(f))
    assert {d: sorted(v) for d, v in got.items()} == {
        d: sorted(r for day, r in pairs if day == d) for d in (20454, 20455, 20456)}
    per_day = [os.path.basename(f)[:15] for f in files]
    if shards:
        assert len(files) == 6 and all(per_day.count(d) == 2 for d in per_day)
        assert os.path.basename(files[0]) == "part-2026-01-01-00000-of-00002.tfrecord"


def test_write_by_day_refuses_negative_shards():
    with pytest.raises(ValueError, match="shards must be >= 0, got -1"):
        WriteSamplesByDay("o", "t", shards=-1)


def test_remove_temp_dir_refuses_to_lose_a_file(tmp_path):
    temp = tmp_path / ".tmp"
    temp.mkdir()
    (temp / "left").write_bytes(b"x")
    with pytest.raises(RuntimeError, match=r"1 sample file\(s\) were not moved out of"):
        remove_temp_dir(str(temp))
    assert (temp / "left").exists()
    (temp / "left").unlink()
    remove_temp_dir(str(temp))
    assert not temp.exists()
    remove_temp_dir(str(temp))  # already gone: nothing to do
