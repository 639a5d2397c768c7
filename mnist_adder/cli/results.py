"""Collect finished runs into a Markdown table: mean ± std over seeds of their final test metrics.

    python -m mnist_adder.cli.results lightning_logs/multirun/2026-11-22_07-00-00 [more folders ...]

Every run folder below the given ones that holds a `metrics.json` (written by `mnist_adder.cli.train`) is a
row's sample; runs whose Hydra overrides differ only in `seed=` share a row. A last line says when, on
what hardware and at which commit they ran (their run.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_adder import UserError
from mnist_adder.tables import markdown_table, mean_std, metrics_of, provenance, run_groups

COLUMNS = [  # header, metrics.json key, scale, decimals
    ("test digit acc %", "test/digit_acc", 100, 2),
    ("test sum acc %", "test/sum_acc", 100, 2),
    ("best val sum acc %", "val/sum_acc_best", 100, 2),
    ("fit seconds", "fit_seconds", 1, 0),
]


def table(groups: dict[str, list[dict[str, float]]]) -> str:
    header = ["overrides", "seeds", *(column[0] for column in COLUMNS), "parameters"]
    rows = [
        [f"`{name}`", len(runs), *(mean_std(runs, *column[1:]) for column in COLUMNS),
         f"{int(runs[0]['parameters']):,}"]  # fmt: skip
        for name, runs in groups.items()
    ]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="run or multirun folders to search")
    args = parser.parse_args(argv)
    try:
        groups = run_groups(args.folders)
    except UserError as error:
        sys.exit(f"error: {error}")
    print(table({name: [metrics_of(run) for run in runs] for name, runs in groups.items()}))
    print(provenance([run for runs in groups.values() for run in runs]))


if __name__ == "__main__":
    main()
