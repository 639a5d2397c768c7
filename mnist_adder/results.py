"""Collect finished runs into a Markdown table: mean ± std over seeds of their final test metrics.

    python -m mnist_adder.results lightning_logs/multirun/2026-11-22_07-00-00 [more folders ...]
    python -m mnist_adder.results lightning_logs/multirun/2026-11-22_07-00-00 --curve train/sum_acc

Every run folder below the given ones that holds a `metrics.json` (written by `mnist_adder.train`) is a
row's sample; runs whose Hydra overrides differ only in `seed=` share a row. A last line says when, on
what hardware and at which commit they ran (their run.json). With `--curve`, each group's learning
curves instead: the TensorBoard scalars named, their steps (up to `--until`) cut into `--rows` bins,
each bin's mean, mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from mnist_adder import UserError
from mnist_adder.runs.tables import markdown_table, mean_std, metrics_of, provenance, run_groups, scalars_of

COLUMNS = [  # header, metrics.json key, scale, decimals
    ("test digit acc %", "test/digit_acc", 100, 2),
    ("test sum acc %", "test/sum_acc", 100, 2),
    ("test most likely sum acc %", "test/most_likely_sum_acc", 100, 2),  # MNIST addition's only
    ("test sum acc, 100 re-pairings %", "test/repaired_sum_acc", 100, 2),  # MNIST addition's only
    ("test digit acc^(2N) %", "test/digit_acc_to_2n", 100, 2),  # MNIST addition's only
    ("best val sum acc %", "val/sum_acc_best", 100, 2),
    ("fit seconds", "fit_seconds", 1, 0),
]
# Shown only if a run has it:
OPTIONAL = {"test/most_likely_sum_acc", "test/repaired_sum_acc", "test/digit_acc_to_2n"}


def table(groups: dict[str, list[dict[str, float]]]) -> str:
    every_run = [run for runs in groups.values() for run in runs]
    columns = [c for c in COLUMNS if c[1] not in OPTIONAL or any(c[1] in run for run in every_run)]
    header = ["overrides", "seeds", *(column[0] for column in columns), "parameters"]
    rows = [
        [f"`{name}`", len(runs), *(mean_std(runs, *column[1:]) for column in columns),
         f"{int(runs[0]['parameters']):,}"]  # fmt: skip
        for name, runs in groups.items()
    ]
    return markdown_table(header, rows)


def curves(runs: list[Path], tags: list[str], rows: int, until: int | None) -> str:
    """One table: the logged steps cut into at most `rows` consecutive bins, a row per bin and a column per
    tag: the mean over the bin of each run, then mean ± std over the runs that logged it there."""
    logged = {tag: [scalars_of(run, tag) for run in runs] for tag in tags}
    steps = sorted({step for by_run in logged.values() for scalars in by_run for step in scalars})
    steps = [step for step in steps if until is None or step <= until]
    if not steps:
        raise UserError(f"none of the runs logged {', '.join(tags)} to TensorBoard (e.g. train/loss)")
    rows = min(rows, len(steps))
    bins = [steps[len(steps) * i // rows : len(steps) * (i + 1) // rows] for i in range(rows)]

    def cell(tag: str, steps: list[int]) -> str:
        means = [{tag: statistics.fmean(s[step] for step in steps if step in s)}
                 for s in logged[tag] if any(step in s for step in steps)]  # fmt: skip
        return mean_std(means, tag, 1, 4)

    table = [
        [f"{steps[0]}–{steps[-1]}" if len(steps) > 1 else steps[0], *(cell(tag, steps) for tag in tags)]
        for steps in bins
    ]
    return markdown_table(["steps", *tags], table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="run or multirun folders to search")
    parser.add_argument("--curve", nargs="+", metavar="TAG", help="TensorBoard scalars to show over steps")
    parser.add_argument("--rows", type=int, default=20, help="bins of steps per curve (default 20)")
    parser.add_argument("--until", type=int, metavar="STEP", help="the last step shown")
    args = parser.parse_args(argv)
    if args.rows < 1:
        sys.exit(f"error: --rows must be at least 1, got {args.rows}")
    try:
        groups = run_groups(args.folders)
        if args.curve:
            for name, runs in groups.items():
                print(f"`{name}`, {len(runs)} run{'s' * (len(runs) > 1)}:\n")
                print(curves(runs, args.curve, args.rows, args.until))
        else:
            print(table({name: [metrics_of(run) for run in runs] for name, runs in groups.items()}))
    except UserError as error:
        sys.exit(f"error: {error}")
    print(provenance([run for runs in groups.values() for run in runs]))


if __name__ == "__main__":
    main()
