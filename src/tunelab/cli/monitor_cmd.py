"""``tunelab app monitor run | report``: a financial sentiment monitor from a ``monitor.yaml``.

Wired under ``tunelab app`` with ``monitor_cmd.add_parser(app_subparsers)``; ``run(args)`` does
the work of either subcommand.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# A following run whose database failed (a PostgreSQL restart, a lock held past the busy timeout, a
# lease lost: "send it again") runs again after this, as tunelab serve's followers do
# (serve.monitors.FOLLOW_RETRY_S); the same failure is logged again at most every RETRY_LOG_REPEAT_S.
RETRY_S = 10.0
RETRY_LOG_REPEAT_S = 300.0

HELP = """examples:
  tunelab app monitor run --config monitor.yaml                 # follow the sources until stopped
  tunelab app monitor run --config monitor.yaml --once          # read what is there, then stop
  tunelab app monitor run --config monitor.yaml --ner runs/fin-ner
  tunelab app monitor report --config monitor.yaml --out report.html
  tunelab app monitor report --config monitor.yaml --data-dir /srv/tunelab   # a server's database

monitor.yaml:
  name: markets
  sources: [{follow: feeds/news.jsonl}, {directory: feeds/inbox}]
  runs: {sentiment: runs/fin-sentiment, ner: runs/fin-ner}
  topics: [{name: earnings, description: quarterly results and guidance}, rates]
  detector: {method: cusum, window: 30m, baseline: 3d, h: 10, shift: 3, min_volume: 5}
  # or the robust z-score: detector: {method: zscore, window: 15m, baseline: 1d, threshold: 4}
  webhook: https://alerts.example.com/hooks/monitor   # optional: each new alert is POSTed here

Documents are JSON lines: {"id": "...", "time": "2026-03-02T09:30:00Z", "text": "...",
"source": "...", "topic": "..."} (time: ISO 8601 or epoch seconds). SIGTERM or Ctrl-C stops
after the batch in hand is committed (while the runs load, at once: 143, 130); a restart goes on
where it stopped.
The database: the config's store:, else --db or --data-dir (as tunelab serve's), else $TUNELAB_DB,
else the user data folder's; a config with store: and --db/--data-dir is refused (one would be
ignored). The command says which database on stderr when it starts.
With a webhook, each new alert is POSTed (JSON, Idempotency-Key: the alert id) and retried with
back-off; an alert not delivered yet waits in the database for the next run. To serve a monitor
over HTTP (and follow its sources there), use tunelab serve --monitor monitor.yaml instead.
"""


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--db`` and ``--data-dir``: the database of a config without ``store:``, as ``tunelab serve``'s
    (a monitor a server ran with ``--data-dir`` could not be reported on or run by these commands)."""
    p.add_argument(
        "--db",
        help="for a config without store: a postgresql:// URL or a SQLite file (default: "
        "DATA_DIR/tunelab.db when --data-dir is given, else $TUNELAB_DB, else DATA_DIR/tunelab.db)",
    )
    p.add_argument(
        "--data-dir",
        help="for a config without store: the folder of the SQLite database "
        "(default: $TUNELAB_DATA_DIR, else the user data folder)",
    )


def open_store(args: argparse.Namespace, config: Any, *, create: bool) -> tuple[Any, str]:
    """The monitor's database and the line that says which it is: the config's ``store:``, else
    ``--db``/``--data-dir``, else the environment's or the user data folder's (``open_monitor_store``).

    Raises:
        ConfigError: the config has ``store:`` and ``--db``/``--data-dir`` is given too.
    """
    from tunelab.apps.monitor import open_monitor_store
    from tunelab.errors import ConfigError
    from tunelab.serve.store import chosen_db, default_data_dir, describe_store

    db, data_dir = config.store, None
    named = None
    if args.db or args.data_dir:
        flag = "--db" if args.db else "--data-dir"
        if config.store is not None:
            raise ConfigError(
                f"{args.config}: store: names the database, so {flag} would be ignored; "
                f"give one of them (drop {flag}, or store: from the config)"
            )
        db, data_dir = args.db, args.data_dir
        named = "--db" if args.db else "--data-dir's database"
    store = open_monitor_store(db, data_dir, create=create, named=named)
    where = describe_store(chosen_db(db, data_dir), data_dir or default_data_dir())
    return store, f"database: {where}"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``monitor`` (with ``run`` and ``report``) to ``subparsers`` and return its parser."""
    p = subparsers.add_parser(
        "monitor",
        help="sentiment per topic and company over a stream of news, with alerts on negative surges",
        description="Follow news, classify sentiment, topics and companies, and alert on negative surges.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="monitor_command", metavar="COMMAND", required=True)
    r = sub.add_parser(
        "run",
        help="ingest, classify and store documents from the config's sources; alert on surges",
        description="Ingest, classify and store documents from the config's sources; alert on surges.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--config", required=True, help="the monitor's YAML file")
    r.add_argument("--once", action="store_true", help="read what the sources hold now, then stop")
    r.add_argument("--ner", metavar="RUN", help="an NER run naming the companies (overrides runs.ner)")
    add_store_arguments(r)
    r.set_defaults(handler=run, stdout_summary=True)
    rep = sub.add_parser(
        "report",
        help="write an HTML dashboard of trends and alerts",
        description="Write an HTML dashboard of the monitor's trends and alerts from its store.",
        epilog="examples:\n  tunelab app monitor report --config monitor.yaml --out report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("--config", required=True, help="the monitor's YAML file")
    rep.add_argument(
        "--out",
        default="report.html",
        help="the HTML file to write (default: report.html); an existing file is replaced only when it "
        "is an earlier report of this monitor",
    )
    rep.add_argument("--overwrite", action="store_true", help="replace --out whatever file it is")
    add_store_arguments(rep)
    rep.set_defaults(handler=run, stdout_summary=True)
    return p


def run(args: argparse.Namespace) -> int:
    if args.monitor_command == "report":
        return _report(args)
    return _run(args)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (finish the batch in hand) instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread; a caller elsewhere sets ``stop`` itself
        return

    def handler(signum: int, frame: Any) -> None:
        print(f"{signal.Signals(signum).name}: stopping after the current batch", file=sys.stderr)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run(args: argparse.Namespace) -> int:
    from tunelab.apps.monitor import Monitor, MonitorConfig
    from tunelab.cli.signals import sigterm_interrupts

    config = MonitorConfig.from_yaml(args.config)
    config.check_sources()  # a wrong path fails now, before models load
    stop = threading.Event()
    waiting = 0
    store, where = open_store(args, config, create=True)
    with store, Monitor(config, ner=args.ner, store=store) as monitor:
        # said once the monitor is ours (a refusal stays one line), not when the run stops: a
        # following run said it only then
        print(where, file=sys.stderr, flush=True)
        # Load the runs now: a bad run fails before anything is read. Ctrl-C or SIGTERM here stops at
        # once (130, 143), as in predict: with no batch in hand there is nothing to finish, and
        # setting ``stop`` let the loading go on for as long as it took (past docker stop's grace).
        with sigterm_interrupts():
            monitor.classifier  # noqa: B018
        with stop_on_signals(stop):
            with _delivering(config, monitor, once=args.once, stop=stop):
                _follow(monitor, once=args.once, stop=stop)
            if config.webhook:
                waiting = monitor.store.count_pending_alerts(config.name)
    # The monitor's own counts (alerts counted, not kept): they include the batches stored by a
    # run that failed later and was started again.
    total = monitor.totals
    alerts = total.alert_count
    print(
        f"{config.name}: {total.stored} documents stored, {total.duplicates} duplicates, "
        f"{total.skipped} skipped, {alerts} alert{'s' if alerts != 1 else ''}"
    )
    if waiting:
        print(
            f"{waiting} alert{'s wait' if waiting != 1 else ' waits'} for the webhook (it failed); "
            "they are sent at the next run",
            file=sys.stderr,
        )
    return 0


def _follow(monitor: Any, *, once: bool, stop: threading.Event) -> None:
    """``monitor.run`` until ``stop``; following, a database error is logged and retried.

    Documented to follow its sources until SIGTERM, the command ended at the first ``StoreError``
    instead, where ``tunelab serve --monitor`` retries (``MonitorRegistry._follow``). A failed
    batch was not committed: the run started again reads its lines again. With ``once`` (and for
    any other error, a ``ConfigError`` say) the error ends the command with its one line.
    """
    from tunelab.apps.monitor.lease import MonitorBusyError
    from tunelab.apps.monitor.stop_wait import wait_for_stop
    from tunelab.errors import first_line
    from tunelab.serve.logging_setup import RepeatGate
    from tunelab.serve.store import StoreError

    gate = RepeatGate(RETRY_LOG_REPEAT_S)
    while True:
        try:
            monitor.run(once=once, stop=stop)
            return
        except StoreError as exc:
            # Another process took the monitor: it ingests now, and waiting would only log every
            # 5 minutes; the command ends naming it, as it did.
            if once or isinstance(exc, MonitorBusyError):
                raise
            message = first_line(exc)
            if gate.should_log(monitor.name, message, time.monotonic()):
                log.warning(
                    "monitor %s: following its sources failed (%s); retrying in %gs",
                    monitor.name,
                    message,
                    RETRY_S,
                )
            if wait_for_stop(stop, RETRY_S):  # SIGTERM while waiting: stop at once
                return


@contextmanager
def _delivering(config: Any, monitor: Any, *, once: bool, stop: Any = None) -> Iterator[None]:
    """POST the monitor's alerts to ``config.webhook`` while the block runs (nothing without one).

    Following: a delivery thread, woken when a batch opens alerts, retrying with back-off until
    stopped. ``--once``: one round after the block (no waiting for retries). Either way an alert
    not delivered stays pending in the store and is sent by the next run.

    Without a webhook the store records that the monitor has none: the alerts this run stores and
    ends are then not sent to a webhook configured later (``store.PENDING``).
    """
    if not config.webhook:
        owed = monitor.store.set_alert_webhook(config.name, False)
        if owed:
            print(
                f"{config.name}: {owed} alert{'s wait' if owed != 1 else ' waits'} for the webhook this "
                "run has none of (stored while one was configured): the next run with `webhook:` sends "
                f"{'them' if owed != 1 else 'it'}",
                file=sys.stderr,
                flush=True,
            )
        yield
        return
    import asyncio

    from tunelab.apps.monitor.webhook import DeliveryThread, follower_webhook
    from tunelab.serve.inputs import without_secrets

    print(f"alerts are POSTed to {without_secrets(config.webhook)}", file=sys.stderr, flush=True)
    worker = follower_webhook(monitor.store, config.name, config.webhook)
    if once:
        yield
        asyncio.run(worker.drain(stop))
        return
    thread = DeliveryThread(worker)
    thread.start()
    monitor.on_ingest = lambda results: thread.wake() if any(r.alerts for r in results) else None
    try:
        yield
    finally:
        monitor.on_ingest = None
        thread.stop()


def _report(args: argparse.Namespace) -> int:
    from tunelab.apps.monitor import MonitorConfig, write_report

    config = MonitorConfig.from_yaml(args.config)
    # Read-only: a mistyped store path is refused, not created (folders and an empty database).
    store, where = open_store(args, config, create=False)
    with store:
        path = write_report(store, config.name, args.out, overwrite=args.overwrite)
    print(f"report: {path}")
    print(where, file=sys.stderr)
    return 0
