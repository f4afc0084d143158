"""``tunelab app support build | tune | eval | chat | export-feedback`` and ``tunelab app monitor``.

A thin layer over ``tunelab.apps.support``: parse, call, print. ``export-feedback`` lives in
``tunelab.cli.support_feedback_cmd`` (it reads the service's hand-off tickets), ``app monitor`` in
``tunelab.cli.monitor_cmd``, ``app recommend`` in ``tunelab.cli.recommend_cmd``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from tunelab.cli import monitor_cmd, recommend_cmd, support_feedback_cmd
from tunelab.cli.output import pct, table

HELP = """examples:
  tunelab app support build --run runs/banking77 --answers answers.yaml --knowledge faq.md --out bots/banking
  tunelab app support tune bots/banking --dev dev.csv --target precision=0.95
  tunelab app support eval bots/banking --data test.csv --conversations followups.jsonl
  tunelab app support chat bots/banking
"""

BUILD_HELP = """examples:
  tunelab app support build --run runs/banking77 --answers answers.yaml --knowledge faq.md --out bots/banking
  tunelab app support build --run runs/banking77 --answers answers.yaml --knowledge faq.csv \\
      --ner runs/ner --dev dev.csv --out bots/banking --overwrite

The answers file maps intents to reply templates whose {slots} are filled by regexes or an NER
run's entities; the knowledge file (Markdown sections, or CSV/JSONL with a text column) is split
into passages and embedded once. The confidence is calibrated on --dev (text,label rows the model
was not trained on; or the run's own text and label columns), else on the run's own dev split.
The folder is written whole or not at all.
"""

TUNE_HELP = """examples:
  tunelab app support tune bots/banking --dev dev.csv --target precision=0.95
  tunelab app support tune bots/banking --dev dev.csv --target handoff=0.10 --oos-label out_of_scope

dev.csv has text,label rows (or the intent run's own text and label columns); rows labelled oos
(--oos-label) are messages no intent covers, which must be handed off. precision=P: answers right
at least P of the time, as few hand-offs as that allows; handoff=H: at most H of all messages
handed off, answers as accurate as that allows.
Writes the thresholds into bot.yaml and the curve to <bot>/tune/curve.csv and curve.png.
"""

EVAL_HELP = """examples:
  tunelab app support eval bots/banking --data test.csv
  tunelab app support eval bots/banking --conversations followups.jsonl --json

--data: text,label rows, or the run's own columns (label oos: out of scope). --conversations: JSON lines
{"turns": ["I ordered a card last week", "and how long does that take?"], "intent": "card_arrival"},
scored on the last turn with and without the earlier turns. A label that is --oos-label, or an
intent the model lacks, is out of scope: such a row is wrong when answered, such a conversation
right only when handed off.
"""

CHAT_HELP = """example:
  tunelab app support chat bots/banking

Type a message and press Enter; /reset forgets the conversation, /quit (or Ctrl-D) leaves.
"""


APP_HELP = """examples:
  tunelab app support build --run runs/banking77 --answers answers.yaml --knowledge faq.md --out bots/banking
  tunelab app support chat bots/banking
  tunelab app monitor run --config monitor.yaml
  tunelab app monitor report --config monitor.yaml --out report.html
  tunelab app recommend build --config configs/movielens.yaml --out recs/movielens
  tunelab app recommend rank recs/movielens --user 42 --k 10
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="applications built on tunelab: the support bot, the sentiment monitor, the recommender",
        description="Applications built on tunelab's API and service.",
        epilog=APP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apps = p.add_subparsers(dest="app", metavar="APP", required=True)
    support = apps.add_parser(
        "support",
        help="the customer-service bot: answer, look up, or hand off",
        description="A customer-service bot: an intent model's answers, a knowledge base, hand-offs.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = support.add_subparsers(dest="support_action", metavar="ACTION", required=True)
    _build_parser(actions)
    _tune_parser(actions)
    _eval_parser(actions)
    _chat_parser(actions)
    support_feedback_cmd.add_parser(actions)
    monitor_cmd.add_parser(apps)
    recommend_cmd.add_parser(apps)


def _subparser(
    actions: argparse._SubParsersAction, name: str, help_: str, epilog: str
) -> argparse.ArgumentParser:
    return actions.add_parser(
        name,
        help=help_,
        description=help_[0].upper() + help_[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _build_parser(actions: argparse._SubParsersAction) -> None:
    p = _subparser(
        actions, "build", "build a bot folder from an intent run, answers and knowledge", BUILD_HELP
    )
    p.add_argument("--run", required=True, help="the intent model's run folder, e.g. runs/banking77")
    p.add_argument("--answers", required=True, help="answers YAML: intents -> reply templates")
    p.add_argument("--knowledge", help="knowledge file: .md, .csv or .jsonl (default: none, templates only)")
    p.add_argument("--out", required=True, help="the bot folder to write, e.g. bots/banking")
    p.add_argument("--ner", help="an NER run filling {entity: TYPE} slots")
    p.add_argument("--dev", help="text,label rows to calibrate on (default: the run's dev split)")
    p.add_argument("--encoder", default="minilm-l6", help="sentence encoder of the knowledge index")
    p.add_argument("--name", help="the bot's name (default: the folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bot folder")
    p.add_argument(
        "--oos-label",
        default="oos",
        help="the intent model's out-of-scope class, if any: handed off, never answered (default oos)",
    )
    p.set_defaults(handler=run_build, stdout_summary=True)


def _tune_parser(actions: argparse._SubParsersAction) -> None:
    p = _subparser(actions, "tune", "set a bot's thresholds from labelled dev data", TUNE_HELP)
    p.add_argument("bot", help="bot folder, e.g. bots/banking")
    p.add_argument("--dev", required=True, help="text,label rows (label oos: out of scope)")
    p.add_argument(
        "--target", default="precision=0.95", help="precision=P or handoff=H (default precision=0.95)"
    )
    p.add_argument(
        "--oos-label",
        help="the label of out-of-scope rows (default: the bot's, oos unless built with --oos-label)",
    )
    p.set_defaults(handler=run_tune, stdout_summary=True)


def _eval_parser(actions: argparse._SubParsersAction) -> None:
    p = _subparser(actions, "eval", "score a bot on labelled messages or conversations", EVAL_HELP)
    p.add_argument("bot", help="bot folder, e.g. bots/banking")
    p.add_argument("--data", help="text,label rows (label oos: out of scope)")
    p.add_argument("--conversations", help="JSONL conversations: turns and the last turn's intent")
    p.add_argument(
        "--oos-label",
        help="the label of out-of-scope rows and conversations, right when handed off (default: the "
        "bot's, oos unless built with --oos-label)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(handler=run_eval, stdout_summary=True)


def _chat_parser(actions: argparse._SubParsersAction) -> None:
    p = _subparser(actions, "chat", "talk to a bot in the terminal", CHAT_HELP)
    p.add_argument("bot", help="bot folder, e.g. bots/banking")
    p.set_defaults(handler=run_chat, stdout_summary=True)


# -- handlers ----------------------------------------------------------------------------------------


def run_build(args: argparse.Namespace) -> int:
    from tunelab.apps.support.build import build_bot

    result = build_bot(
        args.run,
        args.answers,
        args.knowledge,
        args.out,
        ner=args.ner,
        dev=args.dev,
        encoder=args.encoder,
        name=args.name,
        overwrite=args.overwrite,
        oos_label=args.oos_label,
    )
    cal = result.calibration
    print(f"bot {result.name}: {result.folder}")
    if cal.get("fitted"):
        print(
            f"  calibration: temperature {cal['temperature']:.3f} on {cal['rows']} dev rows ({cal['dev']}); "
            f"ECE {pct(cal['ece_before'])} before, {pct(cal['ece_after'])} after"
        )
    else:
        print("  calibration: none (temperature 1.0)")
    print(f"  knowledge: {result.passages} passages, {result.search} search")
    print("  thresholds: defaults until tuned (tunelab app support tune)")
    for line in result.warnings:
        print(f"warning: {line}")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from tunelab.apps.support.tune import parse_target, tune_bot

    parse_target(args.target)  # a bad target fails before the bot is loaded
    result = tune_bot(args.bot, args.dev, target=args.target, oos_label=args.oos_label)
    print(f"tuned {args.bot} for {result.target} on {result.rows} rows ({result.out_of_scope} out of scope):")
    print(f"  intent threshold     {result.intent_threshold:.4f}")
    print(f"  knowledge threshold  {result.knowledge_threshold:.4f}")
    print(_metrics_table(result.metrics))
    print(f"curve: {result.folder / 'curve.csv'}, {result.folder / 'curve.png'}")
    for line in result.warnings:
        print(f"warning: {line}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from tunelab.apps.support.bot import Bot
    from tunelab.apps.support.evaluate import evaluate_bot, evaluate_conversations
    from tunelab.errors import ConfigError

    if not args.data and not args.conversations:
        raise ConfigError("give --data FILE (labelled messages), --conversations FILE, or both")
    bot = Bot.load(args.bot)
    found: dict[str, Any] = {}
    if args.conversations:  # first: the smaller file, so its errors come before a long scoring
        # the same --oos-label as --data: it was left to the bot's own, so the halves disagreed
        found["conversations"] = evaluate_conversations(bot, args.conversations, oos_label=args.oos_label)
    if args.data:
        found["messages"] = evaluate_bot(bot, args.data, oos_label=args.oos_label)
    found = {k: found[k] for k in ("messages", "conversations") if k in found}
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if "messages" in found:
        m = found["messages"]
        print(f"{args.data} ({m['n']} messages, {m['out_of_scope']} out of scope):")
        print(_metrics_table(m))
        lacking = m["labels_counted_out_of_scope"]
        if lacking:
            print(f"note: labels the model lacks, counted out of scope: {', '.join(lacking)}")
    if "conversations" in found:
        c = found["conversations"]
        print(f"{args.conversations} ({c['n']} conversations, last turn resolved right):")
        for label, key in (
            ("with context    ", "right_with_context"),
            ("without context ", "right_without_context"),
        ):
            print(f"  {label} {c[key]}/{c['n']} ({pct(c[key + '_rate'])})")
        if c["labels_counted_out_of_scope"]:
            lacking = ", ".join(c["labels_counted_out_of_scope"])
            print(f"note: intents the model lacks, counted out of scope (right when handed off): {lacking}")
    return 0


def _metrics_table(m: dict[str, Any]) -> str:
    rows = [
        ("answer rate", pct(m["answer_rate"])),
        ("accuracy of answers", pct(m["accuracy"])),
        ("  of known intents", pct(m["accuracy_known"])),
        ("template answers right", pct(m["answer_accuracy"])),
        ("knowledge answers right", pct(m["knowledge_accuracy"])),
        ("hand-off, out of scope", pct(m["handoff_rate_out_of_scope"])),
        ("hand-off, known intents", pct(m["handoff_rate_known"])),
        ("answer / knowledge / hand-off", "{answer} / {knowledge} / {handoff}".format(**m["counts"])),
    ]
    return table(["metric", "value"], rows)


def run_chat(args: argparse.Namespace) -> int:
    from tunelab.apps.support.bot import Bot
    from tunelab.errors import DataError

    bot = Bot.load(args.bot)
    passages = len(bot.index.passages) if bot.index is not None else 0
    print(f"bot {bot.name} ({Path(bot.config.run).name}, {len(bot.intents)} intents, {passages} passages).")
    print("Type a message; /reset starts over, /quit leaves.")
    _undecodable_as_surrogates()
    history: list[str] = []
    while True:
        try:
            text = input("you> ")
        except EOFError:
            print()
            return 0
        command = text.strip().lower()
        if command in ("/quit", "/exit", "/q"):
            return 0
        if command == "/reset":
            history.clear()
            print("(conversation reset)")
            continue
        if not command:
            continue
        outside = _outside_stdin_locale(text)
        if outside is not None:
            print(f"error: {outside}")
            continue
        try:
            reply = bot.reply(text, history)
        except DataError as exc:
            print(f"error: {exc}")
            continue
        history = [*history, text][-10:]
        print(f"bot> {reply.reply}")
        print(f"     [{_chat_tag(reply)}]")


def _outside_stdin_locale(text: str) -> str | None:
    """The line for a message stdin's locale could not decode (``LC_ALL=C`` with Python's UTF-8
    mode off reads "café" as lone surrogates); None otherwise. The bot said "not valid Unicode ...
    fix the text" of a text that was valid UTF-8: the locale is what to fix."""
    from tunelab.atomic import LOCALE_FIX, holds_undecoded_bytes, is_utf8_codec

    encoding = getattr(sys.stdin, "encoding", None) or "utf-8"
    if is_utf8_codec(encoding) or not holds_undecoded_bytes(text):
        return None
    return f"standard input's encoding ({encoding}) cannot read this message: {LOCALE_FIX}"


def _undecodable_as_surrogates() -> None:
    """Read stdin's bytes that are not UTF-8 as lone surrogates, as a C/POSIX locale does.

    Under a strict UTF-8 locale they made input() raise UnicodeDecodeError, ending the chat and
    dropping the lines read with them; as surrogates, ``Bot.reply`` refuses the line in one line and
    the chat goes on. Left so when the chat ends: a TextIOWrapper cannot change its errors once it
    has read, and the process ends with the chat.
    """
    reconfigure = getattr(sys.stdin, "reconfigure", None)  # a TextIOWrapper's; not every stand-in's
    if reconfigure is None or getattr(sys.stdin, "errors", None) != "strict":
        return
    with contextlib.suppress(io.UnsupportedOperation):  # stdin was read before: left as it is
        reconfigure(errors="surrogateescape")


def _chat_tag(reply: Any) -> str:
    parts = [reply.kind]
    if reply.intent is not None:
        parts.append(f"{reply.intent} {reply.confidence:.2f}")
    if reply.kind == "knowledge" and reply.passages:
        top = reply.passages[0]
        parts.append(f"passage {top['score']:.2f} {top['title'] or top['source']}")
    if reply.used_context:
        parts.append("with your previous message")
    return " · ".join(parts)
