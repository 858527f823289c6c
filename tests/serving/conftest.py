"""Fixtures for the serving tests: one small trained model exported once per session (the
shared simulated samples and tiny experiment of tests/conftest.py), copied into per-test
base paths."""
import pytest
import tensorflow as tf

from serving_helpers import MODEL, NUM_EXAMPLES, Trained


@pytest.fixture(scope="session")
def trained(simulated_samples, small_experiment, tmp_path_factory):
    from ranking.data.input import make_dataset
    from ranking.data.schema import load_schema
    from ranking.export import export_model
    from ranking.train import build_model, sample_files, warmup_examples

    config = small_experiment()
    schema = load_schema(simulated_samples)
    files = sample_files(simulated_samples)
    model = build_model(config, schema)
    model.fit(make_dataset(files, schema, config, training=True), epochs=1, verbose=0)
    template = export_model(model, schema, config.feature_names,
                            str(tmp_path_factory.mktemp("export") / MODEL), model_name=MODEL,
                            warmup_examples=warmup_examples(files, 3))
    examples = [r.numpy() for r in
                tf.data.TFRecordDataset(files).skip(1000).take(NUM_EXAMPLES)]
    return Trained(config, schema, files, model, template, examples)
