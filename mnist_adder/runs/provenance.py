"""Where and when a figure was measured: the hardware, the software and the commit.

`mnist_adder.runs.app.report` writes it beside every run's metrics (run.json), `mnist_adder.results` prints
it under its tables, and every benchmark report opens with it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path

import torch

from mnist_adder import PROJECT_ROOT


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def commit() -> str | None:
    """The project's git commit, with "+changes" if tracked files differ from it; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=PROJECT_ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def hardware() -> str:
    """E.g. "AMD EPYC, 2 cores, no GPU" or "..., GPU: NVIDIA H100 80GB HBM3"."""
    gpu = f"GPU: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {os.cpu_count()} cores, {gpu}"


def machine() -> dict:
    """Everything above, with the software versions, for a report's header."""
    import lightning

    return {
        "date": datetime.now().isoformat(timespec="seconds"),
        "hardware": hardware(),
        "commit": commit(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
