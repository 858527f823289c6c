"""tf.data input: TFRecord samples -> batches of ``(features, labels)``.

The pipeline of :func:`make_dataset`::

    files (sorted; shuffled when training)      with a time range, the files of the days in
                                                it (:func:`files_for_range`)
      -> interleave(TFRecordDataset)            one thread for local files
      -> time filter                            only when the range cuts through a file's day
                                                (or files carry no day in their name): chunks
                                                of serialized records get only ``ts`` parsed
                                                (vectorized) and rows outside [start, end)
                                                are dropped
      -> repeat                                 training with ``repeat=True``: before the
                                                shuffle, so its buffer never drains
      -> shuffle(shuffle_buffer)                training only, on serialized records: blocks
                                                of 16 records through a shuffle buffer, then
                                                windows of 32768 permuted (:func:`shuffle_records`)
      -> batch(batch_size)                      exactly batch_size rows (except the last;
                                                training batches span windows)
      -> parse_example                          vectorized, only the features the model reads
      -> split into (features, labels)
      -> prefetch

Training order (``training.order``): ``shuffled`` is the pipeline above. ``time`` and
``sliding_window`` replace the read/filter/shuffle stages: the split's serialized records are
read once (deterministically, time filter applied), sorted by ``ts`` and kept in memory (one
string tensor, the size of the split's records), then yielded in time order (``time``) or
through a sliding window of ``window_size`` records shuffled inside it (``sliding_window``,
see :func:`sliding_window_order`), reshuffled every epoch. Seed 000: STAR trains unstably in
time order because each domain peaks at other hours, so the domain mix of time-ordered batches
drifts; the window smooths the mix over ``window_size`` recent rows while staying in time order
at that granularity (an online learner's view of the data).

``ranking-pipeline`` writes one set of files per UTC day, named by the day
(:mod:`ranking.data.layout`), so the day-aligned splits of :func:`split_by_time` are whole
files and no record is filtered. Otherwise the time filter drops rows before the full parse
(the costly step) and, when training, before the shuffle: the buffer holds ``shuffle_buffer``
rows of the split being read and the rows of the other splits cost neither a shuffle slot nor
a copy. Without a shuffle (evaluation) the filtered chunks are rebatched directly. Batches are
full (``batch_size`` rows, except the last) whatever share of rows the filter keeps.

CPU cost: on a small host the input pipeline competes with the training step for the same
cores, so it is built for CPU time per example rather than for the most parallelism: tf.data's
autotuning is off (its per-element bookkeeping -- timing and sizing every serialized record at
every stage -- cost ~17% of the pipeline's CPU), so AUTOTUNE parallelism falls back to one call
per core (at most 16) and the prefetch buffer is grown by the prefetch autotuner. Local files
are read by a plain (one-thread) interleave. CPU per example of the shuffled training input
(train split of the 200k demo samples, batch 256): 11.1 us with one file and the per-record
time filter, 8.4 us with the day files (no filter) and the one-thread interleave (a parallel
interleave over the day files: ~3 us more); ``benchmarks/train_throughput.py`` measures the
effect on training. The record shuffle is :func:`shuffle_records` (blocks through the buffer,
then a permutation per window) rather than a record-level ``Dataset.shuffle``:
``benchmarks/input_throughput.py --batch-size 256 --modes train`` on the 2-core Xeon host,
9.5-9.7 us CPU per example with ``Dataset.shuffle(100000)`` (the code before, two runs) and
7.7 us with :func:`shuffle_records` (two runs, alternating).
:func:`split_by_time` gives the ranges of the train/test split by UTC day.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence, Union

import tensorflow as tf

from ranking.data.layout import DAY_SECONDS, file_day
from ranking.data.schema import Schema, SchemaError, check_config, load_schema, parse_spec

__all__ = ["TimeRange", "make_dataset", "split_by_time", "list_files", "files_for_range",
           "max_timestamp",
           "sliding_window_order", "shuffle_records", "SAMPLES_GLOB", "TIME_FEATURE",
           "DAY_SECONDS"]

SAMPLES_GLOB = os.path.join("samples", "part-*.tfrecord*")
TIME_FEATURE = "ts"
_FILTER_CHUNK = 4096  # serialized records per vectorized ``ts`` parse of the time filter
SHUFFLE_BLOCK = 16      # consecutive records that go through the shuffle buffer together
SHUFFLE_WINDOW = 32768  # records permuted together after the buffer (2048 blocks)

FilesOrGlob = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


class TimeRange(NamedTuple):
    """Half-open range ``[start, end)`` of impression times ``ts`` (epoch seconds)."""

    start: int
    end: int

    def contains(self, ts: int) -> bool:
        return self.start <= ts < self.end


def list_files(files_or_glob: FilesOrGlob) -> list[str]:
    """Sorted sample files: a glob, a file, a sample directory (``DIR/samples/part-*``) or a
    list of those. Raises FileNotFoundError when nothing matches."""
    items = [files_or_glob] if isinstance(files_or_glob, (str, os.PathLike)) else files_or_glob
    files: list[str] = []
    for item in items:
        item = os.fspath(item)
        if tf.io.gfile.isdir(item):
            item = os.path.join(item, SAMPLES_GLOB)
        matched = tf.io.gfile.glob(item)
        if not matched:
            raise FileNotFoundError(f"no sample files match {item!r}")
        files += matched
    return sorted(dict.fromkeys(files))


def files_for_range(files: Sequence[str],
                    time_range: Optional[TimeRange]) -> tuple[list[str], Optional[TimeRange]]:
    """The files that can hold rows of ``time_range``, and the range their rows still need to
    be filtered by (None: every row of these files is in range).

    Files named by UTC day (:mod:`ranking.data.layout`) are kept whole when their day is inside
    the range and dropped when it is outside; any other file, or a day the range cuts through,
    keeps the per-record filter on (for all the files read: one pipeline shape)."""
    if time_range is None:
        return list(files), None
    kept, partial = [], False
    for path in files:
        day = file_day(path)
        if day is None:
            kept.append(path)
            partial = True
            continue
        start, end = day * DAY_SECONDS, (day + 1) * DAY_SECONDS
        if end <= time_range.start or start >= time_range.end:
            continue
        kept.append(path)
        partial = partial or start < time_range.start or end > time_range.end
    if not kept:  # an empty split: read a file through the filter, so the dataset is empty
        return list(files[:1]), time_range
    return kept, time_range if partial else None


def _compression(files: Sequence[str]) -> str:
    gz = [f.endswith(".gz") for f in files]
    if any(gz) and not all(gz):
        raise ValueError("mixing .gz and uncompressed sample files is not supported")
    return "GZIP" if all(gz) else ""


def _read_records(files: list[str], *, shuffle_files: bool, seed: Optional[int],
                  deterministic: bool) -> tf.data.Dataset:
    """Serialized records. Shuffled: files in random order, interleaved in blocks of 64
    records, 8 files at a time (a batch mixes days). Otherwise in file order, file after
    file. Local files are read in one thread: a parallel interleave's threads cost ~3 us of
    CPU per example (of ~10) and a local read is never the wait; remote reads wait on the
    network, so they overlap."""
    compression = _compression(files)
    local = all(_is_local(f) for f in files)

    def read(f):
        return tf.data.TFRecordDataset(f, compression_type=compression, buffer_size=8 << 20)

    if len(files) == 1 or (local and not shuffle_files):
        return read(files)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    parallel = {} if local else {"num_parallel_calls": tf.data.AUTOTUNE,
                                 "deterministic": deterministic}
    return ds.interleave(read, cycle_length=min(len(files), 8),
                         block_length=64 if shuffle_files else 1024, **parallel)


def shuffle_records(records: tf.data.Dataset, buffer: int, seed: Optional[int], *,
                    block: int = SHUFFLE_BLOCK,
                    window: int = SHUFFLE_WINDOW) -> tf.data.Dataset:
    """Serialized records -> windows (``[<= window]`` string tensors) in a random order.

    Two stages, so that no per-record ``Dataset.shuffle`` step is paid (~2.5 us of CPU per
    record: its buffer's bookkeeping and cache misses over ``buffer`` scattered ~1.8 KB
    strings):

    1. blocks of ``block`` consecutive records go through a ``Dataset.shuffle`` buffer of
       ``buffer // block`` blocks (``buffer`` records, as a record shuffle's buffer);
    2. the blocks coming out are cut into windows of ``window`` records (``window / block``
       blocks drawn from all over the buffer), each permuted uniformly at random.

    A batch of ``b`` rows cut from a window holds on average ``b * block / window`` rows of
    any one block (1/8 at batch 256), so the rows a file stores together (one user's, in time
    order) are spread over the ``window / b`` batches of the window instead of the same
    batch. CPU per record, iterating the input alone: ~1.9 us less than
    ``Dataset.shuffle(buffer)`` (module docstring).

    Seeded (``seed``): reproducible, and re-drawn on every pass over the dataset (a new
    order each epoch) like ``Dataset.shuffle(..., reshuffle_each_iteration=True)``.
    """
    for name, value in (("buffer", buffer), ("block", block), ("window", window)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    blocks = records.batch(block).shuffle(max(1, buffer // block), seed=seed,
                                          reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def permute(batch, pair):
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(batch)[0]), pair)
        return tf.gather(batch, order)

    return tf.data.Dataset.zip((blocks.rebatch(window), seeds)).map(permute)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def parse_timestamps(serialized: tf.Tensor) -> tf.Tensor:
    """``[n]`` serialized samples -> their ``ts`` ``[n]`` int64 (nothing else is parsed)."""
    return tf.io.parse_example(
        serialized, {TIME_FEATURE: tf.io.FixedLenFeature([], tf.int64)})[TIME_FEATURE]


def in_range_mask(ts: tf.Tensor, time_range: TimeRange) -> tf.Tensor:
    return (ts >= int(time_range.start)) & (ts < int(time_range.end))


def timestamp_chunks(files_or_glob: FilesOrGlob, chunk: int = 8192) -> tf.data.Dataset:
    """``(serialized [n], ts [n])`` chunks of the sample files, in file order: the scans that
    need only ``ts`` (counting rows, the latest time, cutting a split out) parse nothing else."""
    files = list_files(files_or_glob)
    return (tf.data.TFRecordDataset(files, compression_type=_compression(files))
            .batch(chunk).map(lambda s: (s, parse_timestamps(s))))


def _keep_in_range(time_range: TimeRange):
    """Chunk of serialized records -> the records with ``ts`` in ``time_range``."""

    def keep(serialized):
        return tf.boolean_mask(serialized,
                               in_range_mask(parse_timestamps(serialized), time_range))

    return keep


def _filter_by_time(ds: tf.data.Dataset, time_range: TimeRange,
                    deterministic: bool) -> tf.data.Dataset:
    """The serialized records with ``ts`` in ``time_range``, one by one (vectorized filter
    over chunks of ``_FILTER_CHUNK`` records, then unbatched)."""
    return (ds.batch(_FILTER_CHUNK)
            .map(_keep_in_range(time_range), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=deterministic)
            .unbatch())


def _batch_in_range(ds: tf.data.Dataset, time_range: TimeRange, batch_size: int,
                    drop_remainder: bool, deterministic: bool) -> tf.data.Dataset:
    """Batches of the serialized records with ``ts`` in ``time_range``: chunks of records
    have only ``ts`` parsed (vectorized) and masked, then are rebatched to ``batch_size``."""
    return (ds.batch(max(batch_size, _FILTER_CHUNK))
            .map(_keep_in_range(time_range), num_parallel_calls=tf.data.AUTOTUNE,
                 deterministic=deterministic)
            .rebatch(batch_size, drop_remainder=drop_remainder))


def _records_in_time_order(files: list[str], time_range: Optional[TimeRange]) -> tf.Tensor:
    """The serialized records (those in ``time_range``), sorted by ``ts``; ties keep the
    (deterministic) read order. One string tensor: the split is held in memory."""
    ds = _read_records(files, shuffle_files=False, seed=None, deterministic=True)
    if time_range is not None:
        ds = _filter_by_time(ds, time_range, deterministic=True)
    chunks = list(ds.batch(_FILTER_CHUNK))
    if not chunks:
        return tf.constant([], tf.string)
    records = tf.concat(chunks, axis=0)
    return tf.gather(records, tf.argsort(parse_timestamps(records), stable=True))


def sliding_window_order(n, window_size: int, seed) -> tf.Tensor:
    """A permutation of ``range(n)`` (time ranks) as yielded by a sliding-window buffer.

    Row ``i`` gets the key ``i + window_size * u_i`` with ``u_i ~ U[0, 1)`` (stateless, from
    ``seed``, a shape-[2] integer tensor) and rows are yielded by key. That is a buffer of
    ``window_size`` rows fed in time order: when row ``r`` enters, every buffered row with a key
    below ``r`` is yielded (no later row can have a smaller key, since ``key_j >= j``). A
    buffered row has ``r - window_size < i <= r`` (its key ``< i + window_size``), so

    * the buffer never holds more than ``window_size`` rows, all of the last ``window_size``;
    * a row is out of the buffer before a row ``window_size`` or more later enters: rows that
      far apart keep their time order (time-monotone at the window's granularity);
    * inside the window the order is random: each row is yielded among its neighbours within
      ``window_size`` in time, so every batch mixes the domains of the recent rows.

    Returns ``int32 [n]``: the time ranks in the order yielded.
    """
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1, got {window_size!r}")
    ranks = tf.range(n, dtype=tf.float64)
    jitter = tf.random.stateless_uniform(tf.shape(ranks), seed, dtype=tf.float64)
    return tf.argsort(ranks + window_size * jitter, stable=True)


def _time_ordered(records: tf.Tensor, training_config, seed: Optional[int]) -> tf.data.Dataset:
    """Time-sorted records in ``training_config.order`` (``time`` or ``sliding_window``)."""
    if training_config.order == "time":
        return tf.data.Dataset.from_tensor_slices(records)
    window = training_config.window_size

    def epoch(epoch_seed):
        order = sliding_window_order(tf.shape(records)[0], window, tf.stack([epoch_seed, 0]))
        return tf.data.Dataset.from_tensor_slices(tf.gather(records, order))

    # One draw per pass over the data: every epoch slides a new shuffle over the same order.
    return (tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
            .flat_map(epoch))


def make_dataset(files_or_glob: FilesOrGlob, schema: Schema, config, *, training: bool,
                 time_range: Optional[TimeRange] = None, batch_size: Optional[int] = None,
                 extra_features: Sequence[str] = (), deterministic: Optional[bool] = None,
                 seed: Optional[int] = None, drop_remainder: bool = False,
                 check: bool = True, repeat: bool = False) -> tf.data.Dataset:
    """Batches of ``(features, labels)`` from TFRecord samples.

    Args:
      files_or_glob: sample files (see :func:`list_files`).
      schema: the samples' :class:`~ranking.data.schema.Schema`.
      config: a :class:`ranking.config.ExperimentConfig`.
      training: read in ``config.training.order``: shuffled files and records
        (``shuffle_buffer``, :func:`shuffle_records`), time order, or time order through
        a sliding window (module docstring); evaluation reads in file order and does not
        shuffle.
      time_range: keep only rows with ``time_range.start <= ts < time_range.end``.
      batch_size: defaults to ``config.training.batch_size``.
      extra_features: more schema features to keep in ``features`` (e.g. ``user_id`` for
        UAUC, truth columns for evaluation).
      deterministic: same order on every run (seeded shuffles, ordered parallel reads and
        parses); training shuffles still differ between epochs, in a reproducible way.
        Default (None): True for evaluation (rows come in file order), False for training
        (order is random anyway; the unordered parallel stages are a little faster).
      seed: shuffle seed; defaults to ``config.training.seed`` when ``deterministic``.
      drop_remainder: drop the last partial batch (static batch dimension).
      check: run :func:`~ranking.data.schema.check_config` first.
      repeat: pass over the data forever. A shuffled training input repeats its records
        before the shuffle, so the shuffle buffer never drains and refills at a pass
        boundary (a stall of ``shuffle_buffer`` reads while training waits, ~15% of a pass's
        time at the demo size) and a batch may mix the end of one pass with the start of the
        next; every other input repeats its batches. For steady-state measurements: passes
        blend, so ``shuffle_buffer`` rows around each boundary are seen twice or not at all
        within a pass's worth of batches (``ranking-train`` repeats by batch: epochs are whole
        passes).

    Returns:
      A dataset of ``(features, labels)``: ``features`` maps each of
      ``config.feature_names`` (and ``extra_features``) to its parsed tensor, ``[batch]`` for
      scalars and ``[batch, L]`` for sequences and crosses, dtypes ``tf.string``,
      ``tf.int64`` or ``tf.float32`` as in the schema; ``labels`` maps each of
      ``config.label_names`` (label feature names, not task names) to a ``float32 [batch]``.
    """
    if deterministic is None:
        deterministic = not training
    if check:
        check_config(schema, config)
    batch_size = batch_size or config.training.batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if deterministic and seed is None:
        seed = config.training.seed
    feature_names = list(dict.fromkeys([*config.feature_names, *extra_features]))
    label_names = list(config.label_names)
    overlap = sorted(set(feature_names) & set(label_names))
    if overlap:
        raise SchemaError(f"extra_features: {overlap} are labels of the config's tasks")
    spec = parse_spec(schema, feature_names + label_names)
    if time_range is not None and TIME_FEATURE not in schema:
        raise SchemaError(f"time_range needs the feature {TIME_FEATURE!r}, not in the schema")

    files, time_range = files_for_range(list_files(files_or_glob), time_range)
    repeats_records = training and config.training.order == "shuffled"
    if training and config.training.order != "shuffled":
        ds = _time_ordered(_records_in_time_order(files, time_range), config.training, seed)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    elif training:
        ds = _read_records(files, shuffle_files=True, seed=seed, deterministic=deterministic)
        if time_range is not None:
            ds = _filter_by_time(ds, time_range, deterministic)
        if repeat:  # the records, not the batches (docstring)
            ds = ds.repeat()
        ds = shuffle_records(ds, config.training.shuffle_buffer, seed)
        ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    else:
        ds = _read_records(files, shuffle_files=False, seed=seed, deterministic=deterministic)
        if time_range is None:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        else:
            ds = _batch_in_range(ds, time_range, batch_size, drop_remainder, deterministic)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        features = {n: parsed[n] for n in feature_names}
        labels = {n: tf.cast(parsed[n], tf.float32) for n in label_names}
        return features, labels

    # Always in order: an unordered parallel parse can emit the last, partial batch before a
    # full one (batches are full except the last). Training order is random anyway; the
    # unordered stages are the reads and the time filter, before the shuffle.
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    # No autotuning model (see the module docstring): AUTOTUNE parallelism then means one call
    # per core (at most 16); the prefetch buffer is still grown on demand by the prefetch
    # autotuner (legacy_autotune, independent of this option).
    options.autotune.enabled = False
    ds = ds.with_options(options)
    if repeat and not repeats_records:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


# --- time split ----------------------------------------------------------------------------

def max_timestamp(files_or_glob: FilesOrGlob) -> int:
    """Largest ``ts`` over the sample files (one vectorized scan)."""
    lowest = tf.constant(-(2 ** 62), tf.int64)
    best = timestamp_chunks(files_or_glob).reduce(
        lowest, lambda acc, chunk: tf.maximum(acc, tf.reduce_max(chunk[1]))).numpy()
    if best == lowest:
        raise ValueError(f"no samples in {list_files(files_or_glob)}")
    return int(best)


def count_rows(files_or_glob: FilesOrGlob, *time_ranges: TimeRange):
    """Rows with ``ts`` in each time range: an int for one range, a list of ints for several.
    A range of whole days of day-named files (:func:`files_for_range`) counts their records
    without parsing; the other ranges share one vectorized scan of the ``ts`` column."""
    if not time_ranges:
        raise ValueError("count_rows needs at least one time range, got none")
    files = list_files(files_or_glob)
    plans = [files_for_range(files, r) for r in time_ranges]
    scanned = [i for i, (_, residual) in enumerate(plans) if residual is not None]
    counts = [0] * len(time_ranges)
    if scanned:
        to_scan = sorted({f for i in scanned for f in plans[i][0]})
        totals = timestamp_chunks(to_scan).reduce(
            tf.zeros([len(scanned)], tf.int64),
            lambda acc, chunk: acc + tf.stack([
                tf.reduce_sum(tf.cast(in_range_mask(chunk[1], time_ranges[i]), tf.int64))
                for i in scanned]))
        for i, total in zip(scanned, totals.numpy()):
            counts[i] = int(total)
    records = {}  # per whole-day file, counted once
    for i, (kept, residual) in enumerate(plans):
        if residual is None:
            counts[i] = sum(records.setdefault(f, _record_count(f)) for f in kept)
    return counts[0] if len(time_ranges) == 1 else counts


def _record_count(path: str) -> int:
    return int(tf.data.TFRecordDataset(path, compression_type=_compression([path]))
               .batch(8192).reduce(tf.constant(0, tf.int64),
                                   lambda n, b: n + tf.shape(b, out_type=tf.int64)[0]))


def split_by_time(source: Union[str, os.PathLike, Schema], test_days: int = 1, *,
                  train_days: Optional[int] = None,
                  reference: str = "auto") -> tuple[TimeRange, TimeRange]:
    """Train and test ranges by UTC day: the last ``test_days`` days are the test split.

    The last day is the UTC day of the reference time: ``observe_at - 1`` (the schema's
    ``observe_at``; every impression is before it) or the largest ``ts`` in the samples.
    The test range is ``[day_start(last) - (test_days - 1) days, day_start(last) + 1 day)``
    and the train range ends where the test range starts; it starts ``train_days`` days
    before that, or at 0 (all earlier rows) when ``train_days`` is None.

    Args:
      source: a sample directory (``schema.json`` + ``samples/``) or a :class:`Schema`.
      test_days: days in the test split (>= 1).
      train_days: days in the train split, or None for all earlier rows.
      reference: ``"observe_at"``, ``"max_ts"`` (needs a directory: scans the samples) or
        ``"auto"`` (observe_at when the schema has it, else max_ts).

    Returns:
      ``(train_range, test_range)``, half-open :class:`TimeRange` s.
    """
    if test_days < 1:
        raise ValueError(f"test_days must be >= 1, got {test_days!r}")
    if train_days is not None and train_days < 1:
        raise ValueError(f"train_days must be >= 1 or None, got {train_days!r}")
    if reference not in ("auto", "observe_at", "max_ts"):
        raise ValueError(f"reference must be auto, observe_at or max_ts, got {reference!r}")
    schema = source if isinstance(source, Schema) else load_schema(source)
    if reference == "auto":
        reference = "observe_at" if schema.observe_at is not None else "max_ts"
    if reference == "observe_at":
        if schema.observe_at is None:
            raise SchemaError("split_by_time: the schema has no observe_at")
        last_ts = int(schema.observe_at) - 1
    else:
        if isinstance(source, Schema):
            raise ValueError("split_by_time: reference 'max_ts' needs the sample directory")
        last_ts = max_timestamp(source)
    test_end = (last_ts // DAY_SECONDS + 1) * DAY_SECONDS
    test_start = test_end - test_days * DAY_SECONDS
    train_start = 0 if train_days is None else test_start - train_days * DAY_SECONDS
    return TimeRange(train_start, test_start), TimeRange(test_start, test_end)

