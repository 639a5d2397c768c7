"""Finished runs gathered into Markdown tables: each run's metrics.json, grouped by its overrides.

    from mnist_adder.runs.tables import markdown_table, mean_std, run_groups
    groups = run_groups([Path("lightning_logs/multirun/2026-11-22_07-00-00")])   # overrides -> run folders

A run folder is one that holds a `metrics.json` (written by `mnist_adder.train`); runs whose Hydra
overrides differ only in `seed=` form a group.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import yaml

from mnist_adder import UserError


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: a header row, its rule, and one line per row."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines) + "\n"


def overrides_of(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else []


def runs_by(folder: Path, key: str) -> dict[str, Path]:
    """The run folders below `folder`, keyed by the value their overrides give `key` (e.g. the seed or the
    Optuna trial of each job of a sweep); folders that do not set it are left out."""
    runs = {}
    for path in folder.rglob(".hydra/overrides.yaml"):
        for override in overrides_of(path.parent.parent):
            if override.startswith(f"{key}="):
                runs[override.removeprefix(f"{key}=")] = path.parent.parent
    return runs


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def scalars_of(run_dir: Path, tag: str) -> dict[int, float]:
    """step -> value of the scalar `tag` that a run logged to TensorBoard (all event files in its folder)."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0}).Reload()  # 0: keep every point
    if tag not in events.Tags()[SCALARS]:
        return {}
    return {event.step: event.value for event in events.Scalars(tag)}


def mean_std(runs: list[dict[str, float]], key: str, scale: float = 1.0, digits: int = 2) -> str:
    """`key`'s mean ± sample standard deviation over runs, times `scale`; the value alone for one run; and
    how many runs it is of, if some runs lack it."""
    values = [run[key] * scale for run in runs if key in run]
    if not values:
        return "-"
    part = f" ({len(values)} of {len(runs)} runs)" if len(values) < len(runs) else ""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{part}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}{part}"


def run_groups(folders: list[Path]) -> dict[str, list[Path]]:
    """Every finished run folder under `folders`, keyed by its overrides without the seed. Raises UserError
    if a folder is missing or none holds a finished run."""
    if missing := [str(folder) for folder in folders if not folder.is_dir()]:
        raise UserError(f"not a folder: {', '.join(missing)}")
    groups: dict[str, list[Path]] = defaultdict(list)
    for folder in folders:
        for metrics_file in sorted(folder.rglob("metrics.json")):
            run_dir = metrics_file.parent
            name = " ".join(o for o in overrides_of(run_dir) if not o.startswith("seed=")) or "(defaults)"
            groups[name].append(run_dir)
    if not groups:
        raise UserError("no metrics.json below those folders: train first (python -m mnist_adder.train)")
    return groups


def provenance(run_dirs: list[Path]) -> str:
    """One line: when, on what hardware and at which commits the runs ran, from their run.json files."""
    runs = [json.loads((run / "run.json").read_text()) for run in run_dirs if (run / "run.json").is_file()]
    if not runs:
        return "No run.json beside these runs: when and where they ran is not recorded."
    dates = sorted(run["date"][:10] for run in runs)
    span = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    hardware = "; ".join(sorted({run["hardware"] for run in runs}))
    commits = ", ".join(sorted({str(run["commit"]) for run in runs}))
    return f"{len(runs)} run{'s' * (len(runs) > 1)}, {span}, on {hardware}, at commit {commits}."
