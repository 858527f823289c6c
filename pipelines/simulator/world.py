"""The static world of the simulator: domains, categories, items and the true model's weights.

Everything here is either a fixed table (the domain-specific coefficients, so that they can be
read and cited) or drawn once from the run's seed (categories, their related categories, items),
so every worker process rebuilds the identical world from ``(seed, n_categories, n_items)``.

The true model (see :mod:`pipelines.simulator.simulate` for the formulas):

* click logit = ``click_base[c, s] + click_pop[c, s] * z_pop + click_price[c, s] * z_price
  + click_taste[c, s] * taste + click_device[c, s, device] + 0.35 * item_quality
  + user_click_bias + tier_click_shift[tier] + click_seq[c, s] * log1p(seq_score)``,
  where ``seq_score = n_same + RELATED_WEIGHT * n_related`` counts the user's last
  ``SEQ_LEN`` clicks with ``click_ts`` strictly before the impression's ``ts`` whose category
  is the target's (same) or has the target's category among its related ones (related);
* conversion | click and refund | conversion have their own domain tables below; with
  ``pay_drift`` the conversion logit also gets a per-domain daily random walk
  (:func:`pay_drift_walk`).

Indices: ``c`` country, ``s`` scene, domain index ``d = c * len(SCENES) + s``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pipelines.schema.raw_log import domain_of

COUNTRIES = ("US", "BR", "ES", "FR")
SCENES = ("home", "search", "cart")
DEVICES = ("ios", "android", "web")
TIERS = ("heavy", "medium", "light")
N_DOMAINS = len(COUNTRIES) * len(SCENES)

# --- users -------------------------------------------------------------------------------
TIER_SHARE = np.array([0.05, 0.25, 0.70])          # share of users per tier
TIER_INTENSITY = np.array([20.0, 4.0, 1.0])        # relative impressions per user
ACTIVITY_SIGMA = 0.6                               # lognormal spread of activity inside a tier
TIER_CLICK_SHIFT = np.array([0.15, 0.0, -0.15])    # click logit shift per tier
TIER_TASTE_MULT = np.array([1.0, 0.9, 0.6])        # light users' taste is a weaker signal
COUNTRY_SHARE = np.array([0.40, 0.25, 0.20, 0.15])
# Scene mix of a country's traffic (rows: countries; columns: home, search, cart).
SCENE_SHARE = np.array([
    [0.50, 0.30, 0.20],
    [0.60, 0.25, 0.15],
    [0.45, 0.40, 0.15],
    [0.55, 0.30, 0.15],
])
# A user's primary device per country (columns: ios, android, web).
DEVICE_SHARE = np.array([
    [0.55, 0.30, 0.15],
    [0.15, 0.70, 0.15],
    [0.30, 0.55, 0.15],
    [0.40, 0.40, 0.20],
])
PRIMARY_DEVICE_PROB = 0.85           # else a uniformly random device for that impression
N_TASTES = 3
TASTE_AFFINITY = np.array([1.0, 0.7, 0.45])   # affinity of a user's 1st/2nd/3rd category
TASTE_PICK = np.array([0.5, 0.3, 0.2])        # which taste category an impression comes from
RELATED_TASTE_AFFINITY = 0.3                  # target related to a taste category

# --- time --------------------------------------------------------------------------------
# Local activity by hour of day (relative weights), shifted per country.
HOUR_PROFILE = np.array([
    0.30, 0.20, 0.12, 0.08, 0.07, 0.10, 0.25, 0.50, 0.70, 0.80, 0.85, 0.90,
    1.00, 0.95, 0.85, 0.80, 0.80, 0.85, 0.95, 1.10, 1.25, 1.30, 1.00, 0.60])
UTC_OFFSET_HOURS = np.array([-5, -3, 1, 1])   # local = UTC + offset
LOCAL_SHIFT_HOURS = np.array([0, 0, 1, 0])    # Spain lives an hour later
# Hourly drift of the scene mix (SimConfig.domain_drift = a > 0; off by default). Seed 000:
# each domain peaks at other hours, so the domain mix of time-ordered training batches moves.
# At local clock hour h a scene's weight in a country's traffic is
#     SCENE_SHARE[c, s] * (1 + a * cos(2 pi (h - SCENE_PEAK_HOUR[c, s]) / 24)),
# renormalized over the scenes (scene_share_by_hour): between its peak and trough hours a
# scene's weight moves by a factor (1 + a) / (1 - a), 9x at a = 0.8. Peak hours differ by
# country, so the country x scene mix of the whole traffic moves with the UTC hour too.
SCENE_PEAK_HOUR = np.array([
    [21, 11, 15],   # US: home in the evening, search late morning, cart mid-afternoon
    [13, 22, 8],    # BR
    [9, 17, 1],     # ES
    [17, 4, 23],    # FR
])
NEW_SESSION_PROB = 1.0 / 8.0                  # mean session length: 8 impressions
IMPRESSION_GAP_MEAN_S = 25.0                  # seconds between impressions in a session

# --- item selection per scene (home, search, cart) --------------------------------------------
P_FROM_TASTE = np.array([0.35, 0.55, 0.30])
P_FROM_RELATED = np.array([0.15, 0.10, 0.40])   # a category related to a taste category
# rest: the global popularity distribution

# --- prices ------------------------------------------------------------------------------
COUNTRY_PRICE_FACTOR = np.array([1.0, 0.85, 0.95, 1.05])
DISCOUNT_PROB = 0.10
DISCOUNT_FACTOR = 0.8

# --- click model: [country, scene] --------------------------------------------------------
CLICK_BASE = (np.array([-5.30, -4.65, -4.95])[None, :]
              + np.array([0.0, 0.25, -0.10, -0.20])[:, None]
              + np.array([[0.0, 0.0, 0.0],
                          [0.0, -0.20, 0.15],
                          [0.10, 0.0, -0.10],
                          [0.0, 0.15, 0.0]]))
CLICK_POP = np.array([0.55, 0.15, 0.35])[None, :] * np.array([1.0, 1.3, 0.8, 0.9])[:, None]
CLICK_PRICE = (np.array([-0.15, -0.45, 0.20])[None, :]
               + np.array([0.0, -0.25, -0.10, 0.05])[:, None])
CLICK_TASTE = np.array([1.0, 1.5, 0.5])[None, :] * np.array([1.0, 0.8, 1.1, 1.2])[:, None]
CLICK_SEQ = np.array([0.9, 0.5, 1.4])[None, :] * np.array([1.0, 1.2, 0.9, 0.8])[:, None]
# [country, device]; web gets +0.2 in search (desktop shoppers search).
_CLICK_DEVICE_COUNTRY = np.array([
    [0.15, -0.05, -0.25],
    [-0.10, 0.15, -0.30],
    [0.0, 0.10, -0.10],
    [0.10, 0.0, 0.05],
])
CLICK_DEVICE = np.repeat(_CLICK_DEVICE_COUNTRY[:, None, :], len(SCENES), axis=1)
CLICK_DEVICE[:, 1, 2] += 0.2
CLICK_QUALITY = 0.35
USER_CLICK_SIGMA = 0.4
SEQ_LEN = 5            # the last SEQ_LEN clicks strictly before the impression count
SEQ_BUFFER = 24        # recent clicks kept per user while stepping (>= SEQ_LEN + pending)
RELATED_WEIGHT = 0.7   # a related-category click counts 0.7 of a same-category click
# Click delay: lognormal seconds, median per scene, clipped.
CLICK_DELAY_MEDIAN_S = np.array([8.0, 4.0, 6.0])
CLICK_DELAY_SIGMA = 1.0
CLICK_DELAY_MAX_S = 1800

# --- conversion | click ------------------------------------------------------------------
PAY_BASE = (np.array([-3.60, -3.05, -2.45])[None, :]
            + np.array([0.0, -0.20, 0.05, 0.10])[:, None])
PAY_PRICE = np.array([-0.35, -0.50, -0.20])[None, :] * np.array([1.0, 1.5, 1.1, 0.9])[:, None]
PAY_DEVICE = np.array([0.20, 0.0, -0.10])
PAY_QUALITY = 0.5
PAY_TASTE = 0.3
PAY_SEQ = 0.25
USER_PAY_SIGMA = 0.5
# Conversion delay: with prob PAY_FAST_PROB[s] exponential (mean PAY_FAST_MEAN_S), else
# lognormal with median PAY_SLOW_MEDIAN_H[c] * PAY_SLOW_SCENE_MULT[s] hours.
PAY_FAST_PROB = np.array([0.30, 0.45, 0.60])
PAY_FAST_MEAN_S = 1800.0
PAY_SLOW_MEDIAN_H = np.array([10.0, 30.0, 16.0, 12.0])
PAY_SLOW_SCENE_MULT = np.array([1.2, 1.0, 0.7])
PAY_SLOW_SIGMA = 1.1
PAY_DELAY_MAX_S = 45 * 86400

# Drift of the conversion rates (SimConfig.pay_drift = sigma > 0; off by default): real
# conversion rates move from day to day (promotions, paydays, seasonality, a checkout change
# in one scene), the reason delayed-feedback models are trained on a stream. Each domain's pay
# logit gets an offset that follows a Gaussian random walk over the UTC days of the window,
# ``walk[0] = 0`` (day 0 is the static world) and ``walk[d] = walk[d - 1] + sigma * e_d -
# sigma^2 / 2`` with independent standard normal ``e_d`` per [country, scene]
# (pay_drift_walk). After ``d`` days a domain's offset has sd ``sigma * sqrt(d)``: 0.1 *
# sqrt(20) = 0.45 on day 20 of a 21-day window, a conversion rate ~1.6x higher or lower than
# at the start. The ``- sigma^2 / 2`` keeps the expected odds multiplier ``E[exp(walk[d])]``
# at 1, so conversion rates (~ odds, at these rates) move without a trend; a plain walk would
# raise them by ``exp(d sigma^2 / 2)`` on average: +10 % by day 20 at 0.1, +49 % at 0.2.

# --- refund | conversion -----------------------------------------------------------------
REFUND_BASE = (np.array([-1.70, -1.25, -1.50, -1.60])[:, None]
               + np.array([0.0, -0.10, 0.10])[None, :])
REFUND_PRICE = 0.35
REFUND_QUALITY = -0.6
CATEGORY_REFUND_SIGMA = 0.3
USER_REFUND_SIGMA = 0.4
# Refund delay: REFUND_MIN_S + lognormal with median REFUND_MEDIAN_D[c] days.
REFUND_MIN_S = 86400
REFUND_MEDIAN_D = np.array([3.0, 6.0, 4.0, 3.5])
REFUND_SIGMA = 0.6
REFUND_DELAY_MAX_S = 60 * 86400

# --- strength of the domain effects ----------------------------------------------------------
# SimConfig.domain_effect_scale = K (``--domain-effect-scale``; 1 = the tables above as they
# are). Each [country, scene] coefficient table T (trailing axes, e.g. CLICK_DEVICE's device,
# kept apart) becomes ``mean_d(T) + K * (T - mean_d(T))``, the unweighted mean over the 12
# domains: K scales how much domains differ while the average domain's coefficients stay put.
# K = 0 makes every domain alike; K > 1 can flip a slope's sign in some domains (CLICK_POP at
# K = 3: US|home 0.35 + 3 * 0.2 = 0.95, BR|search 0.35 - 3 * 0.155 = -0.115), the conflicting
# domains that scenario towers (DWG, STAR, PEPNet) are built for. Delays are left alone.


@dataclasses.dataclass(frozen=True)
class DomainTables:
    """The true model's domain-indexed coefficients, ``[country, scene(, device)]``."""

    click_base: np.ndarray
    click_pop: np.ndarray
    click_price: np.ndarray
    click_taste: np.ndarray
    click_seq: np.ndarray
    click_device: np.ndarray
    pay_base: np.ndarray
    pay_price: np.ndarray
    refund_base: np.ndarray


DEFAULT_DOMAIN_TABLES = DomainTables(
    click_base=CLICK_BASE, click_pop=CLICK_POP, click_price=CLICK_PRICE, click_taste=CLICK_TASTE,
    click_seq=CLICK_SEQ, click_device=CLICK_DEVICE, pay_base=PAY_BASE, pay_price=PAY_PRICE,
    refund_base=REFUND_BASE)


def domain_tables(scale: float = 1.0) -> DomainTables:
    """The coefficient tables with their deviations between domains scaled by ``scale``."""
    check_domain_effect_scale(scale)
    if scale == 1.0:
        # The module's arrays themselves: mean + 1 * (T - mean) is not T to the last bit, and
        # K = 1 must reproduce earlier runs byte for byte.
        return DEFAULT_DOMAIN_TABLES
    return DomainTables(**{
        field.name: _scale_domain_deviation(getattr(DEFAULT_DOMAIN_TABLES, field.name), scale)
        for field in dataclasses.fields(DomainTables)})


def check_domain_effect_scale(scale: float) -> None:
    if not (np.isfinite(scale) and scale >= 0.0):
        raise ValueError(f"domain_effect_scale must be a finite number >= 0, got {scale!r}")


def pay_drift_walk(seed_sequence: np.random.SeedSequence, days: int,
                   sigma: float) -> np.ndarray:
    """The pay logit offset of each domain on each UTC day of the window,
    ``[day, country, scene]`` (see the comment above the refund tables). The standard normal
    steps are drawn before scaling by ``sigma``, so walks of one seed at different sigmas
    follow the same path."""
    check_pay_drift(sigma)
    rng = np.random.default_rng(seed_sequence)
    steps = (rng.standard_normal((days - 1, len(COUNTRIES), len(SCENES))) * sigma
             - sigma ** 2 / 2)
    return np.concatenate([np.zeros((1, len(COUNTRIES), len(SCENES))),
                           np.cumsum(steps, axis=0)])


def check_pay_drift(sigma: float) -> None:
    if not (np.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"pay_drift must be a finite number >= 0, got {sigma!r}")


def _scale_domain_deviation(table: np.ndarray, scale: float) -> np.ndarray:
    mean = table.mean(axis=(0, 1), keepdims=True)
    return mean + scale * (table - mean)


# --- catalogue ---------------------------------------------------------------------------
DEFAULT_CATEGORIES = 200
DEFAULT_ITEMS = 20_000
RELATED_PER_CATEGORY = 3
CATEGORY_ZIPF = 0.8
ITEM_ZIPF = 1.0


@dataclasses.dataclass
class World:
    """Categories and items, drawn once per seed. Arrays are indexed by category / item."""

    n_categories: int
    n_items: int
    category_ids: np.ndarray         # str, "c0007"
    category_weight: np.ndarray      # traffic share of the category (sums to 1)
    category_cum: np.ndarray         # cumulative category_weight, for sampling
    related: np.ndarray              # int [n_categories, RELATED_PER_CATEGORY]
    related_matrix: np.ndarray       # bool [clicked, target]: target related to clicked
    category_refund: np.ndarray      # refund logit shift per category
    category_price: np.ndarray       # median price per category
    item_ids: np.ndarray             # str, "p000123"
    item_category: np.ndarray        # int, items sorted by category
    cat_first_item: np.ndarray       # [n_categories + 1]: first item of each category
    item_pop: np.ndarray             # Zipf popularity weight (global sum 1)
    item_cum: np.ndarray             # cumulative item_pop (items sorted by category)
    cat_item_start: np.ndarray       # per category: cumulative pop before its first item
    cat_item_weight: np.ndarray      # per category: total pop of its items
    item_z_pop: np.ndarray           # standardized log popularity
    item_price: np.ndarray           # base price
    item_quality: np.ndarray         # latent quality ~ N(0, 1)
    log_price_mean: float
    log_price_sd: float

    def sample_items_global(self, u: np.ndarray) -> np.ndarray:
        """Items by global popularity, from uniforms ``u`` in [0, 1)."""
        return np.minimum(np.searchsorted(self.item_cum, u, side="right"), self.n_items - 1)

    def sample_items_in(self, categories: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Items of the given categories by popularity inside the category."""
        x = self.cat_item_start[categories] + u * self.cat_item_weight[categories]
        items = np.searchsorted(self.item_cum, x, side="right")
        # Guard the float edges: clamp into the category's item range.
        first = self.cat_first_item[categories]
        last = self.cat_first_item[categories + 1] - 1
        return np.clip(items, first, last)

    def sample_categories(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.category_cum, u, side="right"),
                          self.n_categories - 1)


def build_world(seed_sequence: np.random.SeedSequence,
                n_categories: int = DEFAULT_CATEGORIES,
                n_items: int = DEFAULT_ITEMS) -> World:
    """Draws the catalogue. Deterministic in ``seed_sequence`` and the sizes."""
    if n_categories < RELATED_PER_CATEGORY + 1:
        raise ValueError(f"need at least {RELATED_PER_CATEGORY + 1} categories")
    if n_items < n_categories:
        raise ValueError("need at least one item per category")
    rng = np.random.default_rng(seed_sequence)
    width_c = max(4, len(str(n_categories - 1)))
    width_i = max(6, len(str(n_items - 1)))
    category_ids = np.array([f"c{i:0{width_c}d}" for i in range(n_categories)])

    # Category traffic: Zipf over a random ranking of the categories.
    cat_rank = rng.permutation(n_categories) + 1
    category_weight = cat_rank.astype(np.float64) ** -CATEGORY_ZIPF
    category_weight /= category_weight.sum()

    # Related categories: a few distinct others per category (directed: phone -> case).
    scores = rng.random((n_categories, n_categories))
    np.fill_diagonal(scores, np.inf)
    related = np.argsort(scores, axis=1)[:, :RELATED_PER_CATEGORY].astype(np.int32)
    related_matrix = np.zeros((n_categories, n_categories), dtype=bool)
    related_matrix[np.repeat(np.arange(n_categories), RELATED_PER_CATEGORY), related.ravel()] = True

    category_refund = rng.normal(0.0, CATEGORY_REFUND_SIGMA, n_categories)
    category_price = np.exp(rng.normal(np.log(30.0), 0.9, n_categories))

    # Items per category: at least one, the rest proportional to the category's weight.
    extra = n_items - n_categories
    per_cat = 1 + np.floor(category_weight * extra).astype(np.int64)
    short = n_items - per_cat.sum()
    per_cat[np.argsort(-category_weight, kind="stable")[:short]] += 1
    item_category = np.repeat(np.arange(n_categories), per_cat).astype(np.int32)
    cat_first_item = np.concatenate([[0], np.cumsum(per_cat)])

    # Item popularity: Zipf over a random global ranking; the category's traffic share is
    # then spread over its items in proportion to their Zipf weight.
    item_rank = rng.permutation(n_items) + 1
    zipf = item_rank.astype(np.float64) ** -ITEM_ZIPF
    cat_zipf = np.bincount(item_category, weights=zipf, minlength=n_categories)
    item_pop = zipf / cat_zipf[item_category] * category_weight[item_category]
    item_pop /= item_pop.sum()
    item_cum = np.cumsum(item_pop)
    item_cum[-1] = 1.0
    cat_item_weight = np.bincount(item_category, weights=item_pop, minlength=n_categories)
    cat_item_start = np.concatenate([[0.0], np.cumsum(cat_item_weight)[:-1]])
    log_pop = np.log(item_pop)
    item_z_pop = (log_pop - log_pop.mean()) / log_pop.std()

    item_price = np.clip(category_price[item_category] * np.exp(rng.normal(0.0, 0.45, n_items)),
                         0.5, 5000.0)
    item_quality = rng.normal(0.0, 1.0, n_items)
    log_price = np.log(item_price)
    category_cum = np.cumsum(category_weight)
    category_cum[-1] = 1.0

    world = World(
        n_categories=n_categories, n_items=n_items, category_ids=category_ids,
        category_weight=category_weight, category_cum=category_cum, related=related,
        related_matrix=related_matrix, category_refund=category_refund,
        category_price=category_price,
        item_ids=np.array([f"p{i:0{width_i}d}" for i in range(n_items)]),
        item_category=item_category, cat_first_item=cat_first_item, item_pop=item_pop, item_cum=item_cum,
        cat_item_start=cat_item_start, cat_item_weight=cat_item_weight,
        item_z_pop=item_z_pop, item_price=item_price, item_quality=item_quality,
        log_price_mean=float(log_price.mean()), log_price_sd=float(log_price.std()))
    return world


def taste_affinity(world: World, user_tastes: np.ndarray, categories: np.ndarray,
                   tiers: np.ndarray) -> np.ndarray:
    """The true model's taste value ``[n]`` of each impression (its ``click_taste`` and
    ``PAY_TASTE`` multiply it): ``TASTE_AFFINITY`` of the user's taste slot holding the
    target's category, else ``RELATED_TASTE_AFFINITY`` if the category is related to one of
    the user's tastes, else 0; times the tier's ``TIER_TASTE_MULT``.

    Args:
      user_tastes: ``int [n, N_TASTES]``, each impression's user's taste categories.
      categories: ``int [n]``, the target's category.
      tiers: ``int [n]``, the user's tier.
    """
    affinity = ((user_tastes == categories[:, None]) * TASTE_AFFINITY).max(1)
    related = world.related_matrix[user_tastes, categories[:, None]].any(1)
    affinity = np.where(affinity > 0, affinity, related * RELATED_TASTE_AFFINITY)
    return affinity * TIER_TASTE_MULT[tiers]


def scene_share_by_hour(amplitude: float) -> np.ndarray:
    """Scene mix per country and local clock hour, ``[country, hour, scene]`` (rows sum to
    1), for a drift amplitude in ``[0, 1]``; amplitude 0 gives ``SCENE_SHARE`` at every hour."""
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"domain drift amplitude must be in [0, 1], got {amplitude!r}")
    hours = np.arange(24)[None, :, None]
    wave = 1.0 + amplitude * np.cos(2 * np.pi * (hours - SCENE_PEAK_HOUR[:, None, :]) / 24)
    weights = SCENE_SHARE[:, None, :] * wave
    return weights / weights.sum(axis=-1, keepdims=True)


def domain_names() -> list[str]:
    """Domain names in domain-index order, as :func:`pipelines.schema.raw_log.domain_of`."""
    return [domain_of(c, s) for c in COUNTRIES for s in SCENES]
