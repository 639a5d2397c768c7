"""How long a person waits for an answer: `mnist-adder-predict` with the checkpoint and with the model
exported to ONNX (onnxruntime alone, no torch), and the demo's start, against a bare
`python -c "import torch"` timed beside them, each in a fresh process, alternating; then the answer alone,
in a process that has its model loaded.

    python -m benchmarks.startup            # writes benchmarks/startup.md and startup.json
    python -m benchmarks.startup --quick    # one repeat each: checks that the script runs

Predict answers with the shipped model (six nets averaged, each reading every image twice), which is
exported into a temporary folder first. The demo's start is from launching the command to its page
answering over HTTP.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import write_report
from mnist_adder import PROJECT_ROOT
from mnist_adder.data.photos import read_image, to_mnist
from mnist_adder.models.checkpoints import LOG_DIR, load_net
from mnist_adder.models.exported import ExportedModel
from mnist_adder.models.exporting import export
from mnist_adder.runs.provenance import machine
from mnist_adder.runs.tables import markdown_table

OUT_DIR = Path(__file__).resolve().parent
SHIPPED = LOG_DIR / "reference" / "averaged.ckpt"  # what predict answers with on a fresh clone
SEVEN = PROJECT_ROOT / "notebooks" / "seven.png"


def commands(onnx: Path) -> dict[str, list[str]]:
    return {
        "import torch": [sys.executable, "-c", "import torch"],
        "predict": ["mnist-adder-predict", "--checkpoint", str(SHIPPED), "notebooks/seven.png", "3"],
        "predict, ONNX": ["mnist-adder-predict", "--model", str(onnx), "notebooks/seven.png", "3"],
    }


def answer_seconds(onnx: Path, repeats: int) -> dict[str, float]:
    """The median time of one answer (one image, prepared already) with the model loaded: the checkpoint's
    net in torch, and the exported file in onnxruntime."""
    net, exported = load_net(SHIPPED), ExportedModel(onnx)
    image = to_mnist(read_image(str(SEVEN)))[None]
    runs = {
        "checkpoint (torch)": lambda: net.probabilities(torch.from_numpy(image), torch.tensor([3])),
        "ONNX (onnxruntime)": lambda: exported.run(image, np.array([3])),
    }
    medians = {}
    for name, answer in runs.items():
        answer()  # the first call sets things up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            answer()
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times)
    return medians


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
    with tempfile.TemporaryDirectory() as folder:
        onnx = export(load_net(SHIPPED), "onnx", Path(folder) / "model.onnx")
        to_time = commands(onnx)
        times: dict[str, list[float]] = {name: [] for name in [*to_time, "demo"]}
        for _ in range(repeats):  # alternating, so that a slow spell of the machine hits every command
            for name, command in to_time.items():
                times[name].append(seconds(command))
            times["demo"].append(demo_seconds())
        answers = answer_seconds(onnx, 100 * repeats)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: median / medians["import torch"] for name, median in medians.items()}
    return {"machine": machine(), "repeats": repeats, "seconds": times, "median_seconds": medians,
            "ratio_to_import_torch": ratios, "answer_seconds": answers}  # fmt: skip


def markdown(results: dict) -> str:
    m = results["machine"]
    shown = {
        "import torch": 'python -c "import torch"',
        "predict": "mnist-adder-predict notebooks/seven.png 3",
        "predict, ONNX": "mnist-adder-predict --model model.onnx notebooks/seven.png 3",
        "demo": "python -m mnist_adder.demo, until its page answers",
    }
    rows = [
        [f"`{shown[name]}`", f"{results['median_seconds'][name]:.2f}",
         f"{min(values):.2f}–{max(values):.2f}", f"{results['ratio_to_import_torch'][name]:.2f}"]
        for name, values in results["seconds"].items()
    ]  # fmt: skip
    header = ["command", "median s", "min–max s", "× import torch"]
    answers = results["answer_seconds"]
    answer_rows = [[name, f"{1000 * value:.2f}"] for name, value in answers.items()]
    median = results["median_seconds"]
    return (
        f"# Time to an answer\n\nMeasured {m['date']} on {m['cpu']}, {m['cores']} cores, "
        f"GPU: {m['gpu'] or 'none'}; torch {m['torch']}. Written by `python -m benchmarks.startup`; "
        f"{results['repeats']} runs of each, alternating, each in a fresh process.\n\n"
        + markdown_table(header, rows)
        + f"\nThe exported model's whole command takes {median['predict, ONNX'] / median['predict']:.2f}× "
        "the checkpoint's. The answer alone, one image already prepared, its model loaded (median of "
        f"{100 * results['repeats']}):\n\n"
        + markdown_table(["model", "ms per answer"], answer_rows)
        + f"\nonnxruntime answers in {answers['ONNX (onnxruntime)'] / answers['checkpoint (torch)']:.2f}× "
        "the time torch takes.\n"
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
