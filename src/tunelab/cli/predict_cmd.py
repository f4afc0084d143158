"""``tunelab predict``: label texts given as arguments, or a whole file into CSV, JSONL or Parquet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tunelab.cli.config_args import add_file_with_options
from tunelab.cli.file_guess import ENCODING_GUESS
from tunelab.cli.signals import sigterm_interrupts
from tunelab.cli.streams import json_ascii
from tunelab.cli.zeroshot_cmd import add_model_options
from tunelab.errors import TunelabError

HELP = """examples:
  tunelab predict runs/banking77 "I still have not received my new card"
  tunelab predict runs/banking77 "card not working" "how do I top up?" --top-k 5 --json
  tunelab predict runs/banking77 --input tickets.csv --output predictions.csv
  tunelab predict runs/banking77 --input tickets.csv --output predictions.parquet --overwrite
  tunelab predict runs/phrasebank --input news.txt data.separator=@ data.header=false \\
      data.column_names=[sentence,label] --output predictions.jsonl
  tunelab predict runs/nli --pair "A man plays a guitar." "Someone makes music."
  tunelab predict runs/conll2003 "EU rejects German call to boycott British lamb."   # entities
  tunelab predict --zero-shot examples/zeroshot/banking77_labels.yaml "The ATM ate my card"
  tunelab predict --zero-shot labels.yaml --input tickets.csv --output predictions.csv

A run trained on text pairs (data.text_pair_column) takes --pair TEXT TEXT_PAIR (repeatable), or an
--input file with both of its columns; any other run takes single texts.

--zero-shot LABELS.yaml classifies with no run and no training: by the similarity of each text to
the labels' descriptions (one 'label: description' per line; see `tunelab zeroshot --help`, which
writes the same classifier as a run folder to serve). Give texts (or --input) but no run folder.

An --input file is read with its own layout (format by extension, separator sniffed, header row,
encoding {ENCODING_GUESS}), not the run's training file's;
give data.* reading options after the file when the guess is wrong. Its text column is the run's
data.text_column, else 'text'.

The --output file's extension picks its format: .csv, .tsv, .jsonl or .parquet. Each output row is
an input row: the file's own columns (one that an output column also names, e.g. 'label' or an
earlier file's 'top_2_label', is kept as 'label_input', 'top_2_label_input'), "row", "text", the
top-k, then "label" and "score". The file's columns keep their types (a Parquet or JSON lines id 7
stays a number, a null stays null, an empty cell in CSV; CSV columns stay text). JSON lines
keep "top_k" as a list; CSV and Parquet spread it over columns top_1_label, top_1_score, ...
"row" is the row's number in the file: data rows counted from 1, the header line not counted
(JSON lines: the line number); rows with empty text are dropped and leave a gap. An existing
output file is left alone unless --overwrite; the file appears only when complete (Ctrl-C or SIGTERM
leaves the old one and no partial file: exit status 130, 143).

The --input file is read, then predicted and written 8,192 rows at a time, so memory holds the
input and one chunk's predictions, not every row's; on a terminal a progress bar on stderr counts
the rows predicted (-q: none).
""".replace("{ENCODING_GUESS}", ENCODING_GUESS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict labels for texts or a file",
        description="Predict labels with a finished run.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", nargs="?", help="run folder, e.g. runs/banking77 (none with --zero-shot)")
    p.add_argument("texts", nargs="*", help="texts to label")
    p.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("TEXT", "TEXT_PAIR"),
        help="a text and its pair, for a run trained on text pairs (repeatable)",
    )
    add_file_with_options(
        p,
        "--input",
        "CSV/TSV/JSONL/Parquet file with the run's text column (or 'text'), then any data.* "
        "reading options for it",
    )
    p.add_argument("--output", help="file to write, .csv, .tsv, .jsonl or .parquet (required with --input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    p.add_argument("--top-k", type=int, default=3, help="how many ranked labels to return (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar (with --input)")
    p.add_argument(
        "--zero-shot",
        metavar="LABELS.yaml",
        help="classify by label descriptions (YAML 'label: description'), no run folder, no training",
    )
    add_model_options(p)
    # with --output the predictions go to the file: stdout only says so
    p.set_defaults(handler=run, stdout_summary=lambda args: bool(args.output))


def run(args: argparse.Namespace) -> int:
    from tunelab.data.file_options import parse_file_overrides
    from tunelab.inference import load, predict_file
    from tunelab.inference.files import expand_home, output_format

    _zero_shot_arguments(args)
    if args.pair and args.texts:
        raise TunelabError("give texts to label or --pair TEXT TEXT_PAIR, not both")
    if bool(args.input) == bool(args.texts or args.pair):
        raise TunelabError("give texts to label (or --pair), or --input FILE --output FILE (not both)")
    if args.input and not args.output:
        raise TunelabError("--input needs --output FILE (.csv, .tsv, .jsonl or .parquet) for the predictions")
    if args.output and not args.input:
        raise TunelabError("--output goes with --input FILE; texts given as arguments are printed")
    if args.top_k < 1:
        raise TunelabError(f"--top-k {args.top_k}: use 1 or more")
    if args.batch_size < 1:
        raise TunelabError(f"--batch-size {args.batch_size}: use 1 or more")
    options = parse_file_overrides(args.input[1:]) if args.input else {}  # a typo fails before loading
    if args.output:  # a wrong extension or a taken file fails before loading the model too
        args.output = expand_home(args.output)  # what it checks, writes and names is the home folder's
        output_format(args.output, overwrite=args.overwrite)
    predictor = _zero_shot_predictor(args) if args.zero_shot else load(args.run)
    column = predictor.text_pair_column
    if column and args.texts:
        raise TunelabError(
            f"{args.run} was trained on text pairs (data.text_pair_column={column!r}): "
            "give --pair TEXT TEXT_PAIR for each, or --input FILE with both columns"
        )
    if not column and args.pair:
        raise TunelabError(f"{args.run} classifies single texts: give them as arguments, not --pair")
    if args.input:
        # SIGTERM as Ctrl-C: its default killed the process with the output's hidden temporary left
        with sigterm_interrupts():
            n = predict_file(
                predictor,
                args.input[0],
                args.output,
                top_k=args.top_k,
                batch_size=args.batch_size,
                options=options,
                overwrite=args.overwrite,
                show_progress=not args.quiet,
            )
        print(f"wrote {n} predictions to {args.output}")
        return 0
    texts = [a for a, _ in args.pair] if args.pair else list(args.texts)
    pairs = [b for _, b in args.pair] if args.pair else None
    results = predictor.predict(texts, pairs, top_k=args.top_k, batch_size=args.batch_size)
    ascii_json = json_ascii()
    for i, (text, result) in enumerate(zip(texts, results, strict=True)):
        shown = {"text": text} if pairs is None else {"text": text, "text_pair": pairs[i]}
        if args.json:
            print(json.dumps({**shown, **result}, ensure_ascii=ascii_json))
            continue
        print(" | ".join(shown.values()))
        print("\n".join(_result_lines(result)))
    return 0


def _zero_shot_arguments(args: argparse.Namespace) -> None:
    """With --zero-shot the first positional is a text, not a run; the model options need it."""
    if args.zero_shot:
        if args.run is not None and _is_run_folder(args.run):
            # the run folder was classified as a text, exit 0
            raise TunelabError(
                f"{args.run} is a run folder: give a run folder or --zero-shot LABELS.yaml, not both"
            )
        if args.run is not None:
            args.texts = [args.run, *args.texts]
        args.run = "the zero-shot classifier"  # how messages name it (also with --pair, no text)
        return
    given = [f"--{k}" for k in ("encoder", "nli", "template") if getattr(args, k) is not None]
    if given:
        raise TunelabError(
            f"{' and '.join(given)}: only with --zero-shot LABELS.yaml (a run brings its model)"
        )
    if args.run is None:
        raise TunelabError("give a run folder (e.g. runs/banking77) or --zero-shot LABELS.yaml, then texts")
    if _is_run_folder(args.run) is None:  # a text where the run folder goes: the run was left out
        raise TunelabError(
            f"{args.run[:40]!r}...: not a run folder (too long for a path); give the run folder first, "
            "then the texts, or --zero-shot LABELS.yaml"
        )


def _is_run_folder(arg: str) -> bool | None:
    """Whether ``arg`` names a run folder; None where the OS cannot look it up as a path (a name
    over 255 bytes: ENAMETOOLONG), so a text: probing one was "unexpected OSError"."""
    try:
        return (Path(arg) / "run.json").is_file()
    except (OSError, ValueError):
        return None


def _zero_shot_predictor(args: argparse.Namespace) -> Any:  # a Predictor, imported lazily
    from tunelab.zeroshot import zero_shot_predictor

    return zero_shot_predictor(args.zero_shot, encoder=args.encoder, nli=args.nli, template=args.template)


def _result_lines(result: dict) -> list[str]:
    """A result as indented lines: entities one per line (NER), else the label and the runners-up."""
    if "entities" in result:
        if not result["entities"]:
            return ["  (no entities)"]
        return [
            f"  {e['label']:<8} {e['text']!r} [{e['start']}:{e['end']}] ({e['score']:.3f})"
            for e in result["entities"]
        ]
    if "labels" in result:  # multi-label: every label at or above the run's threshold
        if not result["labels"]:
            lines = ["  -> (no label at or above the threshold)"]
            others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result["top_k"])
        else:
            scores = ", ".join(f"{s:.3f}" for s in result["scores"])
            lines = [f"  -> {', '.join(result['labels'])} ({scores})"]
            rest = [t for t in result["top_k"] if t["label"] not in result["labels"]]
            others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in rest)
    else:
        lines = [f"  -> {result['label']} ({result['score']:.3f})"]
        others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result["top_k"][1:])
    if others:
        lines.append(f"     also: {others}")
    return lines
