"""The sample builder's typed configuration (``configs/pipeline.yaml``)."""
from __future__ import annotations

import dataclasses
import typing

from ranking.utils.typed_config import ConfigError, from_mapping, load_yaml  # noqa: F401


@dataclasses.dataclass(frozen=True)
class ExtraColumn:
    """A raw-log column beyond the fixed schema, carried into the samples."""

    name: str
    kind: typing.Literal["categorical", "numeric"]


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """Point-in-time user history: click and exposure sequences.

    Attributes:
      length: how many most recent clicks each sample keeps (L).
      impression_length: how many most recent impressions (their categories) each sample
        keeps (K): the exposure sequence.
      bucket_seconds: the user's history is processed in time buckets of this size, so no
        worker ever holds more than one user-bucket of events; smaller buckets bound memory
        more tightly for very active users at the cost of more, smaller groups.
    """

    length: int = 20
    impression_length: int = 20
    bucket_seconds: int = 86400

    def __post_init__(self):
        for name in ("length", "impression_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sequence.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.bucket_seconds < 1:
            raise ConfigError(
                f"sequence.bucket_seconds must be >= 1, got {self.bucket_seconds!r}")


@dataclasses.dataclass(frozen=True)
class ItemStatsConfig:
    """Point-in-time item statistics (:mod:`pipelines.samples.item_stats`).

    Attributes:
      window_days: the item's impressions and clicks are counted over this many whole UTC
        days before the impression's day.
    """

    window_days: int = 7

    def __post_init__(self):
        if self.window_days < 1:
            raise ConfigError(f"item_stats.window_days must be >= 1, got {self.window_days!r}")


@dataclasses.dataclass(frozen=True)
class CategoryPurchaseConfig:
    """The auxiliary label ``category_purchase`` (:mod:`pipelines.samples.category_purchase`):
    the user paid for an item of the impression's category within ``window_days`` after it.

    Attributes:
      enabled: emit the label (one more int64 label per sample). Off by default so that the
        built-in schema stays the four labels; ``configs/pipeline.yaml`` turns it on.
      window_days: W: a pay counts if ``ts < pay_ts <= ts + W days``.
    """

    enabled: bool = False
    window_days: int = 7

    def __post_init__(self):
        if self.window_days < 1:
            raise ConfigError(
                f"category_purchase.window_days must be >= 1, got {self.window_days!r}")

    @property
    def window_seconds(self) -> int:
        return self.window_days * 86400


@dataclasses.dataclass(frozen=True)
class CategoryAffinityConfig:
    """Related categories from co-exposure and the counts they give
    (:mod:`pipelines.samples.category_affinity`): ``related_click_count`` and
    ``related_imp_count``.

    Attributes:
      enabled: emit the two features. Off by default so that the built-in schema stays
        as it was; ``configs/pipeline.yaml`` turns it on.
      top_n: a category's related set: its ``top_n`` categories of highest co-exposure lift.
      recent_clicks: ``related_click_count`` counts over the last this many clicks (at most
        ``sequence.length``).
      min_user_impressions: users with fewer impressions before a day are left out of that
        day's table (their category shares are too noisy).
      own_top: a user's this many most shown categories (their own interests) count on the
        "shown with" side of no lift; 0 keeps them.
    """

    enabled: bool = False
    top_n: int = 3
    recent_clicks: int = 5
    min_user_impressions: int = 5
    own_top: int = 3

    def __post_init__(self):
        for name in ("top_n", "recent_clicks", "min_user_impressions"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"category_affinity.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.own_top < 0:
            raise ConfigError(f"category_affinity.own_top must be >= 0, got {self.own_top!r}")


@dataclasses.dataclass(frozen=True)
class CrossConfig:
    """Hash-bucket counts of the sequence x target crosses."""

    item_buckets: int = 100_000
    category_buckets: int = 10_000

    def __post_init__(self):
        for name in ("item_buckets", "category_buckets"):
            if getattr(self, name) < 1:
                raise ConfigError(f"crosses.{name} must be >= 1, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Everything the sample builder needs besides its input, output and runner."""

    sequence: SequenceConfig = dataclasses.field(default_factory=SequenceConfig)
    crosses: CrossConfig = dataclasses.field(default_factory=CrossConfig)
    item_stats: ItemStatsConfig = dataclasses.field(default_factory=ItemStatsConfig)
    category_purchase: CategoryPurchaseConfig = dataclasses.field(
        default_factory=CategoryPurchaseConfig)
    category_affinity: CategoryAffinityConfig = dataclasses.field(
        default_factory=CategoryAffinityConfig)
    extra_columns: list[ExtraColumn] = dataclasses.field(default_factory=list)
    input_format: typing.Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    num_shards: int = 0  # sample files per UTC day; 0: one per day per bundle, no shuffle

    def __post_init__(self):
        names = [c.name for c in self.extra_columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"extra_columns: duplicate name(s) {dupes}")
        from pipelines.schema.raw_log import COLUMNS
        clash = sorted(set(names) & set(COLUMNS))
        if clash:
            raise ConfigError(f"extra_columns: {clash} are fixed schema columns, not extras")
        affinity = self.category_affinity
        if affinity.enabled and affinity.recent_clicks > self.sequence.length:
            raise ConfigError(
                f"category_affinity.recent_clicks ({self.category_affinity.recent_clicks}) "
                f"must be <= sequence.length ({self.sequence.length})")

    @property
    def extra_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.name, c.kind) for c in self.extra_columns)
