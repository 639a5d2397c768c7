"""What the benchmarks share: a train command timed as a user types it, and a report written out. (The
hardware a figure was measured on: `mnist_adder.runs.provenance.machine`.)"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mnist_adder import PROJECT_ROOT


def train_command(*arguments: str) -> dict:
    """Run `python -m mnist_adder.train ARGUMENTS` (Hydra flags such as -m first) in a fresh process,
    logging into a temporary folder, and return its wall time, from before the process starts to its
    end, and the metrics.json of each run it made."""
    flags = [word for word in arguments if word == "-m"]
    overrides = [word for word in arguments if word != "-m"]
    with tempfile.TemporaryDirectory(prefix="mnist_adder_bench_") as log_dir:
        command = [sys.executable, "-m", "mnist_adder.train", *flags, *overrides]
        command.append(f"paths.log_dir={log_dir}")
        start = time.perf_counter()
        run_command(command)
        wall = time.perf_counter() - start
        runs = [json.loads(path.read_text()) for path in sorted(Path(log_dir).rglob("metrics.json"))]
    return {"overrides": overrides, "wall_seconds": wall, "runs": runs}


def write_report(folder: Path, name: str, results: dict, report: str) -> None:
    """`name`.json (the raw results) and `name`.md (`report`) in `folder`, and the report on the console."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(results, indent=2))
    (folder / f"{name}.md").write_text(report)
    print(report)


def run_command(command: list[str]) -> None:
    """Run a command from the project root; if it fails, raise with the end of what it wrote to stderr."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n{result.stderr[-4000:]}")
