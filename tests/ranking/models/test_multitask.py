"""MultiTaskRanker: outputs, the ESMM product, the weighted multi-task loss, masks, gradients."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from ranking.config import ConfigError, TaskConfig
from ranking.data.input import make_dataset
from ranking.data.schema import load_schema
from ranking.models.multitask import MultiTaskRanker, output_names
from ranking.train import sample_files


@pytest.fixture(scope="module")
def batch_and_schema(simulated_samples, small_experiment):
    config = small_experiment()
    schema = load_schema(simulated_samples)
    ds = make_dataset(sample_files(simulated_samples), schema, config, training=False,
                      batch_size=512)
    features, labels = next(iter(ds))
    return features, labels, schema


def _bce(labels, logits, weights=None):
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits).numpy()
    weights = np.ones_like(losses) if weights is None else np.asarray(weights)
    return float(np.sum(losses * weights) / len(losses))  # Keras SUM_OVER_BATCH_SIZE


def test_esmm_outputs_and_weighted_loss(batch_and_schema, small_experiment):
    features, labels, schema = batch_and_schema
    config = small_experiment()
    config = dataclasses.replace(config, tasks=[
        TaskConfig("ctr", "click", weight=1.0), TaskConfig("ctcvr", "conversion", weight=2.5),
        TaskConfig("cvr", "conversion", weight=0.5, mask_label="click")])
    model = MultiTaskRanker(config, schema)
    out = model(features)
    assert sorted(out) == ["ctcvr", "ctr", "cvr"] == sorted(output_names(config))
    assert out["ctr"].shape == (512,) and out["ctr"].dtype == tf.float32
    np.testing.assert_allclose(out["ctcvr"], out["ctr"] * out["cvr"], rtol=1e-5)

    logits = model.logits(features)
    expected = (1.0 * _bce(labels["click"], logits["ctr"])
                + 2.5 * _bce(labels["conversion"], logits["ctcvr"])
                + 0.5 * _bce(labels["conversion"], logits["cvr"], labels["click"]))
    got = float(model.compute_loss((features, labels)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert labels["click"].numpy().sum() > 0  # the mask really removes rows


def test_independent_head_and_unknown_task(batch_and_schema, small_experiment):
    features, labels, schema = batch_and_schema
    config = small_experiment()
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, head="independent", tower="mmoe",
                                          experts=2),
        training=dataclasses.replace(config.training, calibrate=[]),
        tasks=[TaskConfig("click_task", "click"), TaskConfig("buy", "conversion")])
    model = MultiTaskRanker(config, schema)
    out = model(features)
    assert sorted(out) == ["buy", "click_task"]
    np.testing.assert_allclose(out["buy"], tf.sigmoid(model.logits(features)["buy"]),
                               rtol=1e-6)


def test_esmm_with_an_auxiliary_task_gets_its_own_tower(simulated_samples, small_experiment):
    """ESMM + the pipeline's generalized label: a fourth output, trained on its label."""
    esmm = small_experiment()
    config = dataclasses.replace(esmm, tasks=[*esmm.tasks, TaskConfig(
        "category_purchase", "category_purchase", weight=0.5)])
    schema = load_schema(simulated_samples)
    features, labels = next(iter(make_dataset(sample_files(simulated_samples), schema, config,
                                              training=False, batch_size=4096)))
    model = MultiTaskRanker(config, schema)
    out = model(features)
    assert list(out) == ["ctr", "cvr", "category_purchase", "ctcvr"] == list(
        output_names(config))
    logits = model.logits(features)
    expected = (_bce(labels["click"], logits["ctr"])
                + _bce(labels["conversion"], logits["ctcvr"])
                + 0.5 * _bce(labels["category_purchase"], logits["category_purchase"]))
    assert float(model.compute_loss((features, labels))) == pytest.approx(expected, rel=1e-5)
    assert labels["category_purchase"].numpy().sum() > 0


@pytest.mark.parametrize("tower", ["shared_bottom", "mmoe", "ple"])
def test_gradient_reaches_every_variable(batch_and_schema, small_experiment, tower):
    features, labels, schema = batch_and_schema
    config = small_experiment()
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, tower=tower, cross_layers=1, experts=2, bottom_units=[16]))
    model = MultiTaskRanker(config, schema)
    with tf.GradientTape() as tape:
        loss = model.compute_loss((features, labels), training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(model.crosses) == 1
    for var, grad in zip(model.trainable_variables, grads):
        assert grad is not None, var.name
        values = grad.values if isinstance(grad, tf.IndexedSlices) else grad
        assert np.any(values.numpy() != 0), var.name


@pytest.mark.parametrize("tower", ["mmoe", "ple"])
def test_expert_init_config_reaches_the_tower(batch_and_schema, small_experiment, tower):
    features, _, schema = batch_and_schema
    config = small_experiment()
    for expert_init, identical in (("independent", False), ("identical", True)):
        model = MultiTaskRanker(dataclasses.replace(config, model=dataclasses.replace(
            config.model, tower=tower, expert_init=expert_init)), schema)
        model(features)
        banks = model.tower.experts if tower == "ple" else [model.tower.experts]
        for bank in banks:
            assert bank.identical_init is identical
            k = bank.kernels[0].numpy()
            assert np.array_equal(k[0], k[1]) is identical


def test_cross_layer_config_is_validated():
    from ranking.config import ModelConfig

    with pytest.raises(ConfigError, match="model.cross_layers must be >= 0, got -1"):
        ModelConfig(cross_layers=-1)
    with pytest.raises(ConfigError, match="model.cross_projection_dim must be >= 1, got 0"):
        ModelConfig(cross_projection_dim=0)


def test_id_biases_step_is_sgd_on_the_summed_residuals(batch_and_schema, small_experiment):
    """One train step: every other weight gets the compiled Adam, each bias row moves by
    ``-eta * sum_i (r_i - mean_j r_j)`` over the batch rows ``i`` that look it up, with the
    residual ``r_i = p_i - y_i`` (one BCE task, so ``dl_i/ds_i = r_i``; the loss is the batch
    mean and train_step scales by B; IdBias centres the gradient over the batch)."""
    features, labels, schema = batch_and_schema
    base = small_experiment()
    assert [f.name for f in base.features.biases] == ["user_id", "item_id"]  # shipped
    eta = 0.05
    config = dataclasses.replace(
        base, tasks=[TaskConfig("ctr", "click")],
        model=dataclasses.replace(base.model, head="independent"),
        training=dataclasses.replace(base.training, calibrate=[], bias_learning_rate=eta))
    model = MultiTaskRanker(config, schema)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    p = model(features)["ctr"].numpy()
    residual = p - labels["click"].numpy()
    residual -= residual.mean()
    tower_before = [v.numpy().copy() for v in model.task_towers.trainable_variables]
    model.train_step((features, labels))
    for f in config.features.biases:
        rows = tf.strings.to_hash_bucket_fast(features[f.name], f.buckets).numpy()
        expected = np.zeros(f.buckets)
        np.add.at(expected, rows, -eta * residual)
        got = model.id_bias.tables[f.name].numpy()[:, 0]
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert len(np.unique(rows)) < len(rows)  # some ids repeat: their residuals add up
    assert int(model.optimizer.iterations) == 1 == int(model.bias_optimizer.iterations)
    assert all(np.any(v.numpy() != b) for v, b in
               zip(model.task_towers.trainable_variables, tower_before))
    # Adam holds its step and two slots for every variable but the bias tables
    others = len(model.trainable_variables) - len(model.id_bias.trainable_variables)
    assert len(model.optimizer.variables()) == 1 + 2 * others


def test_without_biases_there_is_no_bias_layer(batch_and_schema, small_experiment):
    features, labels, schema = batch_and_schema
    config = small_experiment()
    config = dataclasses.replace(config, features=config.features.without("biases"))
    model = MultiTaskRanker(config, schema)
    model.compile(optimizer="adam")
    assert model.id_bias is None and model.bias_optimizer is None
    assert "user_id" not in config.feature_names
    model.train_step((features, labels))
    assert int(model.optimizer.iterations) == 1
