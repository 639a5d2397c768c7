"""The GPU check: one command that measures the GPU half of the project, step by step, in order of value.

    python -m benchmarks.gpu_stage                        # first, where packages can be fetched: gpu_stage/
    python benchmarks/gpu.py --out "$OUT"                 # on the GPU machine, with gpu_stage/ sent along
    python benchmarks/gpu.py --quick --cpu --out report   # every step, tiny and on the CPU (the tests run it)

On the GPU machine it first installs what its image lacks, offline, from gpu_stage/wheels (Hydra), installs
the project, and unpacks MNIST from gpu_stage/mnist; then it runs the steps below. Each step is a real
command in its own process with its own time limit, cut to what is left of `--budget`; the report
(gpu.md and gpu.json in --out) is rewritten as each step ends, so a step that fails or runs out of time is
reported and the next one still runs. This file uses the standard library alone: it runs before the
project's dependencies are installed.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import importlib.util
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "mnist_adder.train"]
# (name, what it measures, command, seconds allowed): in order of value.
STEPS = [
    ("dual", "the default recipe on a GPU: accuracy and fit time",
     [*TRAIN, "model=dual", "trainer=gpu"], 150),
    ("reference_dual", "the published dual reference net, 25 epochs: quoted 99.27 % digit, 99.24 % sum",
     [*TRAIN, "model=reference_dual", "trainer=gpu", "trainer.max_epochs=25"], 200),
    ("speedrun", "fit seconds to 99 %; the anchor: 99.04 % in 0.76 s on a GTX 1660 Ti, data on the GPU",
     [*TRAIN, "experiment=speedrun", "trainer=gpu"], 45),
    ("overhead", "images/s of model=dual, Lightning against a bare loop, the data held on the GPU",
     [sys.executable, "-m", "benchmarks.run", "--overhead-only", "--out", tempfile.gettempdir()], 120),
    ("ddp", "NCCL, SyncBatchNorm and bf16-mixed, one epoch",
     [*TRAIN, "model=dual", "trainer=ddp", "trainer.devices=1", "trainer.max_epochs=1"], 60),
    ("eager_2_epochs", "two epochs without torch.compile, the baseline of the next step",
     [*TRAIN, "model=dual", "trainer=gpu", "trainer.max_epochs=2"], 45),
    ("compiled_2_epochs", "two epochs with model.compile=true: does it pay on a GPU?",
     [*TRAIN, "model=dual", "trainer=gpu", "trainer.max_epochs=2", "model.compile=true"], 90),
    ("gpu_tests", "the tests that skip without a GPU",
     [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_config.py",
      "-k", "gpu or ddp"], 60),
    ("reference_adder", "the published sum-only reference net, 25 epochs: quoted 95.41 % sum",
     [*TRAIN, "model=reference_adder", "trainer=gpu", "trainer.max_epochs=25"], 200),
]  # fmt: skip
QUICK = ["trainer.max_epochs=1", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
         "+trainer.limit_test_batches=2"]  # fmt: skip
KEPT = ("test/digit_acc", "test/sum_acc", "val/sum_acc_best", "fit_seconds", "setup_seconds", "test_seconds",
        "run_seconds", "parameters")  # fmt: skip


def install(stage: Path) -> list[str]:
    """Install Hydra from the staged wheels and the project, offline, and unpack MNIST; what was done."""
    done = []
    if importlib.util.find_spec("hydra") is None:
        wheels = glob.glob(str(stage / "wheels" / "*.whl"))
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
        subprocess.run([*pip, *wheels], check=True)
        done.append("installed " + ", ".join(Path(wheel).name for wheel in wheels))
    if importlib.util.find_spec("mnist_adder") is None:  # the steps run from ROOT, which imports it anyway
        pip = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-build-isolation",
        ]
        installed = subprocess.run([*pip, "-e", str(ROOT)], capture_output=True).returncode == 0
        done.append("installed the project" if installed else "the project runs from its folder")
    raw = ROOT / "data" / "MNIST" / "raw"
    for packed in sorted((stage / "mnist").glob("*.gz")):
        target = raw / packed.stem
        if not target.is_file():
            raw.mkdir(parents=True, exist_ok=True)
            with gzip.open(packed, "rb") as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            done.append(f"unpacked {target.name}")
    return done


def adapt(command: list[str], quick: bool, cpu: bool) -> list[str]:
    """A step's command for --quick (tiny sizes) and --cpu (the CPU standing in for the GPU)."""
    if cpu:
        command = ["trainer=cpu" if word == "trainer=gpu" else word for word in command]
        command += ["trainer.accelerator=cpu"] if "trainer=ddp" in command else []
    is_train = command[:3] == TRAIN
    return (
        command + (QUICK if quick and is_train else []) + (["callbacks.error_pictures=null"] if False else [])
    )


def run_step(command: list[str], seconds: float) -> dict:
    """Run one command with a time limit: its status, wall time, last lines of output and its metrics."""
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as log_dir:
        is_train = command[:3] == TRAIN
        full = [*command, f"paths.log_dir={log_dir}"] if is_train else command
        start = time.perf_counter()
        try:
            done = subprocess.run(full, cwd=ROOT, capture_output=True, text=True, timeout=seconds)
            status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
            output = done.stderr + done.stdout  # what a command prints as its result comes last
        except subprocess.TimeoutExpired as expired:
            status, output = f"out of time ({seconds:.0f} s)", str(expired.stderr or "")
        wall = time.perf_counter() - start
        metrics = [json.loads(path.read_text()) for path in Path(log_dir).rglob("metrics.json")]
    result = {"status": status, "wall_seconds": round(wall, 1), "tail": output.strip().splitlines()[-15:]}
    if metrics:
        result["metrics"] = {key: metrics[0][key] for key in KEPT if key in metrics[0]}
    return result


def device() -> str:
    probe = "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


def cell(metrics: dict, key: str, scale: float = 100) -> str:
    return f"{scale * metrics[key]:.2f}" if key in metrics else "-"


def markdown(report: dict) -> str:
    lines = [
        "# The GPU check",
        "",
        f"Written by `python benchmarks/gpu.py{' --quick' * report['quick']}{' --cpu' * report['cpu']}` "
        f"on {report['date']}: {report['device']}, Python {report['python']}, torch {report['torch']}. "
        + ("Quick mode: tiny sizes, not figures to quote. " if report["quick"] else "")
        + f"Set-up: {'; '.join(report['setup']) or 'nothing to install'}.",
        "",
        "| step | what it measures | status | wall s | fit s | test digit % | test sum % | best val sum % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, step in report["steps"].items():
        m = step.get("metrics", {})
        cells = [cell(m, "fit_seconds", 1), cell(m, "test/digit_acc"), cell(m, "test/sum_acc"),
                 cell(m, "val/sum_acc_best")]  # fmt: skip
        lines.append(f"| `{name}` | {step['about']} | {step['status']} | {step['wall_seconds']} | "
                     + " | ".join(cells) + " |")  # fmt: skip
    # The output of a step that failed, or that measures no run (the tests, the overhead benchmark):
    shown = [(name, step) for name, step in report["steps"].items()
             if step["tail"] and (step["status"] != "ok" or "metrics" not in step)]  # fmt: skip
    for name, step in shown:
        lines += ["", f"`{name}`, last lines:", "", "```", *step["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.md and gpu.json")
    parser.add_argument("--quick", action="store_true", help="each step a few batches: checks the check")
    parser.add_argument("--cpu", action="store_true", help="the CPU stands in for the GPU")
    parser.add_argument("--budget", type=float, default=540, help="seconds for all steps (default 540)")
    parser.add_argument("--stage", type=Path, default=ROOT / "gpu_stage", help="what gpu_stage staged")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick, "cpu": args.cpu,
              "python": platform.python_version(), "setup": install(args.stage), "steps": {}}  # fmt: skip
    report["device"] = device()
    report["torch"] = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                     capture_output=True, text=True).stdout.strip()  # fmt: skip
    started = time.perf_counter()  # the budget is the steps'
    for name, about, command, seconds in STEPS:
        left = args.budget - (time.perf_counter() - started)
        if left < 5:
            report["steps"][name] = {"about": about, "status": "not run: the budget was spent",
                                     "wall_seconds": 0, "tail": []}  # fmt: skip
        else:
            step = run_step(adapt(command, args.quick, args.cpu), min(seconds, left))
            report["steps"][name] = {"about": about, **step}
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2))
        (args.out / "gpu.md").write_text(markdown(report))
        print(f"{name}: {report['steps'][name]['status']}", flush=True)
    return report


if __name__ == "__main__":
    main()
