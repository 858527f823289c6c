"""Export: the SavedModel loads in a fresh process with the TF1 Session loader (as TF Serving
does) and predicts what the in-memory model predicts; versions appear atomically."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ranking.data.input import make_dataset
from ranking.data.schema import load_schema
from ranking.export import export_model, next_version
from ranking.train import build_model, sample_files

TF1_LOAD = r"""
import json, sys
import numpy as np
import tensorflow as tf
path, examples_file, out_file = sys.argv[1:]
examples = [bytes.fromhex(h) for h in json.load(open(examples_file))]
with tf.compat.v1.Session(graph=tf.Graph()) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    sig = meta.signature_def["serving_default"]
    fetch = {k: v.name for k, v in sig.outputs.items()}
    got = sess.run(fetch, {sig.inputs["inputs"].name: examples})
    json.dump({"signatures": sorted(meta.signature_def),
               "inputs": {k: [v.dtype, [d.size for d in v.tensor_shape.dim]]
                          for k, v in sig.inputs.items()},
               "method": sig.method_name,
               "outputs": {k: np.asarray(v).tolist() for k, v in got.items()}},
              open(out_file, "w"))
"""


@pytest.fixture(scope="module")
def trained(simulated_samples, small_experiment):
    config = small_experiment()
    schema = load_schema(simulated_samples)
    files = sample_files(simulated_samples)
    model = build_model(config, schema)
    model.fit(make_dataset(files, schema, config, training=True), epochs=1, verbose=0)
    return config, schema, files, model


def _examples(files, n):
    return [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]


def test_tf1_session_loader_predicts_like_the_in_memory_model(tmp_path, trained):
    config, schema, files, model = trained
    examples = _examples(files, 300)
    path = export_model(model, schema, config.feature_names, str(tmp_path / "ple_esmm"),
                        model_name="ple_esmm", warmup_examples=examples[:5])
    assert path == str(tmp_path / "ple_esmm" / "1")
    (tmp_path / "examples.json").write_text(json.dumps([e.hex() for e in examples]))
    subprocess.run([sys.executable, "-c", TF1_LOAD, path, str(tmp_path / "examples.json"),
                    str(tmp_path / "out.json")], check=True, env={
                        **os.environ, "TF_USE_LEGACY_KERAS": "1"})
    loaded = json.loads((tmp_path / "out.json").read_text())
    # __saved_model_init_op is TF2's initializer entry, present in every SavedModel.
    assert loaded["signatures"] == ["__saved_model_init_op", "raw_features", "serving_default"]
    assert loaded["inputs"] == {"inputs": [tf.string.as_datatype_enum, [-1]]}
    assert loaded["method"] == "tensorflow/serving/predict"
    assert sorted(loaded["outputs"]) == ["ctcvr", "ctr", "cvr"]

    parsed, _ = next(iter(make_dataset(files, schema, config, training=False,
                                       batch_size=300)))
    expected = model(parsed)
    for name in ("ctr", "cvr", "ctcvr"):
        got = np.asarray(loaded["outputs"][name])
        assert got.shape == (300,)
        np.testing.assert_allclose(got, expected[name].numpy(), rtol=0, atol=1e-6)
    # ctcvr really is the product, and the model is not constant.
    np.testing.assert_allclose(expected["ctcvr"], expected["ctr"] * expected["cvr"], rtol=1e-5)
    assert np.std(expected["ctr"].numpy()) > 1e-4


def test_versions_are_numbered_atomic_and_never_overwritten(tmp_path, trained):
    config, schema, files, model = trained
    base = str(tmp_path / "m")
    os.makedirs(os.path.join(base, "7"))
    os.makedirs(os.path.join(base, "not-a-version"))
    assert next_version(base) == 8
    path = export_model(model, schema, config.feature_names, base)
    assert path.endswith("/8") and os.path.exists(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(base)) == ["7", "8", "not-a-version"]  # no temp dir left behind
    with pytest.raises(FileExistsError, match="version 8 already exists"):
        export_model(model, schema, config.feature_names, base, version=8)
    assert sorted(os.listdir(base)) == ["7", "8", "not-a-version"]


def test_warmup_file_holds_predict_requests(tmp_path, trained):
    from tensorflow_serving.apis import prediction_log_pb2

    config, schema, files, model = trained
    examples = _examples(files, 3)
    path = export_model(model, schema, config.feature_names, str(tmp_path / "w"),
                        model_name="ple_esmm", warmup_examples=examples)
    records = list(tf.data.TFRecordDataset(
        os.path.join(path, "assets.extra", "tf_serving_warmup_requests")))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    assert len(logs) == 3
    request = logs[1].predict_log.request
    assert (request.model_spec.name, request.model_spec.signature_name) == (
        "ple_esmm", "serving_default")
    assert tf.make_ndarray(request.inputs["inputs"]).tolist() == [examples[1]]


def test_raw_feature_signature_equals_serving_default_on_every_sample(tmp_path, trained):
    """Parity: in-graph crosses (and other derived features) from the raw fields give the
    same scores as the pipeline's own tf.Examples, for every sample of a pipeline run."""
    from ranking.features.raw import raw_input_names

    config, schema, files, model = trained
    path = export_model(model, schema, config.feature_names, str(tmp_path / "p"))
    loaded = tf.saved_model.load(path)
    by_example, by_raw = loaded.signatures["serving_default"], loaded.signatures["raw_features"]
    raw_names = raw_input_names(schema, config.feature_names)
    assert "cross_seq_item_x_item" not in raw_names and "seq_item_ids" in raw_names
    assert sorted(by_raw.structured_input_signature[1]) == sorted(raw_names)
    ds = make_dataset(files, schema, config, training=False, batch_size=1000,
                      extra_features=raw_names)
    serialized = tf.data.TFRecordDataset(files).batch(1000)
    rows = 0
    for (features, _), examples in zip(ds, serialized):
        want = by_example(inputs=examples)
        got = by_raw(**{n: features[n] for n in raw_names})
        for name in ("ctr", "cvr", "ctcvr"):
            np.testing.assert_allclose(got[name].numpy(), want[name].numpy(), rtol=0,
                                       atol=1e-6)
        rows += len(examples)
    assert rows == 6000
