"""``ranking-simulate``: writes synthetic impression logs plus their true probabilities.

Example::

    ranking-simulate --out /tmp/sim --impressions 1000000 --seed 1
    ranking-simulate --out /tmp/sim --impressions 200000 --seed 7 --format parquet --shards 4
    ranking-simulate --out /tmp/sim --impressions 60000 --domain-drift      # hourly domain mix
    ranking-simulate --out /tmp/sim --impressions 200000 --domain-effect-scale 3  # 3x domain gaps
    ranking-simulate --out /tmp/sim --impressions 1000000 --days 21 --pay-drift 0.1  # CVR drifts
"""
from __future__ import annotations

import argparse
import sys

from pipelines.simulator import simulate as S
from pipelines.simulator import world as W


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ranking-simulate",
        description="Synthetic e-commerce impression/click/pay/refund logs in the raw log "
                    "schema, with the true per-impression probabilities under DIR/truth/.")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--impressions", required=True, type=int, metavar="N",
                   help="number of impressions (rows) to write")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="random seed; same seed + args -> byte-identical files (default 0)")
    p.add_argument("--days", type=int, default=S.DEFAULT_DAYS, metavar="D",
                   help=f"simulated window in days (default {S.DEFAULT_DAYS})")
    p.add_argument("--users", type=int, default=None, metavar="U",
                   help=f"number of users (default N / {S.IMPRESSIONS_PER_USER})")
    p.add_argument("--format", choices=S.FORMATS, default="csv",
                   help="impression log format (default csv)")
    p.add_argument("--truth-format", choices=S.FORMATS, default="csv",
                   help="truth file format (default csv)")
    p.add_argument("--shards", type=int, default=None, metavar="K",
                   help=f"output files per directory (default min({S.DEFAULT_MAX_SHARDS}, "
                        "number of chunks)); does not change the rows, only how they are split")
    p.add_argument("--workers", type=int, default=S.DEFAULT_WORKERS, metavar="W",
                   help=f"worker processes (default {S.DEFAULT_WORKERS}); output does not "
                        "depend on it")
    p.add_argument("--start-ts", type=int, default=S.DEFAULT_START_TS, metavar="T",
                   help=f"window start, epoch seconds (default {S.DEFAULT_START_TS}, "
                        "2026-01-01 UTC)")
    p.add_argument("--chunk-rows", type=int, default=S.DEFAULT_CHUNK_ROWS, metavar="R",
                   help="about R impressions per independently seeded chunk of users "
                        f"(default {S.DEFAULT_CHUNK_ROWS}); bounds memory; changes the draw")
    p.add_argument("--categories", type=int, default=W.DEFAULT_CATEGORIES,
                   help=f"number of categories (default {W.DEFAULT_CATEGORIES})")
    p.add_argument("--items", type=int, default=W.DEFAULT_ITEMS,
                   help=f"number of items (default {W.DEFAULT_ITEMS})")
    p.add_argument("--domain-drift", type=float, nargs="?", const=S.DEFAULT_DOMAIN_DRIFT,
                   default=0.0, metavar="A",
                   help="make each domain's share of traffic change by hour of day: the scene "
                        "mix follows a daily wave of amplitude A in [0, 1] whose peak hours "
                        f"differ by country (default off; the flag alone: "
                        f"{S.DEFAULT_DOMAIN_DRIFT})")
    p.add_argument("--domain-effect-scale", type=float, default=1.0, metavar="K",
                   help="scale the differences between domains in the true model's [country, "
                        "scene] coefficient tables by K >= 0 (default 1, the tables as they are; "
                        "0: all domains alike)")
    p.add_argument("--pay-drift", type=float, default=0.0, metavar="SIGMA",
                   help="make each domain's conversion rate drift: its pay logit follows a "
                        "daily Gaussian random walk with step sd SIGMA >= 0, recorded in "
                        "simulation.json (default 0, off)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = S.SimConfig(
        out=args.out, impressions=args.impressions, seed=args.seed, days=args.days,
        users=args.users, format=args.format, truth_format=args.truth_format,
        shards=args.shards, workers=args.workers, start_ts=args.start_ts,
        chunk_rows=args.chunk_rows, categories=args.categories, items=args.items,
        domain_drift=args.domain_drift, domain_effect_scale=args.domain_effect_scale,
        pay_drift=args.pay_drift)
    try:
        cfg.validate()
    except ValueError as e:
        print(f"ranking-simulate: error: {e}", file=sys.stderr)
        return 2
    S.simulate(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
