"""Experiment config of the scenario towers, gates, losses, task weighting and sample order:
the shipped configs load, and every bad value fails naming its key and quoting the value."""
import copy
import os

import pytest
import yaml

from ranking.config import (ConfigError, DWGConfig, StarConfig, experiment_from_mapping,
                            load_experiment)

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")


def _yaml(name):
    with open(os.path.join(CONFIGS, f"{name}.yaml")) as f:
        return yaml.safe_load(f)


def test_shipped_scenario_configs_load_and_round_trip():
    dwg = load_experiment(os.path.join(CONFIGS, "dwg_esmm.yaml"))
    assert dwg.model.tower == "dwg" and dwg.model.dwg == DWGConfig(mode="residual", delta_scale=0.1)
    star = load_experiment(os.path.join(CONFIGS, "star_esmm.yaml"))
    assert star.model.tower == "star"
    assert star.model.star == StarConfig(partitioned_norm=True, aux_net=True,
                                         aux_net_units=[16], aux_embedding_dim=8,
                                         domain_features=["country", "scene", "domain"])
    pepnet = load_experiment(os.path.join(CONFIGS, "pepnet_esmm.yaml"))
    assert (pepnet.model.gating, pepnet.model.personal_features,
            pepnet.model.domain_side_features) == ("pepnet", ["user_id", "item_id"],
                                                   ["country", "scene"])
    assert pepnet.model.gates_embedding and pepnet.model.gates_task_towers
    epnet = load_experiment(os.path.join(CONFIGS, "ple_epnet_esmm.yaml"))
    assert (epnet.model.tower, epnet.model.gating) == ("ple", "epnet")
    assert epnet.model.gates_embedding and not epnet.model.gates_task_towers
    for cfg in (dwg, star, pepnet, epnet):
        assert cfg.name == cfg.export.model_name
        assert len(cfg.domain.vocabulary) == 12
        assert experiment_from_mapping(cfg.to_dict()) == cfg


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize("name,path,value,message", [
    ("dwg_esmm", ("domain", "vocabulary"), [],
     r"model\.tower 'dwg' has weights per domain and needs the known domains in "
     r"domain\.vocabulary, got \[\]"),
    ("dwg_esmm", ("model", "dwg", "mode"), "sparse",
     r"model\.dwg\.mode: 'sparse' is not one of \['full', 'residual', 'low_rank'\]"),
    ("dwg_esmm", ("model", "dwg", "mode"), "low_rank",
     r"model\.dwg\.rank is required with mode 'low_rank', got None"),
    ("dwg_esmm", ("model", "dwg", "rank"), 4,
     r"model\.dwg\.rank = 4 is only used with model\.dwg\.mode 'low_rank', got "
     r"model\.dwg\.mode 'residual'"),
    ("dwg_esmm", ("model", "dwg", "shrinkage_k"), -1,
     r"model\.dwg\.shrinkage_k must be a finite number >= 0, got -1\.0"),
    ("dwg_esmm", ("model", "dwg", "delta_scale"), 0,
     r"model\.dwg\.delta_scale must be a finite number > 0, got 0\.0"),
    ("dwg_esmm", ("model", "dwg"), {"mode": "full", "delta_scale": 0.1},
     r"model\.dwg\.delta_scale is used with mode 'residual' or 'low_rank' only, got 0\.1 "
     r"with mode 'full'"),
    ("dwg_esmm", ("model", "tower"), "ple",
     r"model\.dwg = DWGConfig\(.*\) is only used with model\.tower 'dwg', got model\.tower "
     r"'ple'"),
    ("star_esmm", ("model", "star", "aux_net_units"), [16, 0],
     r"model\.star\.aux_net_units\[1\] must be >= 1, got 0"),
    ("star_esmm", ("model", "star", "aux_embedding_dim"), 0,
     r"model\.star\.aux_embedding_dim must be >= 1, got 0"),
    ("star_esmm", ("model", "star", "partitioned_norm"), "yes",
     r"model\.star\.partitioned_norm: expected bool, got 'yes'"),
    ("pepnet_esmm", ("model", "gating"), "ppnet",
     r"model\.domain_side_features \['country', 'scene'\] is not used with model\.gating "
     r"'ppnet'"),
    ("pepnet_esmm", ("model", "personal_features"), [],
     r"model\.gating 'pepnet' needs model\.personal_features, got \[\]"),
    ("pepnet_esmm", ("model", "personal_features"), ["user_id", "user_tier"],
     r"model\.personal_features: 'user_tier' is not an ids entry; ids are \['user_id'"),
    ("pepnet_esmm", ("model", "domain_side_features"), ["country", "country"],
     r"model\.domain_side_features: duplicate name\(s\) \['country'\]"),
    ("pepnet_esmm", ("model", "task_tower_units"), [],
     r"model\.gating 'pepnet' gates the hidden layers of the task towers: "
     r"model\.task_tower_units must list at least one layer size, got \[\]"),
    ("pepnet_esmm", ("model", "gating"), "moe",
     r"model\.gating: 'moe' is not one of \['none', 'epnet', 'ppnet', 'pepnet'\]"),
    ("pepnet_esmm", ("model", "gate_hidden_units"), 0,
     r"model\.gate_hidden_units must be >= 1, got 0"),
    ("ple_epnet_esmm", ("model", "domain_side_features"), [],
     r"model\.gating 'epnet' needs model\.domain_side_features, got \[\]"),
    ("star_esmm", ("model", "star", "domain_features"), ["country", "user_tier"],
     r"model\.star\.domain_features: 'user_tier' is not an ids entry; ids are \['item_id'"),
    ("star_esmm", ("model", "star", "domain_features"), ["scene", "scene"],
     r"model\.star\.domain_features: duplicate name\(s\) \['scene'\]"),
    ("star_esmm", ("model", "star", "aux_net"), False,
     r"model\.star\.domain_features \['country', 'scene', 'domain'\] feed the auxiliary "
     r"network: they need model\.star\.aux_net true, got false"),
])
def test_bad_model_values_name_key_and_value(name, path, value, message):
    with pytest.raises(ConfigError, match=message):
        experiment_from_mapping(_set(_yaml(name), path, value))


@pytest.mark.parametrize("task,message", [
    ({"loss": "hinge"}, r"tasks\[0\]\.loss: 'hinge' is not one of \['bce', 'focal', "
                        r"'bce_pairwise_auc'\]"),
    ({"focal": {"gamma": 1.0}},
     r"tasks\['ctr'\]\.focal = FocalLossConfig\(gamma=1\.0, alpha=0\.25\) is only used with "
     r"tasks\['ctr'\]\.loss 'focal', got tasks\['ctr'\]\.loss 'bce'"),
    ({"loss": "focal", "focal": {"gamma": -0.5}},
     r"tasks\['ctr'\]\.focal\.gamma must be a finite number >= 0, got -0\.5"),
    ({"loss": "focal", "focal": {"alpha": 1.5}},
     r"tasks\['ctr'\]\.focal\.alpha must be null or in \[0, 1\], got 1\.5"),
    ({"loss": "focal", "focal": {"gama": 2}},
     r"tasks\[0\]\.focal: unknown key\(s\) \['gama'\]"),
    ({"loss": "bce_pairwise_auc", "pairwise_auc": {"tau": 0}},
     r"tasks\['ctr'\]\.pairwise_auc\.tau must be a finite number > 0, got 0\.0"),
    ({"loss": "bce_pairwise_auc", "pairwise_auc": {"weight": -1}},
     r"tasks\['ctr'\]\.pairwise_auc\.weight must be a finite number >= 0, got -1\.0"),
    ({"loss": "bce_pairwise_auc", "pairwise_auc": {"surrogate": "hinge"}},
     r"tasks\[0\]\.pairwise_auc\.surrogate: 'hinge' is not one of \['softplus', 'sigmoid'\]"),
    ({"mask_normalization": "masked"},
     r"tasks\['ctr'\]\.mask_normalization 'masked' needs a mask_label, got None"),
    ({"mask_normalization": "rows"},
     r"tasks\[0\]\.mask_normalization: 'rows' is not one of \['batch', 'masked'\]"),
])
def test_bad_task_loss_values_name_key_and_value(task, message):
    data = _yaml("star_esmm")
    data["tasks"][0].update(task)
    with pytest.raises(ConfigError, match=message):
        experiment_from_mapping(data)


def test_task_losses_and_options_parse():
    data = _yaml("star_esmm")
    data["tasks"][0].update({"loss": "focal", "focal": {"gamma": 1.0, "alpha": None}})
    data["tasks"][1].update({"loss": "bce_pairwise_auc",
                             "pairwise_auc": {"weight": 0.2, "surrogate": "sigmoid"}})
    data["tasks"].append({"name": "cvr", "label": "conversion", "mask_label": "click",
                          "mask_normalization": "masked"})
    cfg = experiment_from_mapping(data)
    ctr, ctcvr, cvr = cfg.tasks
    assert (ctr.focal_options.gamma, ctr.focal_options.alpha) == (1.0, None)
    p = ctcvr.pairwise_auc_options
    assert (p.weight, p.tau, p.surrogate) == (0.2, 1.0, "sigmoid")
    assert cvr.mask_normalization == "masked" and cvr.loss == "bce"
    assert experiment_from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize("training,message", [
    ({"order": "sliding_window"},
     r"training\.window_size is required with order 'sliding_window', got None"),
    ({"order": "time", "window_size": 100},
     r"training\.window_size = 100 is only used with training\.order 'sliding_window', got "
     r"training\.order 'time'"),
    ({"order": "sliding_window", "window_size": 0}, r"training\.window_size must be >= 1, got 0"),
    ({"order": "random"},
     r"training\.order: 'random' is not one of \['shuffled', 'time', 'sliding_window'\]"),
    ({"task_weighting": "gradnorm"},
     r"training\.task_weighting: 'gradnorm' is not one of \['fixed', 'uncertainty'\]"),
])
def test_bad_training_values_name_key_and_value(training, message):
    data = _yaml("star_esmm")
    data["training"].update(training)
    with pytest.raises(ConfigError, match=message):
        experiment_from_mapping(data)


def test_uncertainty_weighting_needs_unit_task_weights():
    data = _yaml("star_esmm")
    data["training"]["task_weighting"] = "uncertainty"
    assert experiment_from_mapping(copy.deepcopy(data)).training.task_weighting == "uncertainty"
    data["tasks"][1]["weight"] = 2.0
    with pytest.raises(ConfigError, match=r"tasks\['ctcvr'\]\.weight must be 1 with "
                                          r"training\.task_weighting 'uncertainty' .* got 2\.0"):
        experiment_from_mapping(data)
    data["training"]["task_weighting"] = "fixed"
    assert experiment_from_mapping(data).tasks[1].weight == 2.0
