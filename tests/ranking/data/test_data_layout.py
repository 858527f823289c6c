"""Sample file names carry the UTC day of their rows."""
import pytest

from ranking.data.layout import day_label, day_of, file_day, sample_file_name

DAY0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def test_day_of_and_label_are_utc_days():
    assert day_of(DAY0) == day_of(DAY0 + 86_399) == 20454 and day_of(DAY0 - 1) == 20453
    assert day_label(20454) == "2026-01-01" and day_label(0) == "1970-01-01"


def test_file_name_round_trips_the_day():
    name = sample_file_name(20454, 2, 12)
    assert name == "part-2026-01-01-00002-of-00012.tfrecord"
    assert file_day(name) == file_day(f"/x/samples/{name}") == 20454
    assert file_day(sample_file_name(20454, 0, 1, ".tfrecord.gz")) == 20454
    for other in ("part-00000-of-00001.tfrecord", "2026-01-01.tfrecord", "part-2026-01-01.txt"):
        assert file_day(other) is None, other


def test_bad_shard_is_named():
    with pytest.raises(ValueError, match=r"shard must be in \[0, 2\), got 2"):
        sample_file_name(20454, 2, 2)
