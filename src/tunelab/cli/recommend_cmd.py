"""``tunelab app recommend build | rank``: the text-based recommender from a ``rec.yaml``.

Wired under ``tunelab app`` with ``recommend_cmd.add_parser(app_subparsers)``. A thin layer over
``tunelab.apps.recommend``: parse, call, print.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tunelab.cli.output import printable
from tunelab.cli.streams import json_ascii

HELP = """examples:
  tunelab app recommend build --config configs/movielens.yaml --out recs/movielens
  tunelab app recommend rank recs/movielens --user 42 --k 10
  tunelab app recommend rank recs/movielens --user 42 --k 20 --include-seen --json

rec.yaml:
  name: movielens
  items: {path: movies.csv, id_column: movieId, text_fields: [title, genres], list_separators: {genres: "|"}}
  interactions: {path: ratings.csv, user_column: userId, item_column: movieId, time_column: timestamp,
                 rating_column: rating, positive: "rating >= 4"}
  model: {base: minilm-l6, history: 5, max_pairs: 20000}     # the bi-encoder's fine-tuning
  cf: {algorithm: als, second: {algorithm: ease}}           # or bpr, ease; second: optional
  ranker: {kind: logistic}                                   # or pairwise, hgb; fitted on validation data

To serve it: tunelab serve --recommend recs/movielens (items and events added there are kept in
the folder's live.sqlite, which rank here reads too).
"""

BUILD_HELP = """examples:
  tunelab app recommend build --config configs/movielens.yaml --out recs/movielens
  tunelab app recommend build --config rec.yaml --out recs/shop --max-pairs 2000 --overwrite
  tunelab app recommend build --config rec.yaml --out recs/shop --overwrite --keep-live

Reads the items and interactions, splits each user's positives by time (the last val_frac fit the
ranker), fine-tunes the bi-encoder on the rest, fits CF, and writes the folder whole or not at all.
Interactions naming items the items file lacks are counted and shown, not silently dropped.
--overwrite replaces the folder with its live.sqlite (the items added and events recorded since
the build); add --keep-live to carry them into the new folder: each added item re-embedded by the
new text model (one whose id the items file now has is left out: the catalog wins), every event
as recorded. Only live.sqlite is read, so a folder an older tunelab built keeps them too.
"""

RANK_HELP = """examples:
  tunelab app recommend rank recs/movielens --user 42
  tunelab app recommend rank recs/movielens --user 42 --k 20 --json

Each item comes with its reason: the user's items that matched it most. An unknown user gets the
popular-and-fresh list, flagged as a fallback.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``recommend`` (with ``build`` and ``rank``) to ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "recommend",
        help="the text-based recommender: learn users' interests from the text of what they liked",
        description="Recommend items from the text of what users engaged with, blended with CF, "
        "popularity and recency by a learned ranker.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="recommend_command", metavar="COMMAND", required=True)
    b = sub.add_parser(
        "build",
        help="build a recommender folder from a rec.yaml",
        description="Build a recommender folder from a rec.yaml.",
        epilog=BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--config", required=True, help="the recommender's YAML file")
    b.add_argument("--out", required=True, help="the folder to write, e.g. recs/movielens")
    b.add_argument("--overwrite", action="store_true", help="replace a recommender folder already there")
    b.add_argument(
        "--keep-live",
        action="store_true",
        help="with --overwrite: keep the replaced folder's added items and recorded events",
    )
    b.add_argument(
        "--max-pairs", type=int, metavar="N", help="fine-tuning triples (overrides model.max_pairs)"
    )
    # -q as train, predict and export take it (README: every command's bars)
    b.add_argument(
        "-q", "--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress bars"
    )
    b.set_defaults(handler=run, stdout_summary=True)
    r = sub.add_parser(
        "rank",
        help="a user's top items, with the reasons",
        description="A user's top items, with the reasons.",
        epilog=RANK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("folder", help="the recommender folder, e.g. recs/movielens")
    r.add_argument("--user", required=True, help="the user id")
    r.add_argument("--k", type=int, default=10, help="how many items (1 to 1000, default 10)")
    r.add_argument("--include-seen", action="store_true", help="keep items the user already interacted with")
    r.add_argument("--json", action="store_true", help="print the ranking as JSON")
    r.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.recommend_command == "build":
        return _build(args)
    return _rank(args)


def _build(args: argparse.Namespace) -> int:
    from tunelab.apps.recommend import build, load_config
    from tunelab.apps.recommend.builder import kept_live_line, read_report
    from tunelab.errors import ConfigError

    cfg = load_config(args.config)
    if args.max_pairs is not None:
        if args.max_pairs < 0:
            raise ConfigError(f"--max-pairs {args.max_pairs}: give 0 (no fine-tuning) or more")
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"max_pairs": args.max_pairs})})
    rec = build(
        cfg,
        args.out,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        absorb_val=True,
        keep_live=args.keep_live,
    )
    report = read_report(args.out)
    data, ranker = report.get("data", {}), report.get("ranker", {})
    print(f"recommender {cfg.name}: {args.out}")
    print(
        f"  {rec.info['n_items']} items, {rec.info['n_users']} users, "
        f"{data.get('interactions', 0)} interactions "
        f"({data.get('positives', 0)} positive: {cfg.interactions.positive})"
    )
    text = report.get("text_model", {})
    print(
        f"  text model: {cfg.model.base} fine-tuned on {text.get('triples', 0)} triples "
        f"({text.get('device')})"
    )
    if "auc_heldout_users" in ranker:
        print(
            f"  ranker: {ranker['kind']} on {ranker['rows']} validation rows; AUC on held-out users "
            f"{ranker['auc_heldout_users']:.3f} (as cold items {ranker['auc_heldout_users_cold']:.3f})"
        )
    if "pool_rows" in ranker:
        print(
            f"  pool model: on {ranker['pool_rows']} candidate-pool rows ({ranker['pool_positives']} "
            f"positive); reorders each ranking's top {ranker['pool_top']}"
        )
    cf_report = report.get("cf", {})
    if "second" in cf_report:
        print(f"  collaborative: {cf_report.get('algorithm')}, with {cf_report['second']} beside it")
    print(f"  search: {report.get('index', {}).get('search')}; built in {report['timings']['total_s']:.0f} s")
    if "kept_live" in report:
        print(f"  {kept_live_line(report['kept_live'])}")
    _warn_unknown(data.get("unknown_items", {}), cfg.interactions.path, "interactions")
    for extra in cfg.items.extra_text:
        counts = data.get("extra_text", {}).get(extra.name, {})
        _warn_unknown(counts.get("unknown_items", {}), extra.path, f"{extra.name} rows")
    return 0


def _warn_unknown(unknown: dict[str, Any], path: str, what: str) -> None:
    if not unknown.get("rows"):
        return
    examples = ", ".join(f"{e['item_id']!r} ({e['first']})" for e in unknown.get("examples", []))
    print(
        f"warning: {path}: {unknown['rows']} {what} name {unknown['distinct']} items the items file "
        f"lacks; left out: {examples}",
        file=sys.stderr,
    )


def _rank(args: argparse.Namespace) -> int:
    from tunelab.apps.recommend import Recommender

    rec = Recommender.load(args.folder)
    ranking = rec.rank(args.user, k=args.k, exclude_seen=not args.include_seen)
    if args.json:
        print(json.dumps(ranking.to_dict(), indent=2, ensure_ascii=json_ascii()))
        return 0
    if ranking.fallback:
        print(f"note: {ranking.fallback_reason}", file=sys.stderr)
    print(f"top {len(ranking.items)} for user {printable(ranking.user_id)}:")
    for n, item in enumerate(ranking.items, start=1):
        # ids and texts may come from clients of tunelab serve (items and events added over HTTP)
        print(f"{n:>3}. {item.score:.3f}  {printable(item.item_id)}  {_short(item.text)}")
        if item.reasons:
            titles = "; ".join(_short(_title(rec, rec.item_text(r)), 40) for r in item.reasons)
            print(f"       because of: {titles}")
    return 0


def _title(rec: Any, text: str) -> str:
    """The item's first text field (its title): the text up to the first named field."""
    names = [*rec.config.items.text_fields[1:], *(e.name for e in rec.config.items.extra_text)]
    cuts = [text.find(f". {name}: ") for name in names]
    return text[: min([c for c in cuts if c >= 0], default=len(text))]


def _short(text: str, width: int = 90) -> str:
    """The start of ``text`` on one line, control characters escaped (``cli.output.printable``)."""
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"
