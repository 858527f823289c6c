"""The experiment config: one YAML file describes an experiment end to end.

Sections (see ``configs/ple_esmm.yaml`` for a commented example):

* ``name``: the experiment's name (run directories, exported model).
* ``features``: which sample features the model reads and how they are embedded
  (:class:`FeaturesConfig`): ``ids`` (string ids hashed in-graph into ``buckets`` and
  embedded), ``sequences`` (string sequences embedded with the table of an ``ids`` entry and
  pooled over their non-pad entries), ``crosses`` (pipeline-hashed sequence x target crosses,
  bucket count read from the schema) and ``numerics`` (NaN filled, optionally ``log1p``).
  Leaving a group out (e.g. ``crosses: []``) removes it from the model: that is how an ablation
  is written.
* ``domain``: the scenario feature and its known values (index 0 is "unknown").
* ``model``: the multi-task tower (``shared_bottom`` | ``mmoe`` | ``ple``, or the scenario
  towers ``dwg`` | ``star`` whose weights depend on the domain), the optional scenario gating
  (``epnet`` | ``ppnet`` | ``pepnet``) and the head (``esmm`` | ``independent``).
* ``tasks``: one entry per trained output, with its label, loss (``bce`` | ``focal`` |
  ``bce_pairwise_auc``), loss weight and optional mask.
* ``training`` (task weighting, sample order) and ``export``.

Every config is loaded through :mod:`ranking.utils.typed_config`, so unknown keys and values of
the wrong type fail with the key path; the ``__post_init__`` checks below add the constraints
between fields, again naming the key and the value.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Optional

from ranking.utils.typed_config import ConfigError, from_mapping, load_yaml

__all__ = [
    "ConfigError", "IdFeature", "BiasFeature", "SequenceFeature", "CrossFeature",
    "NumericFeature", "FeaturesConfig", "DomainConfig", "DWGConfig", "StarConfig",
    "ModelConfig", "FocalLossConfig", "PairwiseAUCLossConfig", "TaskConfig", "TrainingConfig",
    "ExportConfig", "ExperimentConfig", "load_experiment", "experiment_from_mapping",
    "FEATURE_GROUPS", "ESMM_CTR_TASK", "ESMM_CVR_TASK", "ESMM_CTCVR_TASK", "DOMAIN_TOWERS",
]

FEATURE_GROUPS = ("ids", "sequences", "crosses", "numerics", "matches")
_SAMPLE_FEATURE_GROUPS = FEATURE_GROUPS[:4]  # groups whose entries are sample features
# FeaturesConfig.without can empty these; biases is not a group of the embedding vector (its
# ids may repeat an ids entry), so it stays out of FEATURE_GROUPS' name-uniqueness check.
_ABLATION_GROUPS = FEATURE_GROUPS + ("biases",)
# ESMM: the head computes ctr, cvr and ctcvr = ctr * cvr; tasks with these names are trained
# on the matching output (``cvr`` only makes sense with ``mask_label: click``).
ESMM_CTR_TASK = "ctr"
ESMM_CVR_TASK = "cvr"
ESMM_CTCVR_TASK = "ctcvr"


def _positive(path: str, value) -> None:
    if value < 1:
        raise ConfigError(f"{path} must be >= 1, got {value!r}")


def _positive_list(path: str, values) -> None:
    for i, v in enumerate(values):
        _positive(f"{path}[{i}]", v)


def _unique(path: str, names) -> None:
    dupes = sorted({n for n in names if list(names).count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate name(s) {dupes}")


def _finite_at_least(path: str, value, low: float, *, strict: bool = False) -> None:
    ok = math.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise ConfigError(f"{path} must be a finite number {'>' if strict else '>='} {low:g}, "
                          f"got {value!r}")


def _only_with(path: str, value, option: str, wanted, actual) -> None:
    """``path`` configures ``option == wanted`` only: setting it otherwise is a mistake."""
    if value is not None and actual != wanted:
        raise ConfigError(f"{path} = {value!r} is only used with {option} {wanted!r}, got "
                          f"{option} {actual!r}")


def _nonempty_name(path: str, name: str) -> None:
    if not name or name.strip() != name:
        raise ConfigError(f"{path}.name must be a non-empty name without spaces around it, "
                          f"got {name!r}")


# --- features ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class IdFeature:
    """A scalar string id feature and its embedding table of ``buckets`` rows.

    ``encoding`` says how a value becomes a row:

    * ``hash`` (default): ``to_hash_bucket_fast(value, buckets)``, in-graph; any string works,
      distinct values may share a row (choose ``buckets`` several times the cardinality);
    * ``integer``: the value is already a row number, the decimal string of an integer in
      ``[0, buckets)`` (an index from an upstream vocabulary job): no collisions; ``""`` and
      out-of-range numbers embed to zeros, a non-numeric string fails the step with the value.
    """

    name: str
    buckets: int
    dim: int = 16
    encoding: typing.Literal["hash", "integer"] = "hash"

    def __post_init__(self):
        _nonempty_name("features.ids[]", self.name)
        _positive(f"features.ids[{self.name!r}].buckets", self.buckets)
        _positive(f"features.ids[{self.name!r}].dim", self.dim)


@dataclasses.dataclass(frozen=True)
class BiasFeature:
    """A string id whose rows hold one learned scalar per tower, added to that tower's logit
    (:class:`ranking.features.id_bias.IdBias`): the first-order id term of a logistic
    regression, e.g. a user's or an item's own click propensity. ``buckets`` and
    ``encoding`` as for :class:`IdFeature`; the same id may also be an ``ids`` entry."""

    name: str
    buckets: int
    encoding: typing.Literal["hash", "integer"] = "hash"

    def __post_init__(self):
        _nonempty_name("features.biases[]", self.name)
        _positive(f"features.biases[{self.name!r}].buckets", self.buckets)


@dataclasses.dataclass(frozen=True)
class SequenceFeature:
    """A string sequence ``[L]`` (or a scalar: a sequence of one) embedded with the table of
    the ``ids`` entry ``share_embedding_with`` and pooled over its non-``""`` entries."""

    name: str
    share_embedding_with: str
    pooling: typing.Literal["mean", "sum"] = "mean"

    def __post_init__(self):
        _nonempty_name("features.sequences[]", self.name)


@dataclasses.dataclass(frozen=True)
class CrossFeature:
    """An int64 ``[L]`` cross already hashed by the pipeline (``-1`` pads), embedded with its
    own table of ``buckets`` rows (bucket count from the schema) and pooled."""

    name: str
    dim: int = 16
    pooling: typing.Literal["mean", "sum"] = "mean"

    def __post_init__(self):
        _nonempty_name("features.crosses[]", self.name)
        _positive(f"features.crosses[{self.name!r}].dim", self.dim)


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    """A scalar number: NaN -> ``fill``, then ``transform``: ``log1p`` is sign-symmetric
    (``sign(x) * log1p(|x|)``, i.e. plain ``log1p`` for x >= 0); ``log`` (for shares and
    rates) takes x <= 0 as missing too, so its ``fill`` must be > 0."""

    name: str
    transform: typing.Literal["none", "log1p", "log"] = "none"
    fill: float = 0.0

    def __post_init__(self):
        _nonempty_name("features.numerics[]", self.name)
        if self.fill != self.fill:
            raise ConfigError(f"features.numerics[{self.name!r}].fill must be a number, got NaN")
        if self.transform == "log" and not self.fill > 0:
            raise ConfigError(f"features.numerics[{self.name!r}].fill must be > 0 with "
                              f"transform 'log', got {self.fill!r}")


@dataclasses.dataclass(frozen=True)
class MatchFeature:
    """How many entries of a string sequence equal the target: a numeric input computed in the
    graph (e.g. how many of the user's recent impressions were of the candidate's category).

    A count of equal entries is a dot product an MLP would otherwise have to learn from the
    pooled embeddings of the sequence and the target. ``""`` entries never match. ``length``
    counts over the first (most recent) ``length`` entries only: recent and longer-term
    matches as separate inputs. Named ``match_<sequence>_<target>`` (``..._<length>``);
    ``transform`` as for numerics (``log1p`` by default).
    """

    sequence: str
    target: str
    transform: typing.Literal["none", "log1p"] = "log1p"
    length: typing.Optional[int] = None

    @property
    def name(self) -> str:
        suffix = "" if self.length is None else f"_{self.length}"
        return f"match_{self.sequence}_{self.target}{suffix}"

    def __post_init__(self):
        _nonempty_name("features.matches[].sequence", self.sequence)
        _nonempty_name("features.matches[].target", self.target)
        if self.length is not None:
            _positive(f"features.matches[{self.name!r}].length", self.length)


@dataclasses.dataclass(frozen=True)
class FeaturesConfig:
    """The model's input features by group; an empty group is left out of the model.

    ``embedding_init`` / ``embedding_init_scale``: how the embedding tables start:
    ``uniform`` in ``[-scale, scale]`` (default 0.05) or ``normal`` with stddev ``scale``
    (e.g. 1e-4, DeepCTR's default: near-zero rows for ids seen rarely).
    ``embedding_l2``: L2 penalty ``l2 * sum(w^2)`` on every embedding table, added to the
    loss (DeepCTR's ``l2_reg_embedding``; 0 = none). It touches every row every step.
    ``biases``: ids with a learned logit offset per row and tower (:class:`BiasFeature`),
    trained by plain SGD at ``training.bias_learning_rate``; not a group of the embedding
    vector, so a name may be both an ``ids`` and a ``biases`` entry.
    """

    ids: list[IdFeature] = dataclasses.field(default_factory=list)
    sequences: list[SequenceFeature] = dataclasses.field(default_factory=list)
    crosses: list[CrossFeature] = dataclasses.field(default_factory=list)
    numerics: list[NumericFeature] = dataclasses.field(default_factory=list)
    matches: list[MatchFeature] = dataclasses.field(default_factory=list)
    embedding_init: typing.Literal["uniform", "normal"] = "uniform"
    embedding_init_scale: float = 0.05
    embedding_l2: float = 0.0
    biases: list[BiasFeature] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        _finite_at_least("features.embedding_l2", self.embedding_l2, 0.0)
        _unique("features.biases", [f.name for f in self.biases])
        _finite_at_least("features.embedding_init_scale", self.embedding_init_scale, 0.0,
                         strict=True)
        _unique("features", [f.name for g in FEATURE_GROUPS for f in getattr(self, g)])
        ids = [f.name for f in self.ids]
        for i, s in enumerate(self.sequences):
            if s.share_embedding_with not in ids:
                raise ConfigError(
                    f"features.sequences[{i}].share_embedding_with: {s.share_embedding_with!r} "
                    f"(sequence {s.name!r}) is not an ids entry; ids are {ids}")
        if not self.input_names:
            raise ConfigError("features: no feature in any group (ids, sequences, crosses, "
                              "numerics, matches)")

    @property
    def input_names(self) -> list[str]:
        """Names of the sample features the model reads, in group order (a match's sequence
        and target, then the biases' ids, unless already read)."""
        names = [f.name for g in _SAMPLE_FEATURE_GROUPS for f in getattr(self, g)]
        for m in self.matches:
            names += [n for n in (m.sequence, m.target) if n not in names]
        return names + [f.name for f in self.biases if f.name not in names]

    def id_feature(self, name: str) -> IdFeature:
        for f in self.ids:
            if f.name == name:
                return f
        raise KeyError(name)

    def without(self, *groups: str) -> "FeaturesConfig":
        """A copy with the named groups emptied (ablations, e.g. ``without("crosses")``);
        ``biases`` is a group here too."""
        unknown = sorted(set(groups) - set(_ABLATION_GROUPS))
        if unknown:
            raise ConfigError(f"features: unknown group(s) {unknown}; groups are "
                              f"{list(_ABLATION_GROUPS)}")
        changes = {g: [] for g in groups}
        if "ids" in groups:
            changes["sequences"] = []  # a sequence cannot outlive the table it shares
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DomainConfig:
    """The scenario feature. ``vocabulary[i]`` gets domain index ``i + 1``; any other value
    (and every value when the vocabulary is empty) gets index 0, "unknown"."""

    feature: str = "domain"
    vocabulary: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if not self.feature:
            raise ConfigError("domain.feature must name a schema feature, got ''")
        _unique("domain.vocabulary", self.vocabulary)
        if "" in self.vocabulary:
            raise ConfigError("domain.vocabulary: '' cannot be a domain (it is the pad value)")

    @property
    def num_domains(self) -> int:
        """Number of domain indices, the unknown index 0 included."""
        return len(self.vocabulary) + 1


# --- model ---------------------------------------------------------------------------------

# Towers whose weights depend on the row's domain index (ranking.layers.scenario): they need
# the known domains of ``domain.vocabulary``.
DOMAIN_TOWERS = ("dwg", "star")
_GATES_EMBEDDING = ("epnet", "pepnet")   # EPNet: domain-side features gate the embedding
_GATES_TASK_TOWERS = ("ppnet", "pepnet")  # PPNet: personal features gate the task towers


@dataclasses.dataclass(frozen=True)
class DWGConfig:
    """Options of ``model.tower: dwg`` (:class:`~ranking.layers.scenario.DWGTower`, layer
    widths ``model.bottom_units``).

    Attributes:
      mode: ``residual`` (shared weights plus a per-domain delta starting at 0: the shared
        weights learn from every row; the default, since training data rarely has
        unknown-domain rows), ``full`` (independent per-domain weights; the shared ones, used
        for unknown domains, learn only from unknown-domain rows) or ``low_rank`` (a rank
        ``rank`` per-domain delta).
      rank: the delta's rank, required for (and only for) ``low_rank``.
      shrinkage_k: ``k`` of ``lambda_d = n_d / (n_d + k)``, which shrinks a domain with few
        rows seen so far toward the shared weights; 0 disables it.
      delta_scale: ``s`` of ``W_0 + s lambda_d Delta_d`` (``residual``, ``low_rank``): under
        Adam the per-domain deltas learn ``s`` times slower than the shared weights.
    """

    mode: typing.Literal["full", "residual", "low_rank"] = "residual"
    rank: Optional[int] = None
    shrinkage_k: float = 0.0
    delta_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class StarConfig:
    """Options of ``model.tower: star`` (:class:`~ranking.layers.scenario.StarTower`, layer
    widths ``model.bottom_units``).

    Attributes:
      partitioned_norm: partitioned (per-domain) normalization of the tower input.
      aux_net: the auxiliary network fed with the domain indicator, whose logit is added to
        every task's logit (:class:`~ranking.layers.scenario.StarAuxiliaryNet`).
      aux_net_units: its hidden widths (``[]``: logits linear in the domain embedding).
      aux_embedding_dim: width of its domain embedding.
      domain_features: ``ids`` entries whose value is fixed by the domain (country, scene,
        the domain itself), left out of the star network's input and fed to the auxiliary
        network with the domain index: the paper feeds the domain indicator to the auxiliary
        network only. Through partitioned normalization
        such a column has zero variance inside each domain, so its per-domain moving
        variance decays to ~0 and at inference ``(x - moving mean) / sqrt(moving var + eps)``
        blows up any drift of its embedding (measured: per-domain PCOC up to 3.9 at serving).
    """

    partitioned_norm: bool = True
    aux_net: bool = True
    aux_net_units: list[int] = dataclasses.field(default_factory=lambda: [16])
    aux_embedding_dim: int = 8
    domain_features: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Multi-task tower, scenario gating and head.

    Attributes:
      tower: ``shared_bottom`` (one MLP ``bottom_units`` shared by all towers), ``mmoe``
        (``experts`` shared experts, one softmax gate per task tower), ``ple``
        (``levels`` extraction layers, each with ``shared_experts`` shared experts and
        ``task_experts`` experts per task tower), or a scenario tower of widths
        ``bottom_units`` whose weights depend on the row's domain: ``dwg`` (domain-specific
        weights, options ``dwg``) or ``star`` (star-topology FC, partitioned normalization and
        the auxiliary domain network, options ``star``). Rows of an unknown domain (index 0)
        go through the shared weights only.
      dwg, star: options of the ``dwg`` / ``star`` tower (defaults when left out; setting them
        with another tower is an error).
      gating: ``none``; ``epnet`` (a Gate NU fed the ``domain_side_features`` embeddings and
        the stop-gradient of the embedding rescales the embedding vector); ``ppnet`` (every
        hidden layer of every task tower is rescaled by its own Gate NU fed the
        ``personal_features`` embeddings and the stop-gradient of the embedding vector); or
        ``pepnet`` (both). See :mod:`ranking.layers.gating`.
      personal_features: ``ids`` entries fed to the PPNet gates (user id, item id, ...).
      domain_side_features: ``ids`` entries fed to the EPNet gate (country, scene, ...).
      gate_hidden_units: hidden width of every Gate NU.
      expert_units: hidden units of each expert MLP (mmoe, ple).
      expert_init: how the experts' kernels start (mmoe, ple): ``independent`` (default: one
        glorot_uniform draw per expert) or ``identical`` (one draw per level and layer, copied
        into every expert, as DeepCTR's PLE/MMoE do; the experts then diverge through their
        gates). A softmax mix of distinct random experts averages their outputs' spread away,
        so ``identical`` starts with a ~3x larger signal after two PLE levels; see
        :class:`ranking.layers.towers.PLE`.
      bottom_units: hidden units of the shared bottom (shared_bottom) or of the scenario
        tower (dwg, star).
      task_tower_units: hidden units of each task tower before its logit.
      dropout: dropout rate after each hidden layer, in [0, 1).
      head: ``esmm`` (towers ctr and cvr; outputs ctr, cvr, ctcvr = ctr * cvr) or
        ``independent`` (one sigmoid output per task).
      cross_layers: DCN-v2 cross layers (``tfrs.layers.dcn.Cross``) applied to the embedding
        vector before the tower, ``x_{l+1} = x_0 * (W x_l + b) + x_l``: explicit
        multiplicative feature interactions (user x category taste, item x domain) that an
        MLP on concatenated embeddings learns only slowly. 0: none.
      cross_projection_dim: low-rank factorization of each cross layer's ``W`` (None: full).
    """

    tower: typing.Literal["shared_bottom", "mmoe", "ple", "dwg", "star"] = "ple"
    experts: int = 4
    shared_experts: int = 2
    task_experts: int = 2
    levels: int = 2
    expert_units: list[int] = dataclasses.field(default_factory=lambda: [256, 128])
    expert_init: typing.Literal["independent", "identical"] = "independent"
    bottom_units: list[int] = dataclasses.field(default_factory=lambda: [256, 128])
    task_tower_units: list[int] = dataclasses.field(default_factory=lambda: [64])
    dropout: float = 0.0
    head: typing.Literal["esmm", "independent"] = "esmm"
    cross_layers: int = 0
    cross_projection_dim: Optional[int] = None
    dwg: Optional[DWGConfig] = None
    star: Optional[StarConfig] = None
    gating: typing.Literal["none", "epnet", "ppnet", "pepnet"] = "none"
    personal_features: list[str] = dataclasses.field(default_factory=list)
    domain_side_features: list[str] = dataclasses.field(default_factory=list)
    gate_hidden_units: int = 64

    def __post_init__(self):
        for key in ("experts", "shared_experts", "task_experts", "levels",
                    "gate_hidden_units"):
            _positive(f"model.{key}", getattr(self, key))
        for key in ("expert_units", "bottom_units"):
            if not getattr(self, key):
                raise ConfigError(f"model.{key} must list at least one layer size, got []")
            _positive_list(f"model.{key}", getattr(self, key))
        _positive_list("model.task_tower_units", self.task_tower_units)
        if self.cross_layers < 0:
            raise ConfigError(f"model.cross_layers must be >= 0, got {self.cross_layers!r}")
        if self.cross_projection_dim is not None:
            _positive("model.cross_projection_dim", self.cross_projection_dim)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        _only_with("model.dwg", self.dwg, "model.tower", "dwg", self.tower)
        _only_with("model.star", self.star, "model.tower", "star", self.tower)
        self._check_dwg(self.dwg_options)
        self._check_star(self.star_options)
        self._check_gating()

    @property
    def dwg_options(self) -> DWGConfig:
        return self.dwg or DWGConfig()

    @property
    def star_options(self) -> StarConfig:
        return self.star or StarConfig()

    @property
    def gates_embedding(self) -> bool:
        """EPNet on the embedding vector (``epnet``, ``pepnet``)."""
        return self.gating in _GATES_EMBEDDING

    @property
    def gates_task_towers(self) -> bool:
        """PPNet gates on the task towers' hidden layers (``ppnet``, ``pepnet``)."""
        return self.gating in _GATES_TASK_TOWERS

    @staticmethod
    def _check_dwg(d: DWGConfig) -> None:
        if d.mode == "low_rank":
            if d.rank is None:
                raise ConfigError("model.dwg.rank is required with mode 'low_rank', got None")
            _positive("model.dwg.rank", d.rank)
        else:
            _only_with("model.dwg.rank", d.rank, "model.dwg.mode", "low_rank", d.mode)
        _finite_at_least("model.dwg.shrinkage_k", d.shrinkage_k, 0.0)
        if not (math.isfinite(d.delta_scale) and d.delta_scale > 0):
            raise ConfigError(f"model.dwg.delta_scale must be a finite number > 0, got "
                              f"{d.delta_scale!r}")
        if d.mode == "full" and d.delta_scale != 1.0:
            raise ConfigError(f"model.dwg.delta_scale is used with mode 'residual' or "
                              f"'low_rank' only, got {d.delta_scale!r} with mode 'full'")

    @staticmethod
    def _check_star(s: StarConfig) -> None:
        _positive_list("model.star.aux_net_units", s.aux_net_units)
        _positive("model.star.aux_embedding_dim", s.aux_embedding_dim)
        _unique("model.star.domain_features", s.domain_features)
        if s.domain_features and not s.aux_net:
            raise ConfigError(f"model.star.domain_features {s.domain_features} feed the "
                              "auxiliary network: they need model.star.aux_net true, got false")

    def _check_gating(self) -> None:
        for key, needed in (("personal_features", self.gates_task_towers),
                            ("domain_side_features", self.gates_embedding)):
            names = getattr(self, key)
            _unique(f"model.{key}", names)
            if needed and not names:
                raise ConfigError(f"model.gating {self.gating!r} needs model.{key}, got []")
            if names and not needed:
                raise ConfigError(f"model.{key} {names} is not used with model.gating "
                                  f"{self.gating!r}")
        if self.gates_task_towers and not self.task_tower_units:
            raise ConfigError(f"model.gating {self.gating!r} gates the hidden layers of the "
                              "task towers: model.task_tower_units must list at least one "
                              "layer size, got []")


@dataclasses.dataclass(frozen=True)
class FocalLossConfig:
    """``loss: focal`` (:class:`~ranking.losses.BinaryFocalLoss`): ``gamma`` >= 0 focuses on
    hard examples (0: cross-entropy); ``alpha`` in [0, 1] weighs positives (negatives
    ``1 - alpha``), ``null`` weighs both by 1."""

    gamma: float = 2.0
    alpha: Optional[float] = 0.25


@dataclasses.dataclass(frozen=True)
class PairwiseAUCLossConfig:
    """``loss: bce_pairwise_auc`` (:class:`~ranking.losses.BCEWithPairwiseAUCLoss`):
    cross-entropy plus ``weight`` times the pairwise approximate-AUC loss of temperature
    ``tau`` with surrogate ``softplus`` (logistic pairwise) or ``sigmoid`` (smooth 1 - AUC)."""

    weight: float = 1.0
    tau: float = 1.0
    surrogate: typing.Literal["softplus", "sigmoid"] = "softplus"


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """One trained output.

    Attributes:
      name: output name (with the esmm head: ``ctr``, ``ctcvr``, optionally ``cvr``).
      label: the label feature (schema role ``label``).
      loss: ``bce`` (binary cross-entropy), ``focal`` (options ``focal``) or
        ``bce_pairwise_auc`` (cross-entropy plus the pairwise approximate-AUC loss, options
        ``pairwise_auc``); all from the logit.
      focal, pairwise_auc: options of those losses (defaults when left out; setting them
        with another loss is an error).
      weight: loss weight (>= 0).
      mask_label: optional label feature; rows where it is 0 do not count in this task's loss
        (e.g. a cvr task trained on clicks only: ``mask_label: click``).
      mask_normalization: what the masked loss is divided by: ``batch`` (the batch size, as
        Keras' sample weights do; the task's loss then scales with its share of masked-in
        rows, e.g. ~CTR x the CVR loss) or ``masked`` (the number of masked-in rows: the mean
        over clicked rows, what "CVR loss on clicks" means; 0 for a batch without any).
    """

    name: str
    label: str
    loss: typing.Literal["bce", "focal", "bce_pairwise_auc"] = "bce"
    weight: float = 1.0
    mask_label: Optional[str] = None
    mask_normalization: typing.Literal["batch", "masked"] = "batch"
    focal: Optional[FocalLossConfig] = None
    pairwise_auc: Optional[PairwiseAUCLossConfig] = None

    def __post_init__(self):
        _nonempty_name("tasks[]", self.name)
        path = f"tasks[{self.name!r}]"
        if not self.weight >= 0.0:
            raise ConfigError(f"{path}.weight must be >= 0, got {self.weight!r}")
        if self.mask_label is not None and self.mask_label == self.label:
            raise ConfigError(f"{path}.mask_label: {self.mask_label!r} is the "
                              "task's own label")
        if self.mask_normalization == "masked" and self.mask_label is None:
            raise ConfigError(f"{path}.mask_normalization 'masked' needs a mask_label, "
                              "got None")
        _only_with(f"{path}.focal", self.focal, f"{path}.loss", "focal", self.loss)
        _only_with(f"{path}.pairwise_auc", self.pairwise_auc, f"{path}.loss",
                   "bce_pairwise_auc", self.loss)
        focal = self.focal_options
        _finite_at_least(f"{path}.focal.gamma", focal.gamma, 0.0)
        if focal.alpha is not None and not 0.0 <= focal.alpha <= 1.0:
            raise ConfigError(f"{path}.focal.alpha must be null or in [0, 1], "
                              f"got {focal.alpha!r}")
        pairwise = self.pairwise_auc_options
        _finite_at_least(f"{path}.pairwise_auc.weight", pairwise.weight, 0.0)
        _finite_at_least(f"{path}.pairwise_auc.tau", pairwise.tau, 0.0, strict=True)

    @property
    def focal_options(self) -> FocalLossConfig:
        return self.focal or FocalLossConfig()

    @property
    def pairwise_auc_options(self) -> PairwiseAUCLossConfig:
        return self.pairwise_auc or PairwiseAUCLossConfig()


# --- training and export -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Fit settings.

    Attributes:
      optimizer: ``adam`` (Keras' Adam, run with the fused kernel: every table row updated
        every step), ``lazy_adam`` (:class:`ranking.optimizers.LazyAdam`: an embedding
        table's update touches only the rows the batch looked up; cheaper for large tables)
        or ``adagrad``.
      shuffle_buffer: records in the shuffle buffer (serialized, before batching; held in
        blocks of 16 consecutive records, :func:`ranking.data.input.shuffle_records`).
      early_stopping_patience: epochs without improvement before stopping; 0 disables.
      early_stopping_metric: what "improvement" is measured on, on the validation split:
        ``auc`` (the first task's AUC, its Keras metric ``val_<task>_auc``) or ``loss`` (the
        total loss). AUC by default: a CTR model's validation loss can improve while its
        ranking collapses. ``ranking-train --config configs/ple_esmm.yaml --epochs 3`` on the
        200k demo samples: from epoch 1 to 2 the validation loss went 0.1590 -> 0.1574 while
        the validation CTR AUC went 0.8106 -> 0.7832 (the "one-epoch" overfitting of CTR
        models with sparse ids; Zhang et al., CIKM 2022); stopping on the loss would have
        kept epoch 2.
      test_days: the last ``test_days`` UTC days of the data are the test split.
      train_days: optional: only the ``train_days`` days before the test split are trained on
        (seed 004's protocol: 5 days train, the next day test); ``None`` takes all of them.
      seed: shuffling and initialisation seed.
      calibrate: model outputs (tower logits, e.g. ``ctr``) whose logit gets an offset after
        training so that, on the validation day, the sum of predictions equals the sum of
        labels (PCOC 1). Use it for labels fully observed on the validation day (clicks);
        conversions are still arriving there (delayed feedback), so calibrating on them would
        bias predictions down.
      task_weighting: how the task losses ``L_t`` are combined: ``fixed``
        (``sum_t w_t L_t`` with the tasks' ``weight`` ``w_t``) or ``uncertainty`` (Kendall et
        al., CVPR 2018: ``sum_t exp(-s_t) L_t + s_t`` with learned log-variances ``s_t``;
        :class:`~ranking.losses.UncertaintyWeighting`). With ``uncertainty`` every task
        weight must be 1: a fixed factor would be cancelled by the learned one (at the
        optimum ``exp(-s_t) = 1 / (w_t L_t)``, so ``exp(-s_t) w_t = 1 / L_t``).
      order: the order training rows are read in: ``shuffled`` (a ``shuffle_buffer`` shuffle
        of the files' rows), ``time`` (sorted by ``ts``, no shuffle) or ``sliding_window``
        (in time order through a buffer of the ``window_size`` most recent rows, shuffled
        inside it: seed 000's fix for STAR's unstable training when each domain's share of
        traffic moves with the hour). See :func:`ranking.data.input.make_dataset`.
      window_size: rows in the sliding window (``order: sliding_window`` only).
      bias_learning_rate: the step ``eta`` of the ``features.biases`` rows, plain SGD per
        example: each row moves by ``-eta * dl_i/db`` (centred over the batch,
        :mod:`ranking.features.id_bias`) summed over the batch's examples ``i`` that look it
        up (``dl_i/db = p_i - y_i`` for one BCE task), whatever the batch size
        (:meth:`ranking.models.multitask.MultiTaskRanker.train_step`).
    """

    optimizer: typing.Literal["adam", "lazy_adam", "adagrad"] = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 1024
    epochs: int = 1
    shuffle_buffer: int = 100_000
    early_stopping_patience: int = 1
    early_stopping_metric: typing.Literal["auc", "loss"] = "auc"
    test_days: int = 1
    train_days: Optional[int] = None
    mixed_precision: bool = False
    steps_per_execution: int = 1
    seed: int = 0
    calibrate: list[str] = dataclasses.field(default_factory=list)
    task_weighting: typing.Literal["fixed", "uncertainty"] = "fixed"
    order: typing.Literal["shuffled", "time", "sliding_window"] = "shuffled"
    window_size: Optional[int] = None
    bias_learning_rate: float = 0.02

    def __post_init__(self):
        if self.order == "sliding_window" and self.window_size is None:
            raise ConfigError("training.window_size is required with order 'sliding_window', "
                              "got None")
        _only_with("training.window_size", self.window_size, "training.order",
                   "sliding_window", self.order)
        if self.window_size is not None:
            _positive("training.window_size", self.window_size)
        for key in ("learning_rate", "bias_learning_rate"):
            _finite_at_least(f"training.{key}", getattr(self, key), 0.0, strict=True)
        for key in ("batch_size", "epochs", "shuffle_buffer", "test_days",
                    "steps_per_execution"):
            _positive(f"training.{key}", getattr(self, key))
        if self.train_days is not None:
            _positive("training.train_days", self.train_days)
        if self.early_stopping_patience < 0:
            raise ConfigError(f"training.early_stopping_patience must be >= 0, "
                              f"got {self.early_stopping_patience!r}")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """SavedModel export for TF Serving.

    Attributes:
      model_name: the serving model name.
      base_path: where versions are written (``<base_path>/<version>``); ``None``: the run
        directory decides.
      warmup_examples: requests written to ``assets.extra/tf_serving_warmup_requests``; 0: none.
    """

    model_name: str = "ranking"
    base_path: Optional[str] = None
    warmup_examples: int = 16

    def __post_init__(self):
        if not self.model_name:
            raise ConfigError("export.model_name must not be empty")
        if self.warmup_examples < 0:
            raise ConfigError(
                f"export.warmup_examples must be >= 0, got {self.warmup_examples!r}")


# --- the experiment ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment, end to end."""

    name: str
    features: FeaturesConfig
    tasks: list[TaskConfig]
    domain: DomainConfig = dataclasses.field(default_factory=DomainConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)

    def __post_init__(self):
        if not self.name:
            raise ConfigError("name must not be empty")
        if not self.tasks:
            raise ConfigError("tasks: at least one task is needed, got []")
        names = [t.name for t in self.tasks]
        _unique("tasks", names)
        if self.model.head == "esmm":
            missing = [n for n in (ESMM_CTR_TASK, ESMM_CTCVR_TASK) if n not in names]
            if missing:
                raise ConfigError(
                    f"tasks: model.head 'esmm' needs tasks named {ESMM_CTR_TASK!r} and "
                    f"{ESMM_CTCVR_TASK!r}; missing {missing} (tasks are {names})")
        self._check_model_and_weighting()
        clash = sorted(set(self.features.input_names) & set(self.label_names))
        if clash:
            raise ConfigError(f"features: {clash} are task labels; a label cannot be a feature")
        for name in self.training.calibrate:
            if name not in names or (self.model.head == "esmm" and name == ESMM_CTCVR_TASK):
                raise ConfigError(
                    f"training.calibrate: {name!r} is not a task with its own tower logit; "
                    f"tasks are {names}" + (" (ctcvr is a product, calibrate ctr/cvr)"
                                            if self.model.head == "esmm" else ""))

    def _check_model_and_weighting(self) -> None:
        m = self.model
        if m.tower in DOMAIN_TOWERS and not self.domain.vocabulary:
            raise ConfigError(f"model.tower {m.tower!r} has weights per domain and needs the "
                              "known domains in domain.vocabulary, got []")
        if self.training.task_weighting == "uncertainty":
            for t in self.tasks:
                if t.weight != 1.0:
                    raise ConfigError(
                        f"tasks[{t.name!r}].weight must be 1 with training.task_weighting "
                        f"'uncertainty' (the learned weight cancels a fixed one), got "
                        f"{t.weight!r}")
        ids = [f.name for f in self.features.ids]
        for key, names in (("personal_features", m.personal_features),
                           ("domain_side_features", m.domain_side_features),
                           ("star.domain_features", m.star_options.domain_features)):
            for name in names:
                if name not in ids:
                    raise ConfigError(f"model.{key}: {name!r} is not an ids entry; ids are "
                                      f"{ids}")

    @property
    def label_names(self) -> list[str]:
        """Label features the tasks read (labels, then mask labels), without duplicates."""
        out: list[str] = []
        for t in self.tasks:
            for n in (t.label, t.mask_label):
                if n is not None and n not in out:
                    out.append(n)
        return out

    @property
    def feature_names(self) -> list[str]:
        """Sample features the model reads: the feature groups, then the domain feature."""
        names = list(self.features.input_names)
        if self.domain.feature not in names:
            names.append(self.domain.feature)
        return names

    def to_dict(self) -> dict:
        """Plain mapping; ``experiment_from_mapping(cfg.to_dict()) == cfg``."""
        return dataclasses.asdict(self)


def experiment_from_mapping(mapping) -> ExperimentConfig:
    """Builds and validates an :class:`ExperimentConfig` from a nested mapping."""
    return from_mapping(ExperimentConfig, mapping)


def load_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """Loads an experiment YAML; errors name the file and the key path."""
    return load_yaml(ExperimentConfig, path)
