"""``tunelab search``: a hyper-parameter search over any config field, chosen on dev (Optuna)."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_config_arguments, config_and_overrides
from tunelab.cli.signals import sigterm_interrupts

HELP = """examples:
  tunelab search configs/demo.yaml --space configs/search_space.yaml --trials 8
  tunelab search configs/demo.yaml --space configs/search_space.yaml --trials 12  # after a kill: resumes
  tunelab search configs/banking77.yaml data.dev_size=0.1 --space configs/search_space.yaml --trials 20

A space file maps config fields (the key=value override names) to the values to try:
  train.learning_rate: {low: 1e-5, high: 1e-3, log: true}
  train.epochs: {low: 2, high: 6}
  method.r: [4, 8, 16]

Each trial is a training run (trials/trial-NNN in the search folder, default
<output_dir>/search-<config name>). Trials are chosen on the dev metric (train.metric) only, a tie
going to the lower dev loss as in training; a run with no dev data is refused (give data.dev or
data.dev_size). A trial whose dev metric trails the
median of earlier trials at the same evaluation is pruned (--no-prune to train every trial to the
end). The test rows (data.test, or data.test_size carved from train) are scored once, by the best
run at the end (trials read a test file's texts only to keep them out of augmented, rehearsed and
pseudo-labelled rows). A trial whose training loss diverges or that runs out of memory is recorded
as failed (the reason in trials.csv) and the search goes on. The folder gets trials.csv, trials.md,
trials.png, best.json and best (a link to the best run folder), updated after every trial.
The search is stored in study.db: rerunning the same command after a kill or Ctrl-C continues it, and a
trial cut short runs again (after Ctrl-C or SIGTERM, always; after a SIGKILL, such as the out-of-memory
killer's, once: a second one in it marks it failed); --trials is the total, so a larger number adds
trials (a new best run then reads the test rows again: best.json keeps the earlier test score, and
neither is an unbiased estimate any more).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search hyper-parameters (any config field) on dev data, resumable",
        description="Train several variants of a run and keep the best on dev (Optuna, with pruning).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p)
    p.add_argument("--space", required=True, metavar="YAML", help="the search space file")
    p.add_argument("--trials", type=int, default=20, metavar="N", help="trials in all (default 20)")
    p.add_argument("--out", metavar="DIR", help="search folder (default <output_dir>/search-<config name>)")
    p.add_argument("--no-prune", action="store_true", help="train every trial to the end")
    p.add_argument(
        "--prune-after", type=int, default=2, metavar="K", help="finished trials before pruning starts (2)"
    )
    p.add_argument("--seed", type=int, help="the sampler's seed (default train.seed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.search import search

    try:
        import optuna
    except ImportError:  # search() says how to install it
        pass
    else:
        # Its per-trial INFO lines repeat ours. Set after the import: optuna's first import sets its
        # logger to INFO, so a level set on it before then was undone (even -q printed them).
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    config, overrides = config_and_overrides(args)
    # SIGTERM (kill, docker stop, Slurm) stops the trial as Ctrl-C does: its values are queued to run
    # again and the rerun hint is said. Its default action ended the process with nothing said, and a
    # second kill in the same values recorded them as failed ("the search process died ... twice").
    with sigterm_interrupts():
        result = search(
            config,
            space=args.space,
            trials=args.trials,
            overrides=overrides,
            out=args.out,
            prune=not args.no_prune,
            prune_after=args.prune_after,
            seed=args.seed,
            show_progress=not args.quiet,
            on_trial=_print_trial,
        )
    interrupted = sum(row["state"] == "interrupted" for row in result.trials)
    again = f", {interrupted} interrupted and run again" if interrupted else ""
    print(f"search: {result.folder} ({len(result.trials)} trials{again})")
    if result.best_run is None:
        print("no trial finished")
        return 1
    values = ", ".join(f"{k}={v}" for k, v in result.best_params.items())
    print(f"best: dev {result.metric} {result.best_value:.4f} ({values})")
    print(f"best run: {result.files.get('best', result.best_run)}")
    if result.test is not None and result.metric in result.test:
        print(f"test {result.metric} of the best run (read once): {result.test[result.metric]:.4f}")
    print(f"table: {result.files['trials.md']}  plot: {result.files.get('trials.png', '-')}")
    return 0


def _print_trial(row: dict) -> None:
    from tqdm.auto import tqdm

    cells = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
    tqdm.write(cells)
