"""Shared fixtures: TensorFlow settings, and a small simulated sample set built by the real
simulator and pipeline (ranking and serving tests use it)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402

import pytest  # noqa: E402

from ranking.config import load_experiment  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SMALL_MODEL = {"levels": 1, "shared_experts": 1, "task_experts": 1, "expert_units": [16],
               "task_tower_units": [8]}


@pytest.fixture(scope="session")
def simulated_samples(tmp_path_factory):
    """``ranking-simulate`` 6000 impressions + ``ranking-pipeline``: a samples directory."""
    from ranking import demo

    out = tmp_path_factory.mktemp("sim")
    simulation = demo.run_simulation(str(out / "sim"), 6000, seed=5)
    demo.run_pipeline(str(out / "sim"), str(out / "samples"),
                      simulation["world"]["window_end_ts"], demo.DEFAULT_PIPELINE_CONFIG)
    return str(out / "samples")


@pytest.fixture(scope="session")
def small_experiment():
    """A factory: the shipped config with a tiny tower and fast training settings."""
    return _small_experiment


def _small_experiment(name="ple_esmm", **training):
    config = load_experiment(os.path.join(CONFIGS, f"{name}.yaml"))
    model = dataclasses.replace(config.model, **SMALL_MODEL)
    train = dataclasses.replace(config.training, **{
        "epochs": 1, "batch_size": 256, "shuffle_buffer": 2000, "steps_per_execution": 1,
        **training})
    return dataclasses.replace(config, model=model, training=train)


@pytest.fixture
def mixed_bf16():
    """Global policy mixed_bfloat16 for the test, the previous policy restored afterwards."""
    import tensorflow as tf

    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)
