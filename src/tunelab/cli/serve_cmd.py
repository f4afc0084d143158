"""``tunelab serve``: load runs or exported artifacts and answer predictions over HTTP.

Models are loaded (and the key database opened) before the port is bound, so a wrong path or URL
fails with one line and nothing listening. uvicorn stops gracefully on SIGTERM/SIGINT: it stops
accepting, lets in-flight requests finish, then the app closes its batchers and the store. A second
SIGINT forces the stop, as the 30 s wait running out does: the requests still running are answered
503 ``shutting_down`` by ``serve.observe.ObserveMiddleware`` and the command exits 130 (SIGINT) or
143 (SIGTERM).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.cli.merge_cmd import MIXING_METHODS, SHARING_METHODS, WHOLE_METHODS
from tunelab.cli.store_args import DATA_DIR_HELP, data_dir_chosen, open_store_noting
from tunelab.errors import ConfigError, first_line
from tunelab.serve.inputs import without_secrets
from tunelab.serve.registry import SERVED_NAME_PATTERN

if TYPE_CHECKING:
    from pathlib import Path

    from tunelab.serve.monitors import MonitorRegistry

HELP = """models:
  runs/banking77                 name "banking77" (the folder name), version 1
  intents=runs/banking77         name "intents", next version (1, 2, ...)
  intents@2=runs/b77-onnx-int8   name "intents", version 2
  The last version listed per name is active unless --active NAME@VERSION.
  Adapter runs on the same base share one loaded copy of it, also those an admin loads later
  (POST /v1/models/NAME/versions); the methods whose runs share: {sharing}.
  Requests for different adapters share forward passes for: {mixing}.
  Runs of the other methods ({whole}) and exports load whole.
  A plug-in method's runs share when it registers a sharing.
  tunelab serve a=runs/acme-lora b=runs/globex-lora c=runs/initech-lora   # one base in memory

examples:
  tunelab keys create --name acme --rate 20/s --quota 100000/month   # prints the token once
  tunelab serve runs/banking77 --port 8000
  tunelab serve intents=runs/banking77 intents@2=runs/banking77-onnx-int8 --max-batch 64
  curl -s localhost:8000/v1/models/banking77/predict -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{"texts": ["I still have not received my card"]}'
  tunelab serve runs/banking77 --no-auth          # local trial: no key needed (usage still recorded)
  tunelab serve runs/banking77 --db postgresql://tunelab@db:5432/tunelab --host 0.0.0.0
  tunelab serve runs/banking77 --model-root runs --model-root /srv/models  # where admins may load from

support bots (tunelab app support build ... --out bots/bank):
  tunelab serve --bot bots/bank                   # POST /v1/apps/support/bank/messages
  tunelab serve runs/banking77 --bot bots/bank --handoff-webhook https://desk.example.com/hooks/tickets
  curl -s localhost:8000/v1/apps/support/bank/messages -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{"conversation_id": "c1", "text": "where is my card?"}'

sentiment monitors (monitor.yaml: see tunelab app monitor run --help):
  tunelab serve --monitor monitor.yaml            # POST /v1/apps/monitor/markets/documents, ...
  tunelab serve runs/banking77 --monitor markets.yaml --monitor bonds.yaml \\
       --alert-webhook https://alerts.example.com/hooks/monitor
  curl -s localhost:8000/v1/apps/monitor/markets/documents -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{"documents": [{"id": "n1", "time": "2026-03-02T09:30:00Z", "text": "Acme cuts its outlook"}]}'
  curl -s "localhost:8000/v1/apps/monitor/markets/trend?company=acme&from=2026-03-01&bucket=1h" \\
       -H "Authorization: Bearer $TOKEN"
  curl -s "localhost:8000/v1/apps/monitor/markets/alerts?from=2026-03-01" -H "Authorization: Bearer $TOKEN"
  A monitor is named by its config; it uses the server's database unless its config names a store.
  The server also follows the config's sources (files, folders) unless --no-follow. One process
  ingests a monitor (this server, --no-follow or not, or tunelab app monitor run): a second one on
  the same store refuses to start, naming the first. A document is billed as one text
  (usage shows monitor/<name>); --max-texts caps the documents per request.
  A server that mostly ingests documents classifies faster with --threads set to its cores.

recommenders (tunelab app recommend build ... --out recs/movies):
  tunelab serve --recommend recs/movies           # GET /v1/apps/recommend/movies/users/{id}, ...
  curl -s "localhost:8000/v1/apps/recommend/movies/users/42?k=10&exclude_seen=true" \\
       -H "Authorization: Bearer $TOKEN"
  curl -s localhost:8000/v1/apps/recommend/movies/items -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{"item_id": "m1", "fields": {"title": "Arrival (2016)"}}'
  curl -s localhost:8000/v1/apps/recommend/movies/events -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{"events": [{"user_id": "42", "item_id": "m1"}]}'
  A recommender is named by its folder (NAME=DIR for another name; a served name is letters, digits,
  '.', '_' and '-'). A ranking, an added item and a
  recorded event are billed one unit each (usage shows recommend/<name>); --max-texts caps the
  items or events per request.

Webhook bodies are signed (X-Tunelab-Signature: sha256=HMAC of the body) when
$TUNELAB_WEBHOOK_SECRET is set. Alerts are retried with back-off until delivered, never given up;
each carries its id as Idempotency-Key (at-least-once: a receiver drops what it has seen).
"""

_SERVED_NAME = re.compile(SERVED_NAME_PATTERN)  # (tunelab.serve.registry says why)


def check_served_name(option: str, spec: str, name: str, path: str) -> str:
    """``name`` when it can be served, else a one-line ``ConfigError`` saying how to rename it."""
    if not _SERVED_NAME.fullmatch(name):  # match let "acme\n" through: "$" matches before a last newline
        spec, path = (text if text.isprintable() else repr(text) for text in (spec, path))  # one line
        raise ConfigError(
            f"{option}{spec}: {name!r} cannot be served under its own name (a name is part of the "
            "URLs: a letter or digit, then up to 63 letters, digits, '.', '_' or '-'); serve it under "
            f"another name with {option}NAME={path}"
        )
    return name


# Taken whole (fullmatch, DOTALL): a newline in the path reaches the name check instead of being cut off.
_SPEC = re.compile(
    r"(?:(?P<name>[A-Za-z0-9_.\-]+)(?:@(?P<version>[A-Za-z0-9_.\-]+))?=)?(?P<path>.+)", re.DOTALL
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    path: str


def parse_specs(specs: list[str]) -> list[ModelSpec]:
    """``[name[@version]=]path`` arguments -> specs with versions filled in (1, 2, ... per name)."""
    from pathlib import Path

    out: list[ModelSpec] = []
    for spec in specs:
        m = _SPEC.fullmatch(spec)
        if not m or (m.group("version") and not m.group("name")):
            raise ConfigError(f"model {spec!r}: write PATH, NAME=PATH or NAME@VERSION=PATH")
        path = m.group("path")
        name = check_served_name("model ", spec, m.group("name") or Path(path.rstrip("/")).name, path)
        if m.group("version") and not _SERVED_NAME.fullmatch(m.group("version")):
            # the admin API's rule (LoadVersionRequest): "..", "-" or 80 characters were served
            # here, under versions no admin request could then name
            raise ConfigError(
                f"model {spec!r}: version {m.group('version')!r}: use a letter or digit, then up to 63 "
                "letters, digits, '.', '_' or '-' (e.g. 2 or v2.1)"
            )
        taken = [s.version for s in out if s.name == name]
        version = m.group("version") or str(max([int(v) for v in taken if v.isdigit()], default=0) + 1)
        if version in taken:
            raise ConfigError(f"model {spec!r}: {name}@{version} is given twice")
        out.append(ModelSpec(name, version, path))
    return out


def parse_active(values: list[str], specs: list[ModelSpec]) -> dict[str, str]:
    active: dict[str, str] = {}
    for value in values:
        name, _, version = value.partition("@")
        if not version or not any(s.name == name and s.version == version for s in specs):
            served = ", ".join(f"{s.name}@{s.version}" for s in specs)
            raise ConfigError(f"--active {value!r}: name one of the models given ({served})")
        active[name] = version
    return active


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve models over HTTP (predict, keys, usage, metrics)",
        description="Serve runs or exported artifacts over HTTP with keys, limits and metrics.",
        epilog=HELP.replace("{sharing}", ", ".join(SHARING_METHODS))
        .replace("{mixing}", ", ".join(MIXING_METHODS))
        .replace("{whole}", ", ".join(WHOLE_METHODS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="[NAME[@VERSION]=]PATH of a run or artifact")
    p.add_argument(
        "--bot",
        action="append",
        default=[],
        metavar="DIR",
        help="[NAME=]DIR: serve a support bot folder (tunelab app support build), by default under the "
        "name in its bot.yaml (build --name, else the folder's name when built); repeatable",
    )
    p.add_argument(
        "--handoff-webhook",
        metavar="URL",
        help="POST each new hand-off ticket as JSON to this http(s) URL (at least once, Idempotency-Key = "
        "ticket id; retried with back-off, given up after 15 attempts, about an hour)",
    )
    p.add_argument(
        "--monitor",
        action="append",
        default=[],
        metavar="YAML",
        help="serve a sentiment monitor from its monitor.yaml (under the config's name); repeatable",
    )
    p.add_argument(
        "--alert-webhook",
        metavar="URL",
        help="POST each new monitor alert as JSON to this http(s) URL (retried until delivered; "
        "default: each monitor config's webhook)",
    )
    p.add_argument(
        "--no-follow",
        action="store_true",
        help="serve monitors over HTTP only; do not follow their config's sources (the server still "
        "ingests them: no other process may run them meanwhile)",
    )
    p.add_argument(
        "--recommend",
        action="append",
        default=[],
        metavar="DIR",
        help="[NAME=]DIR: serve a recommender folder (tunelab app recommend build), by default under "
        "its folder's name; repeatable",
    )
    p.add_argument(
        "--conversation-ttl",
        default="30m",
        metavar="AGE",
        help="how long a conversation's messages are kept as context: 90s, 30m, 2h, 1d (default 30m)",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="batch fill wait (default 5)")
    p.add_argument("--max-texts", type=int, default=64, help="texts per request (default 64, at most 10,000)")
    p.add_argument("--max-chars", type=int, default=2000, help="characters per text (default 2000)")
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=256,
        help="texts (and bot messages) one key may have waiting or running at once; more is a 429 "
        "(default 256)",
    )
    p.add_argument("--max-body", default="1MiB", help="request body limit, e.g. 1MiB, 512KB (default 1MiB)")
    p.add_argument(
        "--db",
        help="postgresql://user@host:5432/db or a SQLite file (default: DATA_DIR/tunelab.db when --data-dir "
        "is given, else $TUNELAB_DB, else SQLite in the data folder)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument(
        "--model-root",
        action="append",
        metavar="DIR",
        help="an existing folder the admin endpoint POST /v1/models/{name}/versions may load from; "
        "repeatable (default: ./runs, a warning at start if missing). Paths elsewhere, also through "
        "'..' or symlinks, are refused with 403",
    )
    p.add_argument("--no-auth", action="store_true", help="accept requests without a key (local trials)")
    p.add_argument(
        "--no-mask-logs", action="store_true", help="log e-mails, phone, card and account numbers as is"
    )
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads (default 1)")
    p.add_argument("--active", action="append", default=[], metavar="NAME@VERSION", help="active version")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="also serve /metrics without a key on this port, for Prometheus (on the API port "
        "/metrics needs an admin key: the metrics name the keys)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="interface of the --metrics-port listener (default 127.0.0.1; 0.0.0.0 for a remote scraper)",
    )
    p.set_defaults(handler=run)


def check_can_listen(host: str, port: int) -> None:
    """Bind ``host:port`` the way the server will (every address the host resolves to, address reuse
    on, as asyncio's ``create_server``), then let it go, so a port in use or a host that does not
    resolve is one line before "listening on" is printed. uvicorn logged it as an error line after
    that and exited with status 3, the start looking successful.

    Raises:
        ConfigError: naming --host / --port, the reason and what to do.
    """
    import socket

    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host}: cannot listen there ({exc.strerror or exc}); give an address of this machine, "
            "e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    import errno

    unavailable: OSError | None = None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:  # a family this machine lacks: asyncio skips it too
                unavailable = exc
                continue
            raise ConfigError(
                f"--port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); pick a free port "
                "or stop the server using it"
            ) from None
    if unavailable is not None and len(addresses) == 1:
        raise ConfigError(
            f"--host {host}: not an address of this machine ({unavailable.strerror}); give one of its "
            "addresses, e.g. 127.0.0.1 or 0.0.0.0"
        )


def build_settings(args: argparse.Namespace) -> object:
    from pydantic import ValidationError

    from tunelab.serve.settings import ServeSettings
    from tunelab.serve.store import chosen_db

    values = {
        "host": args.host,
        "port": args.port,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "max_texts_per_request": args.max_texts,
        "max_chars_per_text": args.max_chars,
        "max_in_flight_per_key": args.max_in_flight,
        "max_body_bytes": args.max_body,
        "mask_logs": not args.no_mask_logs,
        "threads": args.threads,
        "require_keys": not args.no_auth,
        "log_level": args.log_level,
        "metrics_port": args.metrics_port,
        "metrics_host": args.metrics_host,
        "handoff_webhook": args.handoff_webhook,
        "alert_webhook": args.alert_webhook,
        "follow_sources": not args.no_follow,
        "conversation_ttl_s": parse_age(args.conversation_ttl, "--conversation-ttl"),
    }
    if args.db or args.data_dir:  # --data-dir alone: its tunelab.db, not $TUNELAB_DB
        values["db"] = chosen_db(args.db, args.data_dir)
    if args.data_dir:
        values["data_dir"] = args.data_dir
    if args.model_root:
        values["model_roots"] = tuple(args.model_root)
    try:
        return ServeSettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
        # pydantic prefixes a validator's own message with "Value error, ": ours are whole sentences
        raise ConfigError(f"{flag}: {first['msg'].removeprefix('Value error, ')}") from None


# Settings whose flag is not the field's name with dashes ("--max-texts-per-request" named no flag).
_FLAGS = {
    "max_texts_per_request": "--max-texts",
    "max_chars_per_text": "--max-chars",
    "max_in_flight_per_key": "--max-in-flight",
    "max_body_bytes": "--max-body",
    "mask_logs": "--no-mask-logs",
    "require_keys": "--no-auth",
    "follow_sources": "--no-follow",
    "conversation_ttl_s": "--conversation-ttl",
    "model_roots": "--model-root",
}


_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_AGE_DAYS = 3650  # ten years


def parse_age(text: str, option: str, *, max_days: float = MAX_AGE_DAYS) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``2h`` or ``1d``; a bad value names the forms.

    An age over ``max_days`` is refused: ``--conversation-ttl 3000000d`` was taken, then every support
    message was a 500 (``now + ttl`` past year 9999), and over ~10**9 days (or digits enough for
    ``inf``) start-up failed with a traceback in ``timedelta``.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{option} {text!r}: give a positive age such as 90s, 30m, 2h or 1d")
    seconds = float(m.group(1)) * _AGE_UNITS[m.group(2)]
    if seconds > max_days * 86400:  # inf included
        raise ConfigError(
            f"{option} {text!r}: over the longest age, {max_days:g}d; give a shorter one such as 30m, 2h "
            "or 1d"
        )
    return seconds


_BOT_SPEC = re.compile(r"(?:(?P<name>[A-Za-z0-9_.\-]+)=)?(?P<path>.+)", re.DOTALL)  # whole, as _SPEC


def load_bots(specs: list[str]) -> list[tuple[str, object]]:
    """Load each ``--bot [NAME=]DIR`` with the support app's ``Bot.load``: ``(name, bot)`` pairs.

    Without ``NAME=`` a bot is served under its own name (bot.yaml's: ``build --name``, else the
    folder's name when it was built). One-line errors.
    """
    if not specs:
        return []
    try:
        from tunelab.apps.support.bot import Bot
    except ImportError as exc:
        raise ConfigError(f"--bot: the support bot app is not available in this build ({exc})") from None
    bots: list[tuple[str, object]] = []
    for spec in specs:
        m = _BOT_SPEC.fullmatch(spec)
        if not m:
            raise ConfigError(f"--bot {spec!r}: write DIR or NAME=DIR")
        bot = Bot.load(m.group("path"))
        name = check_served_name("--bot ", spec, m.group("name") or str(bot.name), m.group("path"))
        if any(name == taken for taken, _ in bots):  # before the store opens: one line, nothing else
            raise ConfigError(
                f"--bot {spec}: a bot named {name!r} is already served; serve one under another name "
                "with --bot NAME=DIR"
            )
        print(f"loaded bot {name} from {m.group('path')}")
        bots.append((name, bot))
    return bots


def load_monitors(paths: list[str], *, follow: bool) -> list[tuple[object, object]]:
    """Read each ``--monitor monitor.yaml`` and load its runs: ``(config, classifier)`` pairs.

    With ``follow``, a config's sources must exist. Two monitors of one name fail in one line.
    """
    if not paths:
        return []
    from tunelab.apps.monitor import MonitorConfig, load_classifier

    monitors: list[tuple[object, object]] = []
    names: dict[str, str] = {}
    for path in paths:
        config = MonitorConfig.from_yaml(path)
        if config.name in names:
            raise ConfigError(
                f"--monitor {path}: a monitor named {config.name!r} is already served (from "
                f"{names[config.name]}); give each monitor its own name"
            )
        names[config.name] = path
        if follow and config.sources:
            config.check_sources()  # before the runs load: a wrong path fails at once
        classifier = load_classifier(config)
        what = f", following {len(config.sources)} source(s)" if follow and config.sources else ""
        print(f"loaded monitor {config.name} from {path}{what}")
        monitors.append((config, classifier))
    return monitors


def load_recommenders(specs: list[str]) -> list[tuple[str, object, str]]:
    """Load each ``--recommend [NAME=]DIR`` with ``Recommender.load``: ``(name, recommender, dir)``.

    Without ``NAME=`` a recommender is served under its folder's name, as models and bots are. A
    path that is not a recommender folder, or two recommenders of one name, fail in one line.
    """
    if not specs:
        return []
    from pathlib import Path

    from tunelab.errors import TunelabError

    try:
        from tunelab.apps.recommend import Recommender
    except ImportError as exc:
        raise ConfigError(
            f"--recommend: the recommender app is not available in this build ({exc})"
        ) from None
    out: list[tuple[str, object, str]] = []
    for spec in specs:
        m = _BOT_SPEC.fullmatch(spec)
        if not m:
            raise ConfigError(f"--recommend {spec!r}: write DIR or NAME=DIR")
        path = m.group("path")
        name = check_served_name("--recommend ", spec, m.group("name") or Path(path.rstrip("/")).name, path)
        if any(name == taken for taken, _, _ in out):
            raise ConfigError(
                f"--recommend {spec}: a recommender named {name!r} is already served; serve one under "
                "another name with --recommend NAME=DIR"
            )
        hint = f"build one with: tunelab app recommend build --config rec.yaml --out {path}"
        if not Path(path).is_dir():
            raise ConfigError(f"--recommend {path}: no such folder ({hint})")
        try:
            rec = Recommender.load(path)
        except TunelabError as exc:
            reason = first_line(exc)
            for prefix in (f"{path}: ", f"{Path(path)}: "):  # the loader's message names the folder too
                reason = reason.removeprefix(prefix)
            raise ConfigError(f"--recommend {path}: {reason}") from None
        except Exception as exc:  # whatever a folder of something else makes the loader raise
            raise ConfigError(
                f"--recommend {path}: not a recommender folder ({type(exc).__name__}: {first_line(exc)}; "
                f"{hint})"
            ) from None
        info = dict(getattr(rec, "info", {}) or {})
        counts = ", ".join(f"{info[k]} {k[2:]}" for k in ("n_items", "n_users") if k in info)
        print(f"loaded recommender {name} from {path}" + (f": {counts}" if counts else ""))
        out.append((name, rec, path))
    return out


def model_root_lines(roots: tuple[Path, ...], *, explicit: bool) -> list[str]:
    """The stderr lines naming the folders admins may load from; a missing ``--model-root`` fails.

    Checked at start because a wrong root shows up nowhere else: every admin load would just be a
    403. A root given on the command line must exist (a typo is an error); the default ``./runs``
    may be created later (loads are checked when they happen), so its absence is only a warning.
    """
    missing = [root for root in roots if not root.is_dir()]
    if missing and explicit:
        what = "is not a folder" if missing[0].exists() else "no such folder"
        raise ConfigError(f"--model-root {missing[0]}: {what} (create it, or fix the path)")
    lines = [f"model roots (admin loads): {', '.join(str(root) for root in roots)}"]
    for root in missing:
        lines.append(
            f"warning: model root {root} does not exist: admin loads (POST /v1/models/NAME/versions) "
            "are refused until it does; give --model-root DIR to load from elsewhere"
        )
    return lines


# How long a stop waits for the requests in flight before it cancels them (each then a 503)
GRACEFUL_WAIT_S = 30


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from tunelab.serve.access import AccessControl
    from tunelab.serve.adapters import BasePool, shared_backend
    from tunelab.serve.app import ServedModel, create_app
    from tunelab.serve.logging_setup import configure_logging
    from tunelab.serve.metrics import MetricsListener

    settings = build_settings(args)
    if settings.metrics_port is not None and settings.metrics_port == settings.port != 0:
        raise ConfigError(f"--metrics-port {settings.metrics_port}: use another port than --port")
    if not args.models and not args.bot and not args.monitor and not args.recommend:
        raise ConfigError(
            "nothing to serve: give a MODEL (a run or artifact folder), --bot bots/<name>, "
            "--monitor monitor.yaml or --recommend recs/<name>"
        )
    specs = parse_specs(args.models)
    active = parse_active(args.active, specs)
    root_lines = model_root_lines(settings.model_roots, explicit=bool(args.model_root))  # before loading
    torch.set_num_threads(settings.threads)  # before loading: ONNX Runtime sessions take the same count
    served = []
    pool = BasePool()  # adapter runs on one base share it, also those an admin loads later
    load = pool.load
    for spec in specs:
        predictor = load(spec.path)
        served.append(ServedModel(spec.name, spec.version, predictor, spec.path))
        labels = len(predictor.labels.names)
        shared = ", adapter on a shared base" if shared_backend(predictor) is not None else ""
        print(
            f"loaded {spec.name}@{spec.version} from {spec.path}: {predictor.format}, {labels} labels{shared}"
        )
    bots = load_bots(args.bot)
    monitors = load_monitors(args.monitor, follow=settings.follow_sources)
    recommenders = load_recommenders(args.recommend)
    opener = None
    if monitors:
        from tunelab.apps.monitor import open_monitor_store as opener
    store, lines = open_store_noting(
        settings.db, settings.data_dir, chosen=data_dir_chosen(args), opener=opener
    )
    for line in [*lines, *root_lines]:
        print(line, file=sys.stderr, flush=True)
    metrics: MetricsListener | None = None
    app = None
    try:
        configure_logging(level=settings.log_level, mask=settings.mask_logs)
        # uvicorn stops gracefully on SIGTERM, then re-raises the signal; ending with SystemExit(0)
        # instead of dying by it lets the store close and tells a supervisor the stop was clean.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        access = AccessControl(store)
        app = create_app(
            settings,
            served,
            active=active,
            loader=load,
            access=access,
            store=store,
            bots=bots,
            monitors=monitors,
            recommenders=recommenders,
        )
        where = f"http://{settings.host}:{settings.port}"
        auth = "no key needed (--no-auth)" if not settings.require_keys else "keys required"
        if settings.metrics_port is not None:  # bound before the API port: a clash fails in one line
            metrics = MetricsListener(app.state.tunelab.metrics, settings.metrics_host, settings.metrics_port)
            print(f"metrics at {metrics.url} (no key: keep this port internal)", flush=True)
        if settings.handoff_webhook:
            print(f"hand-off tickets are POSTed to {without_secrets(settings.handoff_webhook)}", flush=True)
        for served_monitor in app.state.tunelab.monitors.all():
            if served_monitor.webhook:
                where_to = without_secrets(served_monitor.webhook)
                print(f"monitor {served_monitor.name}: alerts are POSTed to {where_to}", flush=True)
        check_can_listen(settings.host, settings.port)
        print(f"listening on {where} ({auth}); docs at {where}/docs", flush=True)
        try:
            _serve(uvicorn, app, settings)
        except SystemExit as stopped:  # _exit_cleanly's, after a SIGTERM's graceful stop
            if stopped.code != 0:  # uvicorn's own exit on a failed start
                raise
            signalled = signal.SIGTERM
        else:
            signalled = signal.SIGINT
        cut_off = app.state.tunelab.cut_off
        if cut_off:  # a second Ctrl-C, or the graceful wait run out: uvicorn cancelled them
            print(
                f"stopped: {cut_off} request{'s' if cut_off != 1 else ''} still running "
                f"{'were' if cut_off != 1 else 'was'} answered 503 (shutting_down) and metered as such",
                file=sys.stderr,
            )
            return 128 + signalled
    finally:
        if metrics is not None:
            metrics.close()
        if app is not None:
            release_monitors(app.state.tunelab.monitors)
        store.close()
    return 0


def _serve(uvicorn: Any, app: Any, settings: Any) -> None:
    """Serve until stopped; uvicorn handles the signals (module docstring)."""
    from tunelab.serve.http_protocol import UVICORN_OPTIONS

    uvicorn.run(
        app,
        **UVICORN_OPTIONS,  # request heads bounded in size and time (tunelab.serve.http_protocol)
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # no WebSocket routes: with the websockets package installed each upgrade attempt was
        # two log lines from that package, outside the per-connection limit; refused by the
        # HTTP protocol instead, it is one "Unsupported upgrade request." line, limited
        ws="none",
        timeout_graceful_shutdown=GRACEFUL_WAIT_S,
    )


def release_monitors(monitors: MonitorRegistry) -> None:
    """Close the served monitors, giving up their leases (``tunelab.apps.monitor.lease``).

    The server's shutdown closes them already; this covers a server that never started serving (the
    port taken, uvicorn failing before its startup): their leases would otherwise be held until the
    process ends, refusing a ``Monitor`` of the same name made in this process later (a test, or a
    caller running ``serve`` again). ``Monitor.close`` is idempotent.
    """
    for served in monitors.all():
        if served.monitor is not None:
            served.monitor.close()
