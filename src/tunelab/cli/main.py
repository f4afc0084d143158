"""``tunelab`` command line: one module per subcommand, each a thin layer over the Python API."""

from __future__ import annotations

import argparse
import codecs
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from tunelab import __version__
from tunelab.cli import (
    app_cmd,
    ensemble_cmd,
    eval_cmd,
    export_cmd,
    keys_cmd,
    merge_cmd,
    predict_cmd,
    runs_cmd,
    search_cmd,
    serve_cmd,
    tasks_cmd,
    train_cmd,
    usage_cmd,
    validate_cmd,
    zeroshot_cmd,
)
from tunelab.cli.signals import interrupts_not_swallowed
from tunelab.cli.streams import escaping_stdout, open_closed_streams, stdout_is_summary

COMMANDS = (
    train_cmd,
    eval_cmd,
    predict_cmd,
    export_cmd,
    merge_cmd,
    ensemble_cmd,
    zeroshot_cmd,
    runs_cmd,
    validate_cmd,
    search_cmd,
    tasks_cmd,
    keys_cmd,
    usage_cmd,
    serve_cmd,
    app_cmd,
)

VERBOSE_HELP = "show library logs and tracebacks (before or after the command)"

EPILOG = """examples:
  tunelab train configs/banking77.yaml method=lora train.epochs=3
  tunelab eval runs/banking77 --data ../shared/data/banking77/test.csv
  tunelab predict runs/banking77 "I still have not received my new card"
  tunelab predict runs/banking77 --input tickets.csv --output predictions.csv
  tunelab export runs/banking77 --format onnx-int8
  tunelab merge runs/banking77-lora
  tunelab ensemble runs/a runs/b runs/c --out runs/abc
  tunelab zeroshot examples/zeroshot/banking77_labels.yaml --out runs/banking-zs
  tunelab search configs/demo.yaml --space configs/search_space.yaml --trials 8
  tunelab runs
  tunelab eval runs/demo -v            # global options (-v) go before or after the command
  tunelab app support chat bots/banking
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunelab",
        description="Fine-tune a pre-trained transformer on labelled text, evaluate it, and predict.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tunelab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    _global_options_after_commands(parser)
    return parser


def _global_options_after_commands(parser: argparse.ArgumentParser) -> None:
    """Accept ``-v`` after any (sub)command too: ``tunelab train -v`` as well as ``tunelab -v train``.

    argparse knows a top-level option only before the subcommand, so every subcommand parser, at
    every depth (``tunelab app support chat``), gets its own ``-v``. Its default is SUPPRESS: a
    subparser that did not see it leaves the top level's value alone instead of resetting it to False.
    Walking ``_actions`` is argparse's private structure, but there is no public way to list the
    subparsers; a command that defines ``-v`` itself keeps its own meaning.
    """
    seen: set[int] = set()
    pending = [parser]
    while pending:
        for action in pending.pop()._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for child in action.choices.values():
                if id(child) in seen:  # aliases share one parser
                    continue
                seen.add(id(child))
                taken = child._option_string_actions
                if "-v" not in taken and "--verbose" not in taken:
                    child.add_argument(
                        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
                    )
                pending.append(child)


def _quiet_libraries() -> None:
    """Hide progress bars and warnings from transformers/peft that say nothing to a tunelab user.

    Said through the environment, which transformers and huggingface_hub read when they are first
    imported, so a command that never loads a model (``keys``, ``usage``) never imports them.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (the API used in-process): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def _take_late_positionals(
    parser: argparse.ArgumentParser, args: argparse.Namespace, extras: list[str]
) -> None:
    """Give arguments after an option to the command's list of positionals, or fail as argparse does.

    argparse fills ``texts`` (``nargs="*"``, or ``"+"``) before the first option, so ``tunelab predict RUN -v
    "text"`` and ``tunelab train config.yaml -v train.epochs=1`` failed with "unrecognized
    arguments", though the README says options may go before or after. Written here because
    ``parse_intermixed_args`` refuses parsers with subcommands.
    """
    leaf = parser
    while True:
        sub = next((a for a in leaf._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None and sub.dest else None
        if chosen is None or chosen not in sub.choices:  # type: ignore[union-attr]
            break
        leaf = sub.choices[chosen]  # type: ignore[union-attr]
    # "+" too: `tunelab ensemble runs/a --out runs/ens runs/b` failed as an unrecognized runs/b
    lists = [a for a in leaf._actions if not a.option_strings and a.nargs in ("*", "+")]
    if len(lists) != 1 or any(item.startswith("-") for item in extras):
        leaf.error(f"unrecognized arguments: {' '.join(extras)}")
    target = lists[0].dest
    setattr(args, target, [*(getattr(args, target) or []), *extras])


def _storage_line(exc: BaseException) -> str | None:
    """A full disk, a quota, a read-only or forbidden folder in one line naming the path and what to
    do; None for any other error (``tunelab.atomic.storage_problem``).

    A training run's error carries its resume hint (``tunelab.train.trainer._say_how_to_resume``),
    said only while its ``.partial`` folder is still there: ``tunelab search`` deletes a failed
    trial's folder before the error reaches here.
    """
    from tunelab.atomic import RESUME_HINT_ATTR, RUN_FOLDER_ATTR, storage_problem

    folder = getattr(exc, RUN_FOLDER_ATTR, None)
    problem = storage_problem(exc, where=folder)
    if problem is None:
        return None
    hint = getattr(exc, RESUME_HINT_ATTR, None)
    if hint and folder and os.path.isdir(folder):
        return f"{problem.what}: {problem.fix}, then {hint}"
    return f"{problem.what}: {problem.fix} and run again"


def _refused_by_stdout(exc: UnicodeEncodeError) -> bool:
    """Whether ``exc`` is stdout's encoding refusing printed text (a label named 体育 under LANG=C).

    A print is the only write that can raise it from a frame of ``tunelab.cli`` (stdout encodes in
    C, so the innermost frame is the printing one; files are written as UTF-8 and stderr escapes
    what it cannot encode), in stdout's own codec, on characters stdout cannot encode. Any other
    UnicodeEncodeError (an HTTP header's latin-1, a library's own) stays an unexpected error.
    """
    encoding = getattr(sys.stdout, "encoding", None)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if not encoding or tb is None or not tb.tb_frame.f_globals.get("__name__", "").startswith("tunelab.cli."):
        return False
    try:
        if codecs.lookup(exc.encoding).name != codecs.lookup(encoding).name:
            return False
        exc.object[exc.start : exc.end].encode(encoding, getattr(sys.stdout, "errors", None) or "strict")
    except UnicodeEncodeError:
        return True
    except LookupError:
        return False
    return False


def _stdout_encoding_line(exc: UnicodeEncodeError) -> str:
    shown = ascii(exc.object[exc.start : exc.end])  # as escapes: the terminal cannot show them
    return (
        f"standard output's encoding ({sys.stdout.encoding}) cannot show the text {shown}: set "
        "PYTHONIOENCODING=utf-8 or a UTF-8 locale (e.g. LANG=C.UTF-8) and run again"
    )


def _argument_outside_locale(argv: Sequence[str]) -> str | None:
    """The line for an argument this locale could not decode; None when every one is text.

    Under a locale that is not UTF-8 with Python's UTF-8 mode off (``LC_ALL=C PYTHONUTF8=0``),
    Python keeps an argument's non-ASCII bytes as lone surrogates: a text was refused as "not valid
    Unicode ... fix the text", and a path failed half-way through a run (a ``.partial`` folder
    left). Said before anything runs, naming the locale, which is what to fix.
    """
    from tunelab.atomic import LOCALE_FIX, holds_undecoded_bytes, is_utf8_codec

    if is_utf8_codec(sys.getfilesystemencoding()):
        return None
    for position, arg in enumerate(argv, start=1):
        if holds_undecoded_bytes(arg):
            shown = os.fsencode(arg).decode("utf-8", "backslashreplace")
            return (
                f"argument {position} ({shown!r}) is not in this locale's encoding "
                f"({sys.getfilesystemencoding()}): {LOCALE_FIX}"
            )
    return None


def _locale_line(exc: BaseException) -> str | None:
    """The line for a non-ASCII path or text this locale cannot encode (a run trained elsewhere
    names its files in UTF-8); None when the locale is UTF-8 or ``exc`` is another error."""
    from tunelab.atomic import LOCALE_FIX, is_utf8_codec

    if not isinstance(exc, UnicodeEncodeError) or is_utf8_codec(sys.getfilesystemencoding()):
        return None
    return (
        f"this locale's encoding ({sys.getfilesystemencoding()}) cannot hold a file name or text "
        f"tunelab was given or read ({exc}): {LOCALE_FIX}"
    )


class _BarAwareHandler(logging.StreamHandler):
    """The console handler: a line logged while a progress bar is drawn goes through ``tqdm.write``,
    which clears the bar, prints the line and draws the bar again below it. A plain StreamHandler
    wrote the line after the bar's text on the bar's own line. tqdm's ``logging_redirect_tqdm`` does
    this for a block of code but copies neither the handler's level nor a handler made before it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm  # the class the bars are made with: write() clears its bars

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging's own rule: a handler never raises
            self.handleError(record)


def console_logging(level: int) -> None:
    """Log to stderr at ``level`` unless the root logger has a handler already (the API in-process)."""
    handler = _BarAwareHandler(sys.stderr)
    # The console handler's own level: a library logger set to INFO for a log file (train.log)
    # passes INFO up to the root's handlers whatever the root's level, so without -v they
    # reached the console, and -q was not quiet.
    handler.setLevel(level)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    open_closed_streams()  # `>&-`: the command's output goes nowhere, its errors not into stdout
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        _take_late_positionals(parser, args, extras)
    if args.command is None:
        parser.print_help()
        return 2
    console_logging(logging.INFO if args.verbose else logging.WARNING)
    from tunelab.errors import TunelabError

    outside = _argument_outside_locale(sys.argv[1:] if argv is None else argv)
    if outside is not None:
        print(f"error: {outside}", file=sys.stderr)
        return 2
    try:
        os.getcwd()
    except FileNotFoundError:
        # a deploy that removed and made again the folder a shell stands in: torch's import then
        # died in native code ("Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so")
        print(
            "error: the current directory no longer exists (removed since this shell entered it); "
            "cd to an existing folder and run again",
            file=sys.stderr,
        )
        return 2

    try:
        _quiet_libraries()
        # a Ctrl-C landing in a finaliser still stops the command
        with interrupts_not_swallowed(), escaping_stdout(stdout_is_summary(args)):
            status = int(args.handler(args) or 0)
        # What is still in stdout's buffer was written at exit, after this function: a reader gone
        # (`| head -1`) then printed "Exception ignored ... BrokenPipeError" and exited 120.
        sys.stdout.flush()
        return status
    except TunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # A training run says how to resume it (tunelab.train.trainer.TrainingInterrupted); one stopped
        # by SIGTERM says "terminated" and exits 143 as a process killed by it would (train_cmd).
        said = getattr(exc, "said", "interrupted")
        print(f"{said}; {exc}" if str(exc) else said, file=sys.stderr)
        return int(getattr(exc, "exit_status", 130))
    except BrokenPipeError:
        # `tunelab runs | head -1`: the reader has what it wanted. Point stdout at /dev/null so
        # Python's flush at exit does not fail on the closed pipe again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if isinstance(exc, UnicodeEncodeError) and _refused_by_stdout(exc):
            # the terminal's or pipe's encoding, not a defect: said as a TunelabError is
            print(f"error: {_stdout_encoding_line(exc)}", file=sys.stderr)
            return 2
        if args.verbose:
            raise
        line = _storage_line(exc) or _locale_line(exc)
        if line is not None:
            print(f"error: {line}", file=sys.stderr)
            return 1
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)", file=sys.stderr
        )
        return 1


def run() -> None:
    """The ``tunelab`` console script: ``main()``, then an exit that skips the native libraries'
    teardown, which could abort a finished command with status -6 (``cli.process_exit``).

    Whatever ``main()`` raises ends the same way, with the status Python would give it: argparse's
    or a command's ``SystemExit`` its code, a traceback (``-v``) 1, an interrupt 130. Left to
    Python, they ran the full teardown, and the abort came back.
    """
    from tunelab.cli.process_exit import exit_skipping_native_teardown

    try:
        status = main()
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt:  # main says and handles its own; one raised past it, as Python would
        traceback.print_exc()
        status = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        status = 1
    exit_skipping_native_teardown(status)


def _exit_status(code: object) -> int:
    """The status Python gives ``SystemExit(code)``: None 0, an int itself, anything else printed
    to stderr and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    run()
