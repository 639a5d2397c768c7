"""What the benchmarks share: the hardware a figure was measured on, and a train command timed as a user
types it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

from mnist_adder import PROJECT_ROOT


def machine() -> dict:
    """The hardware and software of this process, for a report's header."""
    import lightning

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []  # fmt: skip
    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "cpu": names[0] if names else platform.processor(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def train_command(*arguments: str) -> dict:
    """Run `python -m mnist_adder.cli.train ARGUMENTS` (Hydra flags such as -m first) in a fresh process,
    logging into a temporary folder, and return its wall time, from before the process starts to its
    end, and the metrics.json of each run it made."""
    flags = [word for word in arguments if word == "-m"]
    overrides = [word for word in arguments if word != "-m"]
    with tempfile.TemporaryDirectory(prefix="mnist_adder_bench_") as log_dir:
        command = [sys.executable, "-m", "mnist_adder.cli.train", *flags, *overrides]
        command.append(f"paths.log_dir={log_dir}")
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=PROJECT_ROOT)
        wall = time.perf_counter() - start
        runs = [json.loads(path.read_text()) for path in sorted(Path(log_dir).rglob("metrics.json"))]
    return {"overrides": overrides, "wall_seconds": wall, "runs": runs}
