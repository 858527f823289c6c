"""Training data: the sample schema (:mod:`ranking.data.schema`) and tf.data input
(:mod:`ranking.data.input`)."""
from ranking.data.input import TimeRange, list_files, make_dataset, max_timestamp, split_by_time
from ranking.data.schema import (FeatureSpec, Schema, SchemaError, check_config, load_schema,
                                 parse_spec)

__all__ = ["TimeRange", "list_files", "make_dataset", "max_timestamp", "split_by_time",
           "FeatureSpec", "Schema", "SchemaError", "check_config", "load_schema", "parse_spec"]
