"""Send a few messages to a built support bot and print each reply (what `make demo-bot` runs).

    python examples/support/ask.py bots/demo "I still have not received my new card"
    python examples/support/ask.py bots/demo --conversation "My payment was declined" "why did that happen?"

Each message is answered alone, unless --conversation: then each one has the earlier ones as its
history, as the service keeps them for a conversation id.
"""

from __future__ import annotations

import argparse
import sys

from tunelab.errors import TunelabError


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bot", help="a bot folder written by `tunelab app support build`")
    parser.add_argument("messages", nargs="+", metavar="MESSAGE")
    parser.add_argument(
        "--conversation", action="store_true", help="one conversation: earlier messages as history"
    )
    args = parser.parse_args()
    try:
        from tunelab.apps.support.bot import Bot

        bot = Bot.load(args.bot)
        history: list[str] = []
        for text in args.messages:
            reply = bot.reply(text, history if args.conversation else ())
            context = ", from the conversation's context" if reply.used_context else ""
            lines = [
                f"> {text}",
                f"  [{reply.kind}] intent {reply.intent or '-'} at {reply.confidence:.2f}{context}",
                f"  {reply.reply}",
            ]
            if reply.kind != "answer":
                lines.append(f"  why: {reply.reason}")
            print("\n".join(lines))  # noqa: T201 (a script: the replies are its output)
            history.append(text)
    except TunelabError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
