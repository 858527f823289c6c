"""``ranking-export``: export a trained run as a new SavedModel version for TF Serving.

    ranking-export --model-dir runs/ple [--base-path /models] [--version 7]

Rebuilds the model from the run's ``config.yaml`` and ``schema.json``, restores its final
weights and writes ``<base path>/<model name>/<version>/`` (default base path
``<model-dir>/export``, default version: one more than the largest present), atomically.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import yaml

from ranking.config import experiment_from_mapping
from ranking.data.schema import load_schema
from ranking.export import export_model
from ranking.train import WEIGHTS, build_model, export_dir, sample_files, warmup_examples


def load_run(model_dir: str):
    """(config, schema, model with the run's final weights) of a ``ranking-train`` run."""
    with open(os.path.join(model_dir, "config.yaml")) as f:
        config = experiment_from_mapping(yaml.safe_load(f))
    schema = load_schema(os.path.join(model_dir, "schema.json"))
    model = build_model(config, schema)
    weights = os.path.join(model_dir, WEIGHTS)
    if not os.path.exists(weights + ".index"):
        raise FileNotFoundError(f"{model_dir} has no trained weights ({weights}.index); "
                                "run ranking-train first")
    model.load_weights(weights).expect_partial()
    return config, schema, model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ranking-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="a ranking-train run directory")
    p.add_argument("--base-path", help="TF Serving base path (default <model-dir>/export)")
    p.add_argument("--version", type=int, help="version number (default: next)")
    p.add_argument("--data", help="sample directory for warmup requests (default: none)")
    args = p.parse_args(argv)
    config, schema, model = load_run(args.model_dir)
    if args.base_path:
        config = dataclasses.replace(
            config, export=dataclasses.replace(config.export, base_path=args.base_path))
    warmup = (warmup_examples(sample_files(args.data), config.export.warmup_examples)
              if args.data else [])
    path = export_model(model, schema, config.feature_names, export_dir(config, args.model_dir),
                        version=args.version, model_name=config.export.model_name,
                        warmup_examples=warmup)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
