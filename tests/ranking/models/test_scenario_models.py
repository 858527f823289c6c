"""MultiTaskRanker with the scenario towers (DWG, STAR) and gates (EPNet, PPNet, PEPNet) chosen
by the shipped configs: they train, every variable learns, the domain (or the gate's side
features) changes the output, an unknown domain takes the shared path, and the export loads in
the TF1 Session loader in a fresh process with the in-memory predictions."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ranking.config import DWGConfig, load_experiment
from ranking.data.input import make_dataset
from ranking.data.schema import load_schema
from ranking.export import export_model
from ranking.features.embedding import DENSE, EMBEDDINGS
from ranking.models.multitask import MultiTaskRanker
from ranking.train import sample_files
from tests.ranking.test_export import TF1_LOAD

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "configs")
# option -> (shipped config, model overrides)
OPTIONS = {
    "dwg": ("dwg_esmm", {}),
    "dwg_low_rank": ("dwg_esmm", {"dwg": DWGConfig(mode="low_rank", rank=2, shrinkage_k=50.0)}),
    "star": ("star_esmm", {}),
    "epnet": ("ple_epnet_esmm", {}),
    "ppnet": ("pepnet_esmm", {"gating": "ppnet", "domain_side_features": []}),
    "pepnet": ("pepnet_esmm", {}),
}
TINY = {"bottom_units": [16], "task_tower_units": [8], "expert_units": [16], "levels": 1,
        "shared_experts": 1, "task_experts": 1, "gate_hidden_units": 8}
UNKNOWN = b"XX|new"   # a domain missing from domain.vocabulary: index 0
ROWS, STEPS = 256, 8
# Per-domain parameters of the scenario layers: [D, ...] (every row a known domain's) and
# [D + 1, ...] (row 0 the shared / unknown-domain one).
PER_DOMAIN = ("domain_kernels", "domain_deltas", "domain_u", "domain_v", "domain_biases",
              "domain_gamma", "domain_beta")
PER_DOMAIN_AND_SHARED = ("moving_mean", "moving_variance", "domain_embedding")


def tiny_config(option):
    name, overrides = OPTIONS[option]
    config = load_experiment(os.path.join(CONFIGS, f"{name}.yaml"))
    # Without the domain string's own embedding the domain reaches the model through its index
    # (and the gates' side features) only, so a domain change tests the scenario layers.
    features = dataclasses.replace(
        config.features, ids=[f for f in config.features.ids if f.name != "domain"])
    model = dataclasses.replace(config.model, **{**TINY, **overrides})
    if model.star is not None:
        model = dataclasses.replace(model, star=dataclasses.replace(
            model.star, domain_features=[n for n in model.star.domain_features
                                         if n != "domain"]))
    training = dataclasses.replace(config.training, batch_size=ROWS, learning_rate=0.01,
                                   steps_per_execution=1)
    return dataclasses.replace(config, features=features, model=model, training=training)


def _with_unknown_domains(records):
    """Every 8th example's domain set to UNKNOWN (the others keep theirs)."""
    out = []
    for i, record in enumerate(records):
        example = tf.train.Example.FromString(record)
        if i % 8 == 0:
            example.features.feature["domain"].bytes_list.value[:] = [UNKNOWN]
        out.append(example.SerializeToString())
    return out


@pytest.fixture(scope="module")
def data(simulated_samples, tmp_path_factory):
    """``(schema, serialized examples, their TFRecord file)``: ROWS simulated samples, one in
    8 of an unknown domain."""
    files = sample_files(simulated_samples)
    records = _with_unknown_domains(
        [r.numpy() for r in tf.data.TFRecordDataset(files).take(ROWS)])
    path = str(tmp_path_factory.mktemp("scenario") / "samples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)
    return load_schema(simulated_samples), records, path


def _batch(data, config):
    schema, _, path = data
    return next(iter(make_dataset([path], schema, config, training=False, batch_size=ROWS)))


def _set(features, name, value):
    return {**features, name: tf.fill(tf.shape(features[name]), value)}


@pytest.fixture(scope="module")
def trained(data):
    """option -> ``(config, model, history losses)``: STEPS Adam steps on the batch."""
    cache = {}

    def get(option):
        if option not in cache:
            config = tiny_config(option)
            tf.keras.utils.set_random_seed(0)
            model = MultiTaskRanker(config, data[0])
            model.compile(tf.keras.optimizers.Adam(config.training.learning_rate))
            batch = _batch(data, config)
            history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=STEPS,
                                steps_per_epoch=1, verbose=0)
            cache[option] = (config, model, history.history["total_loss"])
        return cache[option]

    return get


@pytest.mark.parametrize("option", list(OPTIONS))
def test_builds_from_config_and_loss_decreases(trained, option):
    config, model, losses = trained(option)
    layer_of = {"dwg": "DWGTower", "dwg_low_rank": "DWGTower", "star": "StarTower"}
    assert type(model.tower).__name__ == layer_of.get(option, type(model.tower).__name__)
    assert (model.epnet is not None) == (option in ("epnet", "pepnet"))
    assert (model.ppnet_towers is not None) == (option in ("ppnet", "pepnet"))
    assert (model.star_aux_net is not None) == (option == "star")
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert losses[-1] < 0.75 * losses[0], losses


@pytest.mark.parametrize("option", list(OPTIONS))
def test_every_trainable_variable_gets_a_gradient(trained, data, option):
    config, model, _ = trained(option)
    features, labels = _batch(data, config)
    with tf.GradientTape() as tape:
        loss = model.compute_loss((features, labels), training=True)
    variables = model.trainable_variables
    names = {v.name for v in variables}
    wanted = {"dwg": "domain_deltas", "dwg_low_rank": "domain_u", "star": "domain_gamma",
              "epnet": "epnet/", "ppnet": "ppnet_cvr/", "pepnet": "ppnet_ctr/"}[option]
    assert any(wanted in n for n in names), sorted(names)
    for var, grad in zip(variables, tape.gradient(loss, variables)):
        assert grad is not None, var.name
        values = grad.values if isinstance(grad, tf.IndexedSlices) else grad
        assert np.any(values.numpy() != 0), var.name


@pytest.mark.parametrize("option", ["dwg", "dwg_low_rank", "star"])
def test_two_domains_differ_and_unknown_domain_takes_the_shared_path(trained, data, option):
    config, model, _ = trained(option)
    features, _ = _batch(data, config)
    us_home = model(_set(features, "domain", "US|home"))["ctr"].numpy()
    br_cart = model(_set(features, "domain", "BR|cart"))["ctr"].numpy()
    assert np.max(np.abs(us_home - br_cart)) > 1e-3  # same non-domain input, other domain

    # Moving every domain's own parameters leaves the unknown-domain rows as they were and
    # moves the known-domain rows: unknown domains use the shared weights only.
    domains = features["domain"].numpy()
    unknown = domains == UNKNOWN
    assert 0 < unknown.sum() < len(unknown)
    before = model.logits(features)
    rng = np.random.default_rng(0)
    moved = 0
    # DWG's deltas enter scaled by delta_scale: move them as much as the other layers' own.
    sd = 0.5 / (config.model.dwg_options.delta_scale if config.model.tower == "dwg" else 1.0)
    for var in model.variables:
        short = var.name.split("/")[-1].split(":")[0]
        if short in PER_DOMAIN or short in PER_DOMAIN_AND_SHARED:
            noise = rng.normal(0.0, sd, var.shape).astype(np.float32)
            if short in PER_DOMAIN_AND_SHARED:
                noise[0] = 0.0  # row 0 is the shared row
            if short == "moving_variance":
                noise = np.abs(noise)
            var.assign_add(noise)
            moved += 1
    assert moved >= (2 if option != "star" else 5)
    after = model.logits(features)
    for name in ("ctr", "cvr", "ctcvr"):
        b, a = before[name].numpy(), after[name].numpy()
        np.testing.assert_allclose(a[unknown], b[unknown], rtol=0, atol=1e-6)
        assert np.min(np.abs(a[~unknown] - b[~unknown])) > 1e-4, name


def _gate_inputs(model, features, names):
    embedded = model.embedding(features)
    return embedded[DENSE], [embedded[EMBEDDINGS][n] for n in names]


@pytest.mark.parametrize("option", ["epnet", "ppnet", "pepnet"])
def test_gates_depend_on_their_side_features(trained, data, option):
    """Same embedding vector, other domain-side (EPNet) or personal (PPNet) features: other
    gates. (At the output the change would also come through the features' own embeddings.)"""
    config, model, _ = trained(option)
    features, _ = _batch(data, config)
    m = config.model
    if model.epnet is not None:
        x, side_a = _gate_inputs(model, _set(_set(features, "country", "US"), "scene", "home"),
                                 m.domain_side_features)
        _, side_b = _gate_inputs(model, _set(_set(features, "country", "BR"), "scene", "cart"),
                                 m.domain_side_features)
        gate_a, gate_b = model.epnet.gates([x, side_a]), model.epnet.gates([x, side_b])
        assert gate_a.shape == x.shape
        assert np.max(np.abs(gate_a - gate_b)) > 1e-4
    if model.ppnet_towers is not None:
        x, personal_a = _gate_inputs(model, features, m.personal_features)
        _, personal_b = _gate_inputs(model, _set(features, "user_id", "u-someone-else"),
                                     m.personal_features)
        rep = tf.zeros([ROWS, TINY["bottom_units"][0]])  # the tower output is not a gate input
        for tower in model.ppnet_towers:
            (gate_a,) = tower.gates([rep, personal_a + [x]])
            (gate_b,) = tower.gates([rep, personal_b + [x]])
            assert gate_a.shape == (1, ROWS, TINY["task_tower_units"][0])
            assert np.max(np.abs(gate_a - gate_b)) > 1e-4


@pytest.mark.parametrize("option", ["dwg", "star", "epnet", "ppnet", "pepnet"])
def test_export_loads_in_the_tf1_session_loader_and_predicts_the_same(trained, data, option,
                                                                       tmp_path):
    config, model, _ = trained(option)
    schema, records, _ = data
    path = export_model(model, schema, config.feature_names, str(tmp_path / option))
    (tmp_path / "examples.json").write_text(json.dumps([r.hex() for r in records]))
    subprocess.run([sys.executable, "-c", TF1_LOAD, path, str(tmp_path / "examples.json"),
                    str(tmp_path / "out.json")], check=True,
                   env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    loaded = json.loads((tmp_path / "out.json").read_text())
    features, _ = _batch(data, config)
    expected = model(features)
    assert sorted(loaded["outputs"]) == ["ctcvr", "ctr", "cvr"]
    for name in ("ctr", "cvr", "ctcvr"):
        got = np.asarray(loaded["outputs"][name])
        assert got.shape == (ROWS,)
        np.testing.assert_allclose(got, expected[name].numpy(), rtol=0, atol=1e-6)
    assert np.std(expected["ctr"].numpy()) > 1e-4


def test_ppnet_gates_read_the_embedding_vector_without_training_it(trained, data):
    config, model, _ = trained("pepnet")
    features, _ = _batch(data, config)
    embedded = model.embedding(features)
    x = embedded[DENSE]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, embedded[EMBEDDINGS]["user_id"]])
        inputs = model.ppnet_gate_inputs(embedded, x)
        total = tf.add_n([tf.reduce_sum(t) for t in inputs])
        personal = tf.reduce_sum(inputs[0])
    assert len(inputs) == len(config.model.personal_features) + 1
    np.testing.assert_array_equal(inputs[-1], x)
    np.testing.assert_array_equal(inputs[0], embedded[EMBEDDINGS]["user_id"])
    assert tape.gradient(total, x) is None  # stop_gradient: no path back to x
    assert tape.gradient(personal, embedded[EMBEDDINGS]["user_id"]) is not None


def test_star_feeds_domain_features_to_the_auxiliary_network_only(trained, data):
    """Country and scene skip the star network (its partitioned norm would divide their
    zero within-domain variance) and reach the output through the auxiliary network."""
    config, model, _ = trained("star")
    left_out = config.model.star_options.domain_features
    assert left_out == ["country", "scene"]
    features, _ = _batch(data, config)
    dims = {f.name: f.dim for f in config.features.ids}
    embedded = model.embedding(features)
    tower_input = model._tower_input(embedded).numpy()
    assert model.tower.norm.domain_gamma.shape[-1] == tower_input.shape[-1] == (
        embedded["dense"].shape[-1] - sum(dims[n] for n in left_out))
    assert model.star_aux_net.hidden.dense_layers[0].kernel.shape[0] == (
        config.model.star_options.aux_embedding_dim + sum(dims[n] for n in left_out))
    before = model(features)["ctr"].numpy()
    saved = {n: model.embedding.tables[n].numpy() for n in left_out}
    try:
        for n in left_out:
            model.embedding.tables[n].assign(saved[n] + 1.0)
        np.testing.assert_array_equal(
            model._tower_input(model.embedding(features)).numpy(), tower_input)
        assert np.abs(model(features)["ctr"].numpy() - before).max() > 1e-4
    finally:
        for n in left_out:
            model.embedding.tables[n].assign(saved[n])
