"""How long a person waits for an answer: `mnist-adder-predict` and the demo's start, against a bare
`python -c "import torch"` timed beside them, each in a fresh process, alternating.

    python -m benchmarks.startup            # writes benchmarks/startup.md and startup.json
    python -m benchmarks.startup --quick    # one repeat each: checks that the script runs

Predict answers with the shipped reference model. The demo's start is from launching the command to its
page answering over HTTP.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.timing import write_report
from mnist_adder import PROJECT_ROOT
from mnist_adder.models.checkpoints import newest_checkpoint
from mnist_adder.runs.provenance import machine
from mnist_adder.runs.tables import markdown_table

OUT_DIR = Path(__file__).resolve().parent
SHIPPED = newest_checkpoint(PROJECT_ROOT / "lightning_logs" / "reference")
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "predict": ["mnist-adder-predict", "--checkpoint", str(SHIPPED), "notebooks/seven.png", "3"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=PROJECT_ROOT)
    return time.perf_counter() - start


def demo_seconds() -> float:
    """From starting the demo to its page answering."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "mnist_adder.demo",
        "--checkpoint",
        str(SHIPPED),
        "--port",
        str(port),
    ]
    start = time.perf_counter()
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError("the demo exited: is the demo extra installed?")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(repeats: int) -> dict:
    times: dict[str, list[float]] = {name: [] for name in [*COMMANDS, "demo"]}
    for _ in range(repeats):  # alternating, so that a slow spell of the machine hits every command
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
        times["demo"].append(demo_seconds())
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: median / medians["import torch"] for name, median in medians.items()}
    return {"machine": machine(), "repeats": repeats, "seconds": times, "median_seconds": medians,
            "ratio_to_import_torch": ratios}  # fmt: skip


def markdown(results: dict) -> str:
    m = results["machine"]
    shown = {
        "import torch": 'python -c "import torch"',
        "predict": "mnist-adder-predict notebooks/seven.png 3",
        "demo": "python -m mnist_adder.demo, until its page answers",
    }
    rows = [
        [f"`{shown[name]}`", f"{results['median_seconds'][name]:.2f}",
         f"{min(values):.2f}–{max(values):.2f}", f"{results['ratio_to_import_torch'][name]:.2f}"]
        for name, values in results["seconds"].items()
    ]  # fmt: skip
    header = ["command", "median s", "min–max s", "× import torch"]
    return (
        f"# Time to an answer\n\nMeasured {m['date']} on {m['cpu']}, {m['cores']} cores, "
        f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}. Written by `python -m benchmarks.startup`; "
        f"{results['repeats']} runs of each, alternating, each in a fresh process.\n\n"
        + markdown_table(header, rows)
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (default 5)")
    parser.add_argument("--quick", action="store_true", help="one run of each, to check that the script runs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for startup.md and startup.json")
    args = parser.parse_args(argv)
    results = run(1 if args.quick else args.repeats)
    write_report(args.out, "startup", results, markdown(results))
    return results


if __name__ == "__main__":
    main()
