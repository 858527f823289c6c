"""Experiment config: the shipped YAMLs load, and bad configs fail naming the key and value.

(Named test_experiment_config.py: tests/pipelines/test_config.py holds the basename
test_config.py, and pytest's default import mode needs unique basenames.)
"""
import copy
import dataclasses
import os
import textwrap

import pytest
import yaml

from ranking.config import (ConfigError, ExperimentConfig, ModelConfig,
                            experiment_from_mapping, load_experiment)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "configs")


def _yaml(name):
    with open(os.path.join(CONFIGS, name)) as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("name,tower", [("ple_esmm.yaml", "ple"), ("mmoe_esmm.yaml", "mmoe"),
                                        ("shared_bottom.yaml", "shared_bottom")])
def test_shipped_configs_load(name, tower):
    cfg = load_experiment(os.path.join(CONFIGS, name))
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name == name[:-len(".yaml")] == cfg.export.model_name
    assert cfg.model.tower == tower and cfg.model.head == "esmm"
    assert [(t.name, t.label) for t in cfg.tasks] == [("ctr", "click"), ("ctcvr", "conversion")]
    assert cfg.label_names == ["click", "conversion"]
    shared = {s.name: s.share_embedding_with for s in cfg.features.sequences}
    assert shared["seq_item_ids"] == "item_id" and shared["seq_category_ids"] == "category_id"
    assert [c.name for c in cfg.features.crosses][:2] == [
        "cross_seq_category_x_category", "cross_imp_category_x_category"]
    assert len(cfg.domain.vocabulary) == 12 and cfg.domain.num_domains == 13
    assert "domain" in cfg.feature_names and "click" not in cfg.feature_names
    # round trip through a plain mapping
    assert experiment_from_mapping(cfg.to_dict()) == cfg


def test_ple_config_values():
    cfg = load_experiment(os.path.join(CONFIGS, "ple_esmm.yaml"))
    m = cfg.model
    assert (m.levels, m.shared_experts, m.task_experts) == (2, 2, 2)
    assert m.expert_units == [256, 128] and m.task_tower_units == [64]
    assert cfg.training.test_days == 1 and cfg.training.optimizer == "adam"
    assert m.expert_init == "identical"  # shipped; the default is "independent"
    assert ModelConfig().expert_init == "independent"


def test_unknown_key_names_the_key_path(tmp_path):
    data = _yaml("ple_esmm.yaml")
    data["model"]["expert_unitz"] = [1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad\.yaml: model: unknown key\(s\) \['expert_unitz'\]"):
        load_experiment(path)


def test_unknown_key_in_a_list_entry_names_the_index():
    data = _yaml("ple_esmm.yaml")
    data["features"]["ids"][2]["bucket"] = 5
    with pytest.raises(ConfigError, match=r"features\.ids\[2\]: unknown key\(s\) \['bucket'\]"):
        experiment_from_mapping(data)


@pytest.mark.parametrize("path,value,message", [
    (("training", "batch_size"), "big", r"training\.batch_size: expected int, got 'big'"),
    (("model", "tower"), "mlp", r"model\.tower: 'mlp' is not one of"),
    (("training", "optimizer"), "sgd", r"training\.optimizer: 'sgd' is not one of"),
    (("training", "batch_size"), 0, r"training\.batch_size must be >= 1, got 0"),
    (("model", "dropout"), 1.5, r"model\.dropout must be in \[0, 1\), got 1\.5"),
    (("model", "expert_units"), [256, 0], r"model\.expert_units\[1\] must be >= 1, got 0"),
    (("model", "levels"), 0, r"model\.levels must be >= 1, got 0"),
    (("model", "expert_init"), "same", r"model\.expert_init: 'same' is not one of"),
    (("training", "learning_rate"), -1,
     r"training\.learning_rate must be a finite number > 0, got -1"),
    (("training", "bias_learning_rate"), 0,
     r"training\.bias_learning_rate must be a finite number > 0, got 0"),
])
def test_bad_values_name_key_and_value(path, value, message):
    data = _yaml("ple_esmm.yaml")
    data[path[0]][path[1]] = value
    with pytest.raises(ConfigError, match=message):
        experiment_from_mapping(data)


def test_bad_id_buckets_name_the_feature():
    data = _yaml("ple_esmm.yaml")
    data["features"]["ids"][0]["buckets"] = 0
    with pytest.raises(ConfigError, match=r"features\.ids\['item_id'\]\.buckets must be >= 1, "
                                          r"got 0"):
        experiment_from_mapping(data)


def test_sequence_must_share_an_ids_entry():
    data = _yaml("ple_esmm.yaml")
    data["features"]["sequences"][0]["share_embedding_with"] = "product_id"
    with pytest.raises(ConfigError, match=r"features\.sequences\[0\]\.share_embedding_with: "
                                          r"'product_id' \(sequence 'seq_item_ids'\) is not an "
                                          r"ids entry"):
        experiment_from_mapping(data)


def test_bad_pooling_names_the_key():
    data = _yaml("ple_esmm.yaml")
    data["features"]["crosses"][1]["pooling"] = "max"
    with pytest.raises(ConfigError, match=r"features\.crosses\[1\]\.pooling: 'max' is not one "
                                          r"of \['mean', 'sum'\]"):
        experiment_from_mapping(data)


def test_task_names_unique_and_esmm_tasks_required():
    data = _yaml("ple_esmm.yaml")
    dup = copy.deepcopy(data)
    dup["tasks"][1]["name"] = "ctr"
    with pytest.raises(ConfigError, match=r"tasks: duplicate name\(s\) \['ctr'\]"):
        experiment_from_mapping(dup)
    no_ctcvr = copy.deepcopy(data)
    no_ctcvr["tasks"][1]["name"] = "cvr"
    with pytest.raises(ConfigError, match=r"model\.head 'esmm' needs tasks named 'ctr' and "
                                          r"'ctcvr'; missing \['ctcvr'\]"):
        experiment_from_mapping(no_ctcvr)
    independent = copy.deepcopy(no_ctcvr)
    independent["model"]["head"] = "independent"
    assert [t.name for t in experiment_from_mapping(independent).tasks] == ["ctr", "cvr"]


def test_duplicate_feature_and_label_as_feature_rejected():
    data = _yaml("ple_esmm.yaml")
    dup = copy.deepcopy(data)
    dup["features"]["ids"].append({"name": "item_id", "buckets": 10})
    with pytest.raises(ConfigError, match=r"features: duplicate name\(s\) \['item_id'\]"):
        experiment_from_mapping(dup)
    leak = copy.deepcopy(data)
    leak["features"]["numerics"].append({"name": "click"})
    with pytest.raises(ConfigError, match=r"\['click'\] are task labels"):
        experiment_from_mapping(leak)


def test_mask_label_and_label_names():
    data = _yaml("ple_esmm.yaml")
    data["tasks"].append(
        {"name": "cvr", "label": "conversion", "mask_label": "click", "weight": 0.5})
    cfg = experiment_from_mapping(data)
    assert cfg.label_names == ["click", "conversion"]
    assert cfg.tasks[2].mask_label == "click" and cfg.tasks[2].weight == 0.5
    data["tasks"][2]["mask_label"] = "conversion"
    with pytest.raises(ConfigError, match=r"tasks\['cvr'\]\.mask_label: 'conversion' is the task's "
                                          r"own label"):
        experiment_from_mapping(data)


def test_empty_crosses_and_without():
    data = _yaml("ple_esmm.yaml")
    data["features"]["crosses"] = []
    cfg = experiment_from_mapping(data)
    assert cfg.features.crosses == [] and "cross_seq_item_x_item" not in cfg.feature_names
    full = load_experiment(os.path.join(CONFIGS, "ple_esmm.yaml"))
    assert full.features.without("crosses") == cfg.features
    assert full.features.without("ids").sequences == []  # sequences share the id tables
    with pytest.raises(ConfigError, match=r"unknown group\(s\) \['cross'\]"):
        full.features.without("cross")


def test_biases_read_their_ids_and_are_validated():
    full = load_experiment(os.path.join(CONFIGS, "ple_esmm.yaml"))
    assert [(f.name, f.buckets, f.encoding) for f in full.features.biases] == [
        ("user_id", 100000, "hash"), ("item_id", 100000, "hash")]
    # item_id is also an ids entry: read once; user_id is read for its bias only
    assert full.feature_names.count("item_id") == 1 and "user_id" in full.feature_names
    assert "user_id" not in full.features.without("biases").input_names
    data = _yaml("ple_esmm.yaml")
    data["features"]["biases"].append({"name": "user_id", "buckets": 10})
    with pytest.raises(ConfigError, match=r"features\.biases: duplicate name\(s\) \['user_id'\]"):
        experiment_from_mapping(data)
    data["features"]["biases"] = [{"name": "user_id", "buckets": -1}]
    with pytest.raises(ConfigError, match=r"features\.biases\['user_id'\]\.buckets.*got -1"):
        experiment_from_mapping(data)
    data["features"]["biases"] = [{"name": "user_id", "buckets": 5, "encoding": "md5"}]
    with pytest.raises(ConfigError, match=r"encoding: 'md5' is not one of"):
        experiment_from_mapping(data)


def test_minimal_yaml_gets_defaults(tmp_path):
    path = tmp_path / "min.yaml"
    path.write_text(textwrap.dedent("""\
        name: tiny
        features:
          ids: [{name: item_id, buckets: 100}]
        tasks:
          - {name: ctr, label: click}
          - {name: ctcvr, label: conversion}
        """))
    cfg = load_experiment(path)
    assert cfg.features.ids[0].dim == 16
    assert cfg.domain.feature == "domain" and cfg.domain.vocabulary == []
    assert cfg.model.tower == "ple" and cfg.training.batch_size == 1024
    assert dataclasses.asdict(cfg)["export"]["model_name"] == "ranking"


def test_missing_required_key_is_named(tmp_path):
    path = tmp_path / "noname.yaml"
    path.write_text("features: {ids: [{name: a, buckets: 3}]}\ntasks: [{name: t, label: click}]\n")
    with pytest.raises(ConfigError, match=r"noname\.yaml: .*name"):
        load_experiment(path)


def test_shipped_model_configs_share_the_demo_feature_set():
    """Benchmarks compare towers on the same inputs: every shipped model config reads the
    features of ple_esmm.yaml (PPNet configs may add the personal ids they gate on)."""
    reference = load_experiment(os.path.join(CONFIGS, "ple_esmm.yaml")).features
    names = [n for n in sorted(os.listdir(CONFIGS)) if n.endswith(".yaml") and n != "pipeline.yaml"]
    assert len(names) >= 7
    for name in names:
        cfg = load_experiment(os.path.join(CONFIGS, name))
        extra = [f for f in cfg.features.ids if f not in reference.ids]
        assert all(f.name in cfg.model.personal_features for f in extra), name
        assert dataclasses.replace(cfg.features, ids=[f for f in cfg.features.ids
                                                      if f not in extra]) == reference, name
