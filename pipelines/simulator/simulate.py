"""Synthetic e-commerce impression logs with known true probabilities.

Layout of a run under ``out``::

    impressions/part-SSSSS-of-KKKKK.{csv,jsonl,parquet}   raw log rows (pipelines.schema.raw_log
                                                        columns + extra columns device, price)
    truth/part-SSSSS-of-KKKKK.{csv,...}                 per impression_id (with its user_id
                                                        and ts): user_tier, p_click,
                                                        p_pay (P(pay | click)), p_refund
                                                        (P(refund | pay)), seq_same, seq_related
    world/categories.csv                                category_id, related_category_ids, ...
    world/items.csv                                     item_id, category_id, popularity, ...
    world/users.csv                                     user_id, tier, country, device, tastes
    simulation.json                                     parameters and summary counts

How it is generated:

* The users (``--users``, default ``impressions // 40``) get a tier (heavy 5 %, medium 25 %,
  light 70 %) and an activity weight; the ``N`` impressions are spread over them with one
  multinomial draw, so heavy users have ~20x the impressions of light ones.
* Users are cut, in id order, into chunks of about ``chunk_rows`` impressions. A chunk is
  generated from its own ``SeedSequence(seed, spawn_key=(2, chunk))`` and holds whole users,
  so the output is the same whatever ``--workers`` is. Chunks are grouped, in order, into
  ``--shards`` files; a user's rows are all in one shard, ordered by time.
* Each user has a home country, a primary device, three taste categories. Impressions come in
  sessions (mean 8 impressions, ~25 s apart) whose start follows the country's daily cycle.
  The target item comes from a taste category, from a category related to one, or from the
  global Zipf popularity, with scene-dependent odds.
* The click probability includes the co-occurrence term: the user's last ``SEQ_LEN`` clicks
  whose ``click_ts`` is strictly before the impression's ``ts`` (ties in ``click_ts`` broken by
  impression order) are matched against the target's category; ``seq_same`` counts clicks of
  the same category, ``seq_related`` clicks of a category whose related set contains the
  target's. This sequential dependence is vectorized by stepping over "the k-th impression
  of every user of the chunk" with a per-user ring buffer of recent clicks.
* Conversions and refunds follow with domain-dependent probabilities and delays; events that
  fall after the simulated window are kept (a pipeline censors them at its observe-at time).
* ``domain_drift`` (``--domain-drift``, off by default): each impression's scene is drawn from
  a mix that moves with the local clock hour (peaks per country and scene,
  :func:`pipelines.simulator.world.scene_share_by_hour`), so each domain's share of traffic
  changes by hour -- the drifting mix that makes time-ordered training of a multi-domain
  model unstable (seed 000). Off, the output is byte-identical to a run without the option.
* ``domain_effect_scale`` (``--domain-effect-scale K``, default 1): scales how much the
  [country, scene] coefficient tables differ between domains
  (:func:`pipelines.simulator.world.domain_tables`); it changes the click, pay and refund
  probabilities only, never who sees which item when. At 1 the output is byte-identical to a
  run without the option.
* ``pay_drift`` (``--pay-drift SIGMA``, default 0 = off): each domain's conversion | click
  logit moves by a daily Gaussian random walk with step sd SIGMA and no trend in the odds
  (:func:`pipelines.simulator.world.pay_drift_walk`), indexed by the click's UTC day since
  the window start (days after the window keep the last day's offset). The walk is drawn
  once from its own ``SeedSequence(seed, spawn_key=(3,))``, so every chunk agrees, and
  recorded in ``simulation.json`` (``pay_drift_walk``: per domain, one offset per day). It
  changes ``p_pay`` and who pays (hence pay and refund times), never who sees or clicks what.
  At 0 the output is byte-identical to a run without the option.

See :mod:`pipelines.simulator.world` for the coefficient tables.
"""
from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import sys
import time
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.schema.raw_log import COLUMNS
from pipelines.simulator import world as W

FORMATS = ("csv", "jsonl", "parquet")
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
DEFAULT_START_TS = 1_767_225_600          # 2026-01-01T00:00:00Z
DEFAULT_DAYS = 7
DEFAULT_WORKERS = 2
DEFAULT_CHUNK_ROWS = 100_000
DEFAULT_MAX_SHARDS = 8
DEFAULT_DOMAIN_DRIFT = 0.8   # --domain-drift without a value: a 9x peak-to-trough scene weight
IMPRESSIONS_PER_USER = 40
EXTRA_COLUMNS = (("device", "categorical"), ("price", "numeric"))
LOG_COLUMNS = COLUMNS + tuple(name for name, _ in EXTRA_COLUMNS)
# user_id and ts let the sample builder join truth inside each user-day group, no extra shuffle.
TRUTH_COLUMNS = ("impression_id", "user_id", "ts", "user_tier", "p_click", "p_pay", "p_refund",
                 "seq_same", "seq_related")
_KEY_SHIFT = np.int64(1 << 30)   # click key = click_ts * 2^30 + impression ordinal of the user

LOG_SCHEMA = pa.schema([
    ("impression_id", pa.string()), ("user_id", pa.string()), ("item_id", pa.string()),
    ("category_id", pa.string()), ("country", pa.string()), ("scene", pa.string()),
    ("ts", pa.int64()), ("click_ts", pa.int64()), ("pay_ts", pa.int64()),
    ("refund_ts", pa.int64()), ("device", pa.string()), ("price", pa.float64()),
])
TRUTH_SCHEMA = pa.schema([
    ("impression_id", pa.string()), ("user_id", pa.string()), ("ts", pa.int64()),
    ("user_tier", pa.string()), ("p_click", pa.float64()),
    ("p_pay", pa.float64()), ("p_refund", pa.float64()), ("seq_same", pa.int64()),
    ("seq_related", pa.int64()),
])
USERS_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("tier", pa.string()), ("country", pa.string()),
    ("device", pa.string()), ("taste_category_ids", pa.string()), ("impressions", pa.int64()),
])


@dataclasses.dataclass(frozen=True)
class SimConfig:
    out: str
    impressions: int
    seed: int = 0
    days: int = DEFAULT_DAYS
    users: Optional[int] = None
    format: str = "csv"
    truth_format: str = "csv"
    shards: Optional[int] = None
    workers: int = DEFAULT_WORKERS
    start_ts: int = DEFAULT_START_TS
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    categories: int = W.DEFAULT_CATEGORIES
    items: int = W.DEFAULT_ITEMS
    domain_drift: float = 0.0
    domain_effect_scale: float = 1.0
    pay_drift: float = 0.0

    @property
    def n_users(self) -> int:
        return self.users if self.users else max(1, self.impressions // IMPRESSIONS_PER_USER)

    def validate(self) -> None:
        if self.impressions < 1:
            raise ValueError("impressions must be >= 1")
        if self.users is not None and self.users < 1:
            raise ValueError("users must be >= 1")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        for name in ("format", "truth_format"):
            if getattr(self, name) not in FORMATS:
                raise ValueError(f"{name} must be one of {FORMATS}")
        if self.shards is not None and self.shards < 1:
            raise ValueError("shards must be >= 1")
        if self.workers < 1 or self.chunk_rows < 1:
            raise ValueError("workers and chunk_rows must be >= 1")
        if not 0.0 <= self.domain_drift <= 1.0:
            raise ValueError(f"domain_drift must be in [0, 1], got {self.domain_drift!r}")
        W.check_domain_effect_scale(self.domain_effect_scale)
        W.check_pay_drift(self.pay_drift)
        end = self.start_ts + self.days * 86400 + W.PAY_DELAY_MAX_S + W.REFUND_DELAY_MAX_S
        if self.start_ts < 946_684_800 or end + 10 * 86400 >= 4_102_444_800:
            raise ValueError("start_ts + days must stay inside the schema's timestamp range")


@dataclasses.dataclass
class Plan:
    """Who gets how many impressions, and how users are cut into chunks and shards."""

    tier: np.ndarray          # [n_users]
    counts: np.ndarray        # [n_users] impressions per user
    first_impression: np.ndarray  # [n_users] global ordinal of the user's first impression
    chunks: list              # [(u0, u1)] user ranges
    shard_of_chunk: np.ndarray
    n_shards: int


def make_plan(cfg: SimConfig) -> Plan:
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1,)))
    n = cfg.n_users
    tier = rng.choice(len(W.TIERS), size=n, p=W.TIER_SHARE)
    weight = W.TIER_INTENSITY[tier] * rng.lognormal(0.0, W.ACTIVITY_SIGMA, n)
    counts = rng.multinomial(cfg.impressions, weight / weight.sum()).astype(np.int64)
    first = np.cumsum(counts) - counts
    # A user starts a new chunk when the impressions before it cross a multiple of chunk_rows.
    chunk_key = first // cfg.chunk_rows
    starts = np.flatnonzero(np.r_[True, chunk_key[1:] != chunk_key[:-1]])
    bounds = np.r_[starts, n]
    chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    n_shards = cfg.shards or min(DEFAULT_MAX_SHARDS, len(chunks))
    shard_of_chunk = (np.arange(len(chunks)) * n_shards) // len(chunks)
    return Plan(tier, counts, first, chunks, shard_of_chunk, n_shards)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _draw_tastes(world: W.World, rng: np.random.Generator, n: int) -> np.ndarray:
    """Three distinct categories per user, drawn by category traffic share."""
    tastes = world.sample_categories(rng.random((n, W.N_TASTES)))
    for _ in range(50):
        dup = np.zeros(n, dtype=bool)
        for a in range(W.N_TASTES):
            for b in range(a):
                dup |= tastes[:, a] == tastes[:, b]
        if not dup.any():
            break
        rows = np.flatnonzero(dup)
        tastes[rows, 1:] = world.sample_categories(rng.random((rows.size, W.N_TASTES - 1)))
    return tastes


def local_clock_hour(ts: np.ndarray, country: np.ndarray) -> np.ndarray:
    """The hour of day (0-23) on the country's clock at epoch seconds ``ts``."""
    return ((ts + W.UTC_OFFSET_HOURS[country] * 3600) // 3600) % 24


def simulate_chunk(world: W.World, cfg: SimConfig, plan: Plan, chunk: int) -> dict:
    """Generates the impressions of one chunk of users. Returns columns and statistics."""
    u0, u1 = plan.chunks[chunk]
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2, chunk)))
    counts = plan.counts[u0:u1]
    tier = plan.tier[u0:u1]
    n_users = u1 - u0
    n = int(counts.sum())

    # ---- users ---------------------------------------------------------------------------
    country_u = np.minimum(np.searchsorted(np.cumsum(W.COUNTRY_SHARE), rng.random(n_users),
                                           side="right"), len(W.COUNTRIES) - 1)
    dev_cum = np.cumsum(W.DEVICE_SHARE, axis=1)[country_u]
    device_u = np.minimum((rng.random(n_users)[:, None] >= dev_cum).sum(1), len(W.DEVICES) - 1)
    tastes = _draw_tastes(world, rng, n_users)
    click_bias_u = rng.normal(0.0, W.USER_CLICK_SIGMA, n_users) + W.TIER_CLICK_SHIFT[tier]
    pay_bias_u = rng.normal(0.0, W.USER_PAY_SIGMA, n_users)
    refund_bias_u = rng.normal(0.0, W.USER_REFUND_SIGMA, n_users)

    # ---- impressions: who, when -------------------------------------------------------------
    user = np.repeat(np.arange(n_users), counts)
    user_start = np.cumsum(counts) - counts
    k = np.arange(n) - user_start[user]
    new_session = (rng.random(n) < W.NEW_SESSION_PROB) | (k == 0)
    session = np.cumsum(new_session) - 1
    n_sessions = int(session[-1]) + 1 if n else 0
    sess_user = user[new_session]
    sess_country = country_u[sess_user]
    hour_cum = np.cumsum(W.HOUR_PROFILE) / W.HOUR_PROFILE.sum()
    local_hour = np.minimum(np.searchsorted(hour_cum, rng.random(n_sessions), side="right"), 23)
    local_sec = (local_hour + W.LOCAL_SHIFT_HOURS[sess_country]) * 3600 \
        + rng.integers(0, 3600, n_sessions)
    utc_sec = (local_sec - W.UTC_OFFSET_HOURS[sess_country] * 3600) % 86400
    day = rng.integers(0, cfg.days, n_sessions)
    sess_start = cfg.start_ts + day * 86400 + utc_sec
    gap = rng.exponential(W.IMPRESSION_GAP_MEAN_S, n)
    gap[new_session] = 0.0
    cum_gap = np.cumsum(gap)
    offset = cum_gap - cum_gap[new_session][session]
    ts = sess_start[session] + np.floor(offset).astype(np.int64)
    # Time order inside each user (stable: ties keep the draw order).
    order = np.lexsort((ts, user))
    ts = ts[order]
    del order, gap, cum_gap, offset, session, new_session

    country = country_u[user]
    if cfg.domain_drift:
        scene_cum = np.cumsum(W.scene_share_by_hour(cfg.domain_drift)[
            country, local_clock_hour(ts, country)], axis=1)
    else:
        scene_cum = np.cumsum(W.SCENE_SHARE, axis=1)[country]
    scene = np.minimum((rng.random(n)[:, None] >= scene_cum).sum(1), len(W.SCENES) - 1)
    del scene_cum
    device = np.where(rng.random(n) < W.PRIMARY_DEVICE_PROB, device_u[user],
                      rng.integers(0, len(W.DEVICES), n))
    domain = country * len(W.SCENES) + scene

    # ---- impressions: what -----------------------------------------------------------------
    source_u = rng.random(n)
    from_taste = source_u < W.P_FROM_TASTE[scene]
    from_related = ~from_taste & (source_u < W.P_FROM_TASTE[scene] + W.P_FROM_RELATED[scene])
    taste_slot = np.minimum(np.searchsorted(np.cumsum(W.TASTE_PICK), rng.random(n), side="right"),
                            W.N_TASTES - 1)
    taste_cat = tastes[user, taste_slot]
    related_pick = world.related[taste_cat, rng.integers(0, W.RELATED_PER_CATEGORY, n)]
    cat_pick = np.where(from_taste, taste_cat, related_pick)
    u_item = rng.random(n)
    item = np.where(from_taste | from_related, world.sample_items_in(cat_pick, u_item),
                    world.sample_items_global(u_item))
    del source_u, from_taste, from_related, taste_slot, taste_cat, related_pick, cat_pick, u_item
    cat = world.item_category[item]
    price = world.item_price[item] * W.COUNTRY_PRICE_FACTOR[country]
    price = np.where(rng.random(n) < W.DISCOUNT_PROB, price * W.DISCOUNT_FACTOR, price)
    price = np.maximum(np.round(price, 2), 0.01)
    z_price = (np.log(price) - world.log_price_mean) / world.log_price_sd
    quality = world.item_quality[item]

    taste_aff = W.taste_affinity(world, tastes[user], cat, tier[user])

    c_s = (country, scene)
    T = W.domain_tables(cfg.domain_effect_scale)
    static_click = (T.click_base[c_s] + T.click_pop[c_s] * world.item_z_pop[item]
                    + T.click_price[c_s] * z_price + T.click_taste[c_s] * taste_aff
                    + T.click_device[country, scene, device] + W.CLICK_QUALITY * quality
                    + click_bias_u[user])
    seq_coef = T.click_seq[c_s]
    u_click = rng.random(n)
    click_delay = np.clip(np.ceil(rng.lognormal(np.log(W.CLICK_DELAY_MEDIAN_S[scene]),
                                                W.CLICK_DELAY_SIGMA)), 1,
                          W.CLICK_DELAY_MAX_S).astype(np.int64)

    # ---- the sequential part: step over the k-th impression of every user ---------------------
    p_click = np.empty(n)
    seq_same = np.zeros(n, dtype=np.int64)
    seq_related = np.zeros(n, dtype=np.int64)
    click_ts = np.full(n, -1, dtype=np.int64)
    by_count = np.argsort(-counts, kind="stable")      # active users are a prefix at each step
    sorted_start = user_start[by_count]
    neg_sorted_counts = -counts[by_count]
    B, R = W.SEQ_BUFFER, W.SEQ_LEN
    buf_ts = np.full((n_users, B), -1, dtype=np.int64)
    buf_key = np.full((n_users, B), -1, dtype=np.int64)
    buf_cat = np.zeros((n_users, B), dtype=np.int32)
    n_clicks = np.zeros(n_users, dtype=np.int64)
    evicted_key = np.full(n_users, -1, dtype=np.int64)
    inexact = 0
    rel_m = world.related_matrix
    max_count = int(counts.max()) if n_users else 0
    for step in range(max_count):
        m = int(np.searchsorted(neg_sorted_counts, -step, side="left"))
        idx = sorted_start[:m] + step
        t = ts[idx]
        tc = cat[idx]
        bts, bkey, bcat = buf_ts[:m], buf_key[:m], buf_cat[:m]
        valid = (bts >= 0) & (bts < t[:, None])
        key = np.where(valid, bkey, -1)
        kth = np.partition(key, B - R, axis=1)[:, B - R]      # R-th largest valid key (or -1)
        sel = valid & (key >= kth[:, None])
        same = sel & (bcat == tc[:, None])
        related = sel & rel_m[bcat, tc[:, None]]
        n_same = same.sum(1)
        n_rel = related.sum(1)
        # A click dropped from the buffer could have belonged to the last R: count such steps.
        inexact += int(np.count_nonzero(evicted_key[:m] > kth))
        p = _sigmoid(static_click[idx] + seq_coef[idx]
                     * np.log1p(n_same + W.RELATED_WEIGHT * n_rel))
        p_click[idx] = p
        seq_same[idx] = n_same
        seq_related[idx] = n_rel
        hit = np.flatnonzero(u_click[idx] < p)
        if hit.size:
            hidx = idx[hit]
            ct = t[hit] + click_delay[hidx]
            click_ts[hidx] = ct
            slot = n_clicks[hit] % B
            evicted_key[hit] = np.maximum(evicted_key[hit], buf_key[hit, slot])
            buf_ts[hit, slot] = ct
            buf_key[hit, slot] = ct * _KEY_SHIFT + step
            buf_cat[hit, slot] = tc[hit]
            n_clicks[hit] += 1
    del buf_ts, buf_key, buf_cat, static_click, u_click
    clicked = click_ts >= 0
    seq_score = np.log1p(seq_same + W.RELATED_WEIGHT * seq_related)

    # ---- conversion and refund -------------------------------------------------------------
    pay_logit = (T.pay_base[c_s] + T.pay_price[c_s] * z_price + W.PAY_DEVICE[device]
                 + W.PAY_QUALITY * quality + W.PAY_TASTE * taste_aff
                 + W.PAY_SEQ * seq_score + pay_bias_u[user])
    if cfg.pay_drift:
        # The offset of the day the decision to pay is made: the click's (an unclicked
        # impression's truth row gets its own day's).
        day = pay_drift_day(cfg, np.where(clicked, click_ts, ts))
        pay_logit = pay_logit + pay_drift_walk_for(cfg)[day, country, scene]
    p_pay = _sigmoid(pay_logit)
    del pay_logit
    paid = clicked & (rng.random(n) < p_pay)
    fast = rng.random(n) < W.PAY_FAST_PROB[scene]
    slow_median_s = W.PAY_SLOW_MEDIAN_H[country] * W.PAY_SLOW_SCENE_MULT[scene] * 3600.0
    pay_delay = np.where(fast, rng.exponential(W.PAY_FAST_MEAN_S, n),
                         rng.lognormal(np.log(slow_median_s), W.PAY_SLOW_SIGMA))
    pay_delay = np.clip(np.round(pay_delay), 0, W.PAY_DELAY_MAX_S).astype(np.int64)
    pay_ts = np.where(paid, click_ts + pay_delay, -1)
    p_refund = _sigmoid(T.refund_base[c_s] + W.REFUND_PRICE * z_price
                        + W.REFUND_QUALITY * quality + world.category_refund[cat]
                        + refund_bias_u[user])
    refunded = paid & (rng.random(n) < p_refund)
    refund_delay = W.REFUND_MIN_S + rng.lognormal(np.log(W.REFUND_MEDIAN_D[country] * 86400.0),
                                                  W.REFUND_SIGMA)
    refund_delay = np.clip(np.round(refund_delay), W.REFUND_MIN_S,
                           W.REFUND_DELAY_MAX_S).astype(np.int64)
    refund_ts = np.where(refunded, pay_ts + refund_delay, -1)

    # ---- statistics --------------------------------------------------------------------------
    D = W.N_DOMAINS
    end_ts = cfg.start_ts + cfg.days * 86400
    active_users = counts > 0
    stats = {
        "impressions": np.bincount(domain, minlength=D),
        "clicks": np.bincount(domain, weights=clicked, minlength=D),
        "pays": np.bincount(domain, weights=paid, minlength=D),
        "refunds": np.bincount(domain, weights=refunded, minlength=D),
        "sum_p_click": np.bincount(domain, weights=p_click, minlength=D),
        "sum_p_pay_clicked": np.bincount(domain, weights=p_pay * clicked, minlength=D),
        "sum_p_refund_paid": np.bincount(domain, weights=p_refund * paid, minlength=D),
        "tier_users": np.bincount(tier[active_users], minlength=len(W.TIERS)),
        "tier_impressions": np.bincount(tier, weights=counts, minlength=len(W.TIERS)),
        "tier_clicks": np.bincount(tier[user], weights=clicked, minlength=len(W.TIERS)),
        "with_seq_match": int(np.count_nonzero(seq_same + seq_related)),
        "clicks_with_seq_match": int(np.count_nonzero((seq_same + seq_related > 0) & clicked)),
        "impressions_after_window": int(np.count_nonzero(ts >= end_ts)),
        "pays_after_window": int(np.count_nonzero(pay_ts >= end_ts)),
        "refunds_after_window": int(np.count_nonzero(refund_ts >= end_ts)),
        "seq_inexact_steps": inexact,
        "min_ts": int(ts.min()) if n else None,
        "max_ts": int(max(ts.max(), click_ts.max(), pay_ts.max(), refund_ts.max())) if n else None,
    }

    # ---- columns ---------------------------------------------------------------------------
    gid = plan.first_impression[u0:u1][user] + k
    uid = np.arange(u0, u1)
    id_width = max(9, len(str(cfg.impressions - 1)))
    user_width = max(7, len(str(cfg.n_users - 1)))
    tier_names = pa.array(W.TIERS)
    impression_ids = _prefixed_ids("imp", gid, id_width)
    user_ids = _prefixed_ids("u", uid, user_width).take(pa.array(user))
    log = pa.table([
        impression_ids,
        user_ids,
        pa.array(world.item_ids).take(pa.array(item)),
        pa.array(world.category_ids).take(pa.array(cat)),
        pa.array(W.COUNTRIES).take(pa.array(country)),
        pa.array(W.SCENES).take(pa.array(scene)),
        pa.array(ts),
        pa.array(click_ts, mask=~clicked),
        pa.array(pay_ts, mask=~paid),
        pa.array(refund_ts, mask=~refunded),
        pa.array(W.DEVICES).take(pa.array(device)),
        pa.array(price),
    ], schema=LOG_SCHEMA)
    truth = pa.table([
        impression_ids,
        user_ids,
        pa.array(ts),
        tier_names.take(pa.array(tier[user])),
        pa.array(np.round(p_click, 6)),
        pa.array(np.round(p_pay, 6)),
        pa.array(np.round(p_refund, 6)),
        pa.array(seq_same),
        pa.array(seq_related),
    ], schema=TRUTH_SCHEMA)
    keep = np.flatnonzero(active_users)
    taste_ids = world.category_ids[tastes[keep]]
    users = pa.table([
        _prefixed_ids("u", uid[keep], user_width),
        tier_names.take(pa.array(tier[keep])),
        pa.array(W.COUNTRIES).take(pa.array(country_u[keep])),
        pa.array(W.DEVICES).take(pa.array(device_u[keep])),
        pa.array([" ".join(row) for row in taste_ids.tolist()], pa.string()),
        pa.array(counts[keep]),
    ], schema=USERS_SCHEMA)
    return {"log": log, "truth": truth, "users": users, "stats": stats, "rows": n}


def _prefixed_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


# ---- encoding ----------------------------------------------------------------------------------

def csv_header(schema: pa.Schema) -> bytes:
    return (",".join(schema.names) + "\n").encode()


def encode_csv(table: pa.Table) -> bytes:
    """CSV rows without header: no quotes (ids are plain), empty for missing values."""
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none",
                                                    batch_size=1 << 16))
    return sink.getvalue()


def encode_jsonl(table: pa.Table) -> bytes:
    """JSON Lines, one object per row, ``null`` for missing values (strings are plain ids)."""
    if table.num_rows == 0:
        return b""
    parts = []
    for i, field in enumerate(table.schema):
        col = table.column(i)
        if pa.types.is_string(field.type):
            text = pc.binary_join_element_wise('"', col, '"', "")
        else:
            text = pc.fill_null(pc.cast(col, pa.string()), "null")
        sep = "{" if i == 0 else ","
        parts.append(f'{sep}"{field.name}":')
        parts.append(text)
    parts.append("}\n")
    lines = pc.binary_join_element_wise(*parts, "").combine_chunks()
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32,
                            count=len(lines) + 1, offset=lines.offset * 4)
    data = lines.buffers()[2]
    return data.to_pybytes()[offsets[0]:offsets[-1]]


def encode(table: pa.Table, fmt: str):
    if fmt == "csv":
        return encode_csv(table)
    if fmt == "jsonl":
        return encode_jsonl(table)
    return table   # parquet: written by the parent's ParquetWriter


class ShardWriter:
    """Appends encoded chunks to ``dir/part-SSSSS-of-KKKKK.ext``, one shard open at a time."""

    def __init__(self, directory: str, fmt: str, schema: pa.Schema, n_shards: int):
        self.directory, self.fmt, self.schema, self.n_shards = directory, fmt, schema, n_shards
        self.current = -1
        self._file = None
        self._pq = None
        self.paths = []
        os.makedirs(directory, exist_ok=True)
        # Stale shards of an earlier run (any format) would be read along with the new ones.
        stale_ext = tuple("." + e for e in EXTENSIONS.values())
        for name in os.listdir(directory):
            if name.startswith("part-") and name.endswith(stale_ext):
                os.remove(os.path.join(directory, name))

    def path(self, shard: int) -> str:
        return os.path.join(self.directory, f"part-{shard:05d}-of-{self.n_shards:05d}."
                            f"{EXTENSIONS[self.fmt]}")

    def _open(self, shard: int) -> None:
        self.close()
        self.current = shard
        path = self.path(shard)
        self.paths.append(path)
        if self.fmt == "parquet":
            self._pq = pq.ParquetWriter(path, self.schema, compression="snappy")
        else:
            self._file = open(path, "wb")
            if self.fmt == "csv":
                self._file.write(csv_header(self.schema))

    def write(self, shard: int, payload) -> None:
        while self.current < shard:
            self._open(self.current + 1)
        if self.fmt == "parquet":
            self._pq.write_table(payload, row_group_size=1 << 20)
        else:
            self._file.write(payload)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self) -> None:
        while self.current < self.n_shards - 1:    # empty shards still get a (valid) file
            self._open(self.current + 1)
        self.close()


# ---- workers ---------------------------------------------------------------------------------

_STATE: dict = {}


def _init_worker(cfg: SimConfig, plan: Plan) -> None:
    _STATE["cfg"] = cfg
    _STATE["plan"] = plan
    _STATE["world"] = build_world_for(cfg)


def _run_chunk(chunk: int) -> dict:
    cfg, plan, world = _STATE["cfg"], _STATE["plan"], _STATE["world"]
    res = simulate_chunk(world, cfg, plan, chunk)
    return {"chunk": chunk, "rows": res["rows"], "stats": res["stats"],
            "log": encode(res["log"], cfg.format),
            "truth": encode(res["truth"], cfg.truth_format),
            "users": encode_csv(res["users"])}


def pay_drift_walk_for(cfg: SimConfig) -> np.ndarray:
    """``[day, country, scene]`` pay logit offsets of the run (zeros when pay_drift is 0)."""
    return W.pay_drift_walk(np.random.SeedSequence(cfg.seed, spawn_key=(3,)), cfg.days,
                            cfg.pay_drift)


def pay_drift_day(cfg: SimConfig, event_ts: np.ndarray) -> np.ndarray:
    """The walk's day index of epoch seconds ``event_ts``: UTC days since the window start,
    the last day's for events after the window."""
    return np.minimum((event_ts - cfg.start_ts) // 86400, cfg.days - 1)


def build_world_for(cfg: SimConfig) -> W.World:
    return W.build_world(np.random.SeedSequence(cfg.seed, spawn_key=(0,)),
                         cfg.categories, cfg.items)


def _results(cfg: SimConfig, plan: Plan) -> Iterator[dict]:
    chunks = range(len(plan.chunks))
    workers = min(cfg.workers, len(plan.chunks))
    if workers <= 1:
        _init_worker(cfg, plan)
        try:
            for c in chunks:
                yield _run_chunk(c)
        finally:
            _STATE.clear()
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, plan)) as pool:
        yield from pool.imap(_run_chunk, chunks, chunksize=1)


# ---- world files -----------------------------------------------------------------------------

def _write_world(world: W.World, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    cats = pa.table({
        "category_id": pa.array(world.category_ids),
        "related_category_ids": pa.array(
            [" ".join(world.category_ids[r]) for r in world.related]),
        "traffic_share": pa.array(np.round(world.category_weight, 8)),
        "median_price": pa.array(np.round(world.category_price, 2)),
        "refund_shift": pa.array(np.round(world.category_refund, 6)),
    })
    items = pa.table({
        "item_id": pa.array(world.item_ids),
        "category_id": pa.array(world.category_ids).take(pa.array(world.item_category)),
        "popularity": pa.array(world.item_pop),
        "base_price": pa.array(np.round(world.item_price, 2)),
        "quality": pa.array(np.round(world.item_quality, 6)),
    })
    for name, table in (("categories.csv", cats), ("items.csv", items)):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(csv_header(table.schema))
            f.write(encode_csv(table))


def read_related(out: str) -> dict:
    """``{category_id: set(related category ids)}`` from a run's ``world/categories.csv``."""
    table = pacsv.read_csv(os.path.join(out, "world", "categories.csv"))
    return {c: set(r.split()) for c, r in zip(table.column("category_id").to_pylist(),
                                              table.column("related_category_ids").to_pylist())}


# ---- driver ----------------------------------------------------------------------------------

def _rate(num: float, den: float) -> Optional[float]:
    return round(float(num) / float(den), 6) if den else None


def simulate(cfg: SimConfig, log=sys.stderr) -> dict:
    """Runs the simulation and writes everything under ``cfg.out``. Returns the summary."""
    cfg.validate()
    t0 = time.time()
    plan = make_plan(cfg)
    world = build_world_for(cfg)
    os.makedirs(cfg.out, exist_ok=True)
    _write_world(world, os.path.join(cfg.out, "world"))
    del world
    imp_writer = ShardWriter(os.path.join(cfg.out, "impressions"), cfg.format, LOG_SCHEMA,
                             plan.n_shards)
    truth_writer = ShardWriter(os.path.join(cfg.out, "truth"), cfg.truth_format, TRUTH_SCHEMA,
                               plan.n_shards)
    users_path = os.path.join(cfg.out, "world", "users.csv")
    totals: dict = {}
    rows = 0
    n_chunks = len(plan.chunks)
    print(f"[ranking-simulate] {cfg.impressions:,} impressions, {cfg.n_users:,} users, "
          f"{n_chunks} chunks -> {plan.n_shards} shards, {min(cfg.workers, n_chunks)} workers",
          file=log, flush=True)
    with open(users_path, "wb") as users_file:
        users_file.write(csv_header(USERS_SCHEMA))
        for res in _results(cfg, plan):
            c = res["chunk"]
            shard = int(plan.shard_of_chunk[c])
            imp_writer.write(shard, res["log"])
            truth_writer.write(shard, res["truth"])
            users_file.write(res["users"])
            for key, value in res["stats"].items():
                if key in ("min_ts", "max_ts"):
                    if value is not None:
                        pick = min if key == "min_ts" else max
                        totals[key] = value if totals.get(key) is None else pick(totals[key], value)
                else:
                    totals[key] = totals.get(key, 0) + value
            rows += res["rows"]
            elapsed = time.time() - t0
            print(f"[ranking-simulate] chunk {c + 1}/{n_chunks} done: {rows:,} rows, "
                  f"{rows / max(elapsed, 1e-9):,.0f} rows/s", file=log, flush=True)
    imp_writer.finish()
    truth_writer.finish()

    summary = _summary(cfg, plan, totals)
    with open(os.path.join(cfg.out, "simulation.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")
    elapsed = time.time() - t0
    t = summary["totals"]
    fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    print(f"[ranking-simulate] done: {t['impressions']:,} impressions, {t['clicks']:,} clicks "
          f"(CTR {fmt(t['ctr'])}), {t['pays']:,} pays (CVR {fmt(t['cvr'])}), {t['refunds']:,} "
          f"refunds ({fmt(t['refund_rate'])}) in {elapsed:.1f} s "
          f"({rows / max(elapsed, 1e-9):,.0f} rows/s) -> {cfg.out}", file=log, flush=True)
    return summary


def _summary(cfg: SimConfig, plan: Plan, s: dict) -> dict:
    imps, clicks, pays, refunds = (np.asarray(s[k]) for k in
                                   ("impressions", "clicks", "pays", "refunds"))
    domains = {}
    for d, name in enumerate(W.domain_names()):
        domains[name] = {
            "impressions": int(imps[d]), "clicks": int(clicks[d]), "pays": int(pays[d]),
            "refunds": int(refunds[d]),
            "ctr": _rate(clicks[d], imps[d]), "cvr": _rate(pays[d], clicks[d]),
            "refund_rate": _rate(refunds[d], pays[d]),
            "mean_p_click": _rate(s["sum_p_click"][d], imps[d]),
            "mean_p_pay_clicked": _rate(s["sum_p_pay_clicked"][d], clicks[d]),
            "mean_p_refund_paid": _rate(s["sum_p_refund_paid"][d], pays[d]),
        }
    tiers = {}
    for i, name in enumerate(W.TIERS):
        users = int(s["tier_users"][i])
        n_imp = int(s["tier_impressions"][i])
        tiers[name] = {"users": users, "impressions": n_imp,
                       "impressions_per_user": _rate(n_imp, users),
                       "ctr": _rate(s["tier_clicks"][i], n_imp)}
    ext = EXTENSIONS[cfg.format]
    return {
        # Execution settings (out, workers) are left out: the files must not depend on them.
        # domain_drift, domain_effect_scale and pay_drift only when not at their defaults: a
        # run without them writes the same file as before they existed.
        "params": {**{k: v for k, v in dataclasses.asdict(cfg).items()
                      if k not in ("out", "workers")
                      and not (k in ("domain_drift", "pay_drift") and not v)
                      and not (k == "domain_effect_scale" and v == 1.0)},
                   "users": cfg.n_users, "shards": plan.n_shards, "chunks": len(plan.chunks)},
        "schema": {"columns": list(LOG_COLUMNS),
                   "extra_columns": [{"name": n, "kind": k} for n, k in EXTRA_COLUMNS],
                   "truth_columns": list(TRUTH_COLUMNS)},
        "files": {"impressions": f"impressions/part-*-of-{plan.n_shards:05d}.{ext}",
                  "truth": f"truth/part-*-of-{plan.n_shards:05d}.{EXTENSIONS[cfg.truth_format]}",
                  "categories": "world/categories.csv", "items": "world/items.csv",
                  "users": "world/users.csv"},
        "world": {"countries": list(W.COUNTRIES), "scenes": list(W.SCENES),
                  "devices": list(W.DEVICES), "tiers": list(W.TIERS),
                  "categories": cfg.categories, "items": cfg.items,
                  "related_per_category": W.RELATED_PER_CATEGORY,
                  "seq_len": W.SEQ_LEN, "related_weight": W.RELATED_WEIGHT,
                  "window_start_ts": cfg.start_ts,
                  "window_end_ts": cfg.start_ts + cfg.days * 86400},
        "totals": {
            "impressions": int(imps.sum()), "clicks": int(clicks.sum()),
            "pays": int(pays.sum()), "refunds": int(refunds.sum()),
            "ctr": _rate(clicks.sum(), imps.sum()), "cvr": _rate(pays.sum(), clicks.sum()),
            "ctcvr": _rate(pays.sum(), imps.sum()),
            "refund_rate": _rate(refunds.sum(), pays.sum()),
            "mean_p_click": _rate(np.sum(s["sum_p_click"]), imps.sum()),
            "impressions_with_seq_match": s["with_seq_match"],
            "ctr_with_seq_match": _rate(s["clicks_with_seq_match"], s["with_seq_match"]),
            "ctr_without_seq_match": _rate(clicks.sum() - s["clicks_with_seq_match"],
                                           imps.sum() - s["with_seq_match"]),
            "impressions_after_window": s["impressions_after_window"],
            "pays_after_window": s["pays_after_window"],
            "refunds_after_window": s["refunds_after_window"],
            "seq_inexact_steps": s["seq_inexact_steps"],
            "min_ts": s.get("min_ts"), "max_ts": s.get("max_ts"),
        },
        "domains": domains,
        "tiers": tiers,
        **_pay_drift_summary(cfg),
    }


def _pay_drift_summary(cfg: SimConfig) -> dict:
    if not cfg.pay_drift:
        return {}
    walk = pay_drift_walk_for(cfg).reshape(cfg.days, W.N_DOMAINS)
    return {"pay_drift_walk": {name: np.round(walk[:, d], 6).tolist()
                               for d, name in enumerate(W.domain_names())}}
