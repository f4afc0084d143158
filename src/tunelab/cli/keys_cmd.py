"""``tunelab keys create | list | revoke``: manage the API keys the server accepts.

The token is printed once, at creation; the database keeps only its hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from tunelab.cli.store_args import add_store_arguments, open_store_from_args
from tunelab.cli.streams import stdout_closed
from tunelab.errors import RunError

if TYPE_CHECKING:
    from tunelab.serve.store import KeyRecord

HELP = """examples:
  tunelab keys create --name acme --rate 20/s --quota 100000/month
  tunelab keys create --name ops --admin
  tunelab keys list
  tunelab keys revoke acme
  tunelab keys list --db postgresql://tunelab@db.internal:5432/tunelab
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="Manage the API keys of `tunelab serve` (stored hashed; shown once at creation).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="keys_action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="create a key and print its token once",
        description="Create an API key; its token is printed once and never stored.",
        epilog="example:\n  tunelab keys create --name acme --rate 20/s --quota 100000/month",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument(
        "--name", required=True, help="a unique name among active keys, and no key's id, e.g. acme"
    )
    create.add_argument("--rate", help="request rate: 20/s, 100/min or 5000/hour (default: unlimited)")
    create.add_argument("--quota", help="texts per UTC period: 100000/month, 5000/day (default: unlimited)")
    create.add_argument(
        "--admin",
        action="store_true",
        help="may manage keys (/v1/keys) and model versions over HTTP, and read /metrics",
    )
    create.add_argument("--json", action="store_true", help="print the key and token as JSON")
    add_store_arguments(create)
    create.set_defaults(handler=run_create)

    listing = actions.add_parser(
        "list",
        help="list keys (never their secrets)",
        description="List API keys: name, id, admin, rate, quota, created, revoked.",
        epilog="example:\n  tunelab keys list --active",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--active", action="store_true", help="leave out revoked keys")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    add_store_arguments(listing)
    listing.set_defaults(handler=run_list)

    revoke = actions.add_parser(
        "revoke",
        help="revoke a key by name or id",
        description="Revoke an active key: requests with it are refused with 403 from then on.",
        epilog="example:\n  tunelab keys revoke acme",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    revoke.add_argument("key", help="name or id of the key")
    add_store_arguments(revoke)
    revoke.set_defaults(handler=run_revoke)


def _times(key: KeyRecord) -> list[str | None]:
    return [_when(key.created_at), _when(key.revoked_at)]


def _when(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else None


def run_create(args: argparse.Namespace) -> int:
    from tunelab.serve.access import AccessControl
    from tunelab.serve.limits import Quota, Rate

    # ``is not None``: --rate "" (an unset shell variable, say) is refused by parse in one line; as
    # a falsy value it created an unlimited key.
    rate = Rate.parse(args.rate) if args.rate is not None else None
    quota = Quota.parse(args.quota) if args.quota is not None else None
    if stdout_closed():
        # `>&-`: the token, shown only once, would reach no one (a key nobody can use, its name taken)
        raise RunError(
            "standard output is closed, so the new key's token would reach no one; run it with an "
            "output that takes it (> token.txt, or a terminal)"
        )
    with open_store_from_args(args, writes=True) as store:
        record, token = AccessControl(store).create_key(args.name, rate=rate, quota=quota, admin=args.admin)
        if args.json:
            text = json.dumps({"key": record.to_dict(), "token": token}) + "\n"
        else:
            limits = f"rate {record.rate or 'unlimited'}, quota {record.quota or 'unlimited'}"
            admin = ", admin" if record.admin else ""
            text = (
                f"created key {record.name!r} (id {record.key_id}, {limits}{admin})\n{token}\n"
                "This token is shown only now and cannot be recovered: store it safely.\n"
            )
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, UnicodeEncodeError) as exc:  # a full disk, /dev/full, a closed pipe, LANG=C
            # The token is shown once: if it reached no one, a stored key nobody can use kept its
            # name taken, and "run again" failed with "an active key is already named ...".
            store.revoke_key(record.key_id)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise RunError(
                f"the token could not be written to standard output ({why}); key {record.name!r} was "
                "revoked, so the name is free: run again with an output that takes it"
            ) from exc
    return 0


def run_list(args: argparse.Namespace) -> int:
    from tunelab.cli.output import table

    with open_store_from_args(args, create=False) as store:
        keys = store.list_keys(include_revoked=not args.active)
        # --active found none: any other key is revoked ("no keys yet" sent the user to create one)
        revoked = len(store.list_keys()) if args.active and not keys else 0
    if args.json:
        for key in keys:
            print(json.dumps(key.to_dict()))
        return 0
    if not keys:
        if revoked:
            print(f"no active keys ({revoked} revoked; `tunelab keys list` shows them)")
        else:
            print("no keys yet: create one with `tunelab keys create --name NAME`")
        return 0
    rows = [[k.name, k.key_id, "yes" if k.admin else "no", k.rate, k.quota, *_times(k)] for k in keys]
    print(table(["name", "id", "admin", "rate", "quota", "created (UTC)", "revoked (UTC)"], rows))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    with open_store_from_args(args, writes=True, create=False) as store:
        record = store.revoke_key(args.key)
    print(f"revoked key {record.name!r} (id {record.key_id}): requests with it are now refused (403)")
    return 0
