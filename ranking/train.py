"""``ranking-train``: fit a config-driven multi-task model, evaluate it, export it.

    ranking-train --config configs/ple_esmm.yaml --data demo_out/samples --model-dir runs/ple

Split by time (UTC days of ``ts``): the last ``training.test_days`` days are the test split;
of the days before, the last one is the validation split (early stopping) and the rest, or
the ``training.train_days`` days before it, are trained on. Writes under ``--model-dir``:

    logs/                      TensorBoard (``tensorboard --logdir <model-dir>/logs``)
    checkpoints/epoch-NNN.*    weights after each epoch
    weights.*                  the final weights (best validation loss, then calibrated:
                               ``training.calibrate``), ``ranking-export``'s input
    config.yaml, schema.json   what the model was built from
    metrics.json               the test report (see ranking.evaluation), also printed
    export/<name>/<version>/   the SavedModel for TF Serving (``--no-export`` skips it)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Optional

import tensorflow as tf
import yaml

from ranking.calibration import calibrate
from ranking.config import ExperimentConfig, load_experiment
from ranking.data.input import (DAY_SECONDS, TimeRange, count_rows, list_files, make_dataset,
                                 split_by_time)
from ranking.data.schema import Schema, load_schema
from ranking.evaluation import evaluate_model
from ranking.export import export_model
from ranking.metrics import format_table, write_json
from ranking.models.multitask import MultiTaskRanker
from ranking.optimizers import LazyAdam

log = logging.getLogger("ranking-train")
WEIGHTS = "weights"


@dataclasses.dataclass(frozen=True)
class Splits:
    train: TimeRange
    validation: TimeRange
    test: TimeRange


def time_splits(schema: Schema, config: ExperimentConfig) -> Splits:
    """Train / validation (the last train day) / test ranges."""
    t = config.training
    train, test = split_by_time(schema, t.test_days, train_days=t.train_days)
    cut = train.end - DAY_SECONDS
    if cut <= train.start:
        raise ValueError(f"training needs at least two days before the test split; the train "
                         f"range is {train}")
    return Splits(TimeRange(train.start, cut), TimeRange(cut, train.end), test)


def build_model(config: ExperimentConfig, schema: Schema) -> MultiTaskRanker:
    t = config.training
    tf.keras.mixed_precision.set_global_policy(
        "mixed_bfloat16" if t.mixed_precision else "float32")
    tf.keras.utils.set_random_seed(t.seed)
    model = MultiTaskRanker(config, schema)
    optimizer = {"adam": tf.keras.optimizers.Adam, "lazy_adam": LazyAdam,
                 "adagrad": tf.keras.optimizers.Adagrad}[t.optimizer](t.learning_rate)
    model.compile(optimizer=optimizer, steps_per_execution=t.steps_per_execution)
    return model


def sample_files(data_dir: str) -> list[str]:
    return list_files(os.path.join(data_dir, "samples", "*.tfrecord*"))


def training_input(files, schema: Schema, config: ExperimentConfig, splits: Splits,
                   extra_features=()) -> tuple[tf.data.Dataset, int, tf.data.Dataset, int]:
    """``(train dataset, steps per epoch, validation dataset, validation steps)``, both
    datasets repeated forever; ``steps`` batches of the train dataset are one pass over the
    train split, every row once. ``extra_features``: as for ``make_dataset``."""
    t = config.training
    # Steps are counted up front: steps_per_execution > 1 needs them, and a progress bar with
    # a known end is worth one cheap scan of the ts column.
    train_rows, val_rows = count_rows(files, splits.train, splits.validation)
    if train_rows == 0:
        raise ValueError(f"no training rows in {splits.train}")
    steps = -(-train_rows // t.batch_size)
    log.info("%d training rows (%d steps per epoch), %d validation rows", train_rows, steps,
             val_rows)
    # Repeated by batch, not by record (make_dataset(repeat=True)): each epoch of `steps`
    # batches is then exactly one pass, every row once. Records repeated before the shuffle
    # blend the next pass into this one: with a 100k buffer over 140k demo rows, ~26% of
    # "epoch 1" were second copies while as many rows were never seen (1 - 1/e of the 100k
    # next-pass rows read in), and the CTR AUC gap to the oracle grew from ~0.03 to 0.042.
    train_ds = make_dataset(files, schema, config, training=True, time_range=splits.train,
                            extra_features=extra_features).repeat()
    val_ds = make_dataset(files, schema, config, training=False, time_range=splits.validation,
                          extra_features=extra_features).repeat()
    return train_ds, steps, val_ds, max(1, -(-val_rows // t.batch_size))


def fit(model: MultiTaskRanker, files, schema: Schema, config: ExperimentConfig,
        splits: Splits, model_dir: str, verbose: int = 2) -> tf.keras.callbacks.History:
    t = config.training
    train_ds, steps, val_ds, val_steps = training_input(files, schema, config, splits)
    callbacks = [
        tf.keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq=100),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(model_dir, "checkpoints", "epoch-{epoch:03d}"), save_weights_only=True),
    ]
    stop = early_stopping(t, config.tasks)
    if stop is not None:
        callbacks.append(stop)
    return model.fit(train_ds, validation_data=val_ds, epochs=t.epochs, steps_per_epoch=steps,
                     validation_steps=val_steps, callbacks=callbacks, verbose=verbose)


def early_stopping(training, tasks) -> Optional[tf.keras.callbacks.EarlyStopping]:
    """``training.early_stopping_*`` as a Keras callback restoring the best epoch's weights
    (None with patience 0): on the first task's validation AUC (its Keras AUC metric,
    ``val_<task>_auc``) or on the validation total loss."""
    if not training.early_stopping_patience:
        return None
    if training.early_stopping_metric == "auc":
        monitor, mode = f"val_{tasks[0].name}_auc", "max"
    else:
        monitor, mode = "val_total_loss", "min"
    return tf.keras.callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=training.early_stopping_patience,
        restore_best_weights=True, verbose=1)


def warmup_examples(files, n: int) -> list[bytes]:
    if n == 0:
        return []
    return [r.numpy() for r in tf.data.TFRecordDataset(files[:1]).take(n)]


def export_dir(config: ExperimentConfig, model_dir: str) -> str:
    base = config.export.base_path or os.path.join(model_dir, "export")
    return os.path.join(base, config.export.model_name)


def train(config: ExperimentConfig, data_dir: str, model_dir: str, *, export: bool = True,
          verbose: int = 2) -> dict:
    """Fits, evaluates on the test split and exports; returns a summary dict."""
    schema = load_schema(data_dir)
    files = sample_files(data_dir)
    splits = time_splits(schema, config)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.yaml"), "w") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    with open(os.path.join(model_dir, "schema.json"), "w") as f:
        json.dump(schema.to_json(), f, indent=2)
    log.info("train %s, validation %s, test %s", splits.train, splits.validation, splits.test)

    model = build_model(config, schema)
    start = time.perf_counter()
    history = fit(model, files, schema, config, splits, model_dir, verbose)
    fit_seconds = time.perf_counter() - start
    offsets = calibrate(model, make_dataset(files, schema, config, training=False,
                                            time_range=splits.validation), config)
    if offsets:
        log.info("calibration logit offsets (validation day): %s", offsets)
    model.save_weights(os.path.join(model_dir, WEIGHTS))

    report = evaluate_model(model, files, schema, config, splits.test)
    write_json(report, os.path.join(model_dir, "metrics.json"))
    summary = {"fit_seconds": round(fit_seconds, 1), "epochs": len(history.epoch),
               "calibration_offsets": offsets,
               "history": {k: [float(x) for x in v] for k, v in history.history.items()},
               "report": report}
    if export:
        summary["export"] = export_model(
            model, schema, config.feature_names, export_dir(config, model_dir),
            model_name=config.export.model_name,
            warmup_examples=warmup_examples(files, config.export.warmup_examples))
    return summary


def main(argv: Optional[list] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="ranking-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="experiment YAML (configs/*.yaml)")
    p.add_argument("--data", required=True, help="ranking-pipeline output directory")
    p.add_argument("--model-dir", required=True, help="where the run writes its files")
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    args = p.parse_args(argv)
    config = load_experiment(args.config)
    if args.epochs is not None:
        config = dataclasses.replace(
            config, training=dataclasses.replace(config.training, epochs=args.epochs))
    summary = train(config, args.data, args.model_dir, export=not args.no_export)
    print(format_table(summary["report"]))
    if "export" in summary:
        print(f"exported: {summary['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
