"""ranking-train's input: an epoch of ``steps`` batches is one pass, every row once."""
import pytest
import tensorflow as tf

from ranking.data.schema import load_schema
from ranking.train import sample_files, time_splits, training_input


def _ids(ds, steps):
    return [v.decode() for f, _ in ds.take(steps) for v in f["impression_id"].numpy()]


@pytest.mark.parametrize("order", ["shuffled", "time"])
def test_an_epoch_is_one_pass_every_training_row_once(simulated_samples, small_experiment,
                                                      order):
    # A shuffle buffer larger than the split: records repeated before the shuffle would put
    # the next pass's rows into this epoch (second copies in, as many rows left out).
    config = small_experiment(shuffle_buffer=100_000, batch_size=64, order=order)
    schema = load_schema(simulated_samples)
    files = sample_files(simulated_samples)
    splits = time_splits(schema, config)
    train_ds, steps, val_ds, val_steps = training_input(
        files, schema, config, splits, extra_features=["impression_id"])
    by_split = {"train": [], "validation": []}
    train_ts = []
    for record in tf.data.TFRecordDataset(files):
        example = tf.train.Example.FromString(record.numpy()).features.feature
        ts, iid = example["ts"].int64_list.value[0], example["impression_id"].bytes_list.value[0]
        for name in by_split:
            if getattr(splits, name).contains(ts):
                by_split[name].append(iid.decode())
                if name == "train":
                    train_ts.append(ts)
    assert len(by_split["train"]) > 1000 and steps == -(-len(by_split["train"]) // 64)
    epochs = _ids(train_ds, 2 * steps)
    first, second = epochs[:len(by_split["train"])], epochs[len(by_split["train"]):]
    assert sorted(first) == sorted(second) == sorted(by_split["train"])
    if order == "shuffled":
        assert first != second  # reshuffled every epoch
    else:  # every pass in ts order (the files' order within a timestamp)
        ts_of = dict(zip(by_split["train"], train_ts))
        assert first == second == sorted(by_split["train"], key=ts_of.__getitem__)
    assert _ids(val_ds, val_steps) == by_split["validation"]  # file order, each row once
