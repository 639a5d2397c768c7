"""Collect finished runs into a Markdown table: mean ± std over seeds of their final test metrics.

    python -m mnist_adder.results lightning_logs/multirun/2026-11-22_07-00-00 [more folders ...]

Every run folder below the given ones that holds a `metrics.json` (written by `mnist_adder.train`) is a
row's sample; runs whose Hydra overrides differ only in `seed=` share a row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml


def overrides_of(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else []


def mean_std(runs: list[dict[str, float]], key: str, scale: float = 1.0, digits: int = 2) -> str:
    values = [run[key] * scale for run in runs if key in run]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def run_groups(folders: list[Path]) -> dict[str, list[Path]]:
    """Every finished run folder (one with a metrics.json) under `folders`, keyed by its overrides without
    the seed."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for folder in folders:
        for metrics_file in sorted(folder.rglob("metrics.json")):
            run_dir = metrics_file.parent
            name = " ".join(o for o in overrides_of(run_dir) if not o.startswith("seed=")) or "(defaults)"
            groups[name].append(run_dir)
    return groups


def run_groups_or_exit(folders: list[Path]) -> dict[str, list[Path]]:
    """`run_groups`, or exit with one line if a folder is missing or holds no finished run."""
    if missing := [str(folder) for folder in folders if not folder.is_dir()]:
        sys.exit(f"error: not a folder: {', '.join(missing)}")
    if not (groups := run_groups(folders)):
        sys.exit("error: no metrics.json below those folders: train first (python -m mnist_adder.train)")
    return groups


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


COLUMNS = [  # header, metrics.json key, scale, decimals
    ("test digit acc %", "test/digit_acc", 100, 2),
    ("test sum acc %", "test/sum_acc", 100, 2),
    ("best val sum acc %", "val/sum_acc_best", 100, 2),
    ("fit seconds", "fit_seconds", 1, 0),
]


def table(groups: dict[str, list[dict[str, float]]]) -> str:
    header = ["overrides", "seeds", *(column[0] for column in COLUMNS), "parameters"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in groups.items():
        cells = [f"`{name}`", str(len(runs)), *(mean_std(runs, *column[1:]) for column in COLUMNS)]
        cells.append(f"{int(runs[0]['parameters']):,}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="run or multirun folders to search")
    args = parser.parse_args(argv)
    groups = run_groups_or_exit(args.folders)
    print(table({name: [metrics_of(run) for run in runs] for name, runs in groups.items()}))


if __name__ == "__main__":
    main()
