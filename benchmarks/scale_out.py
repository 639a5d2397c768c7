"""Scale-out measurements on one machine: a sweep run serially and two jobs at a time, and bf16 on a CPU.

    python -m benchmarks.scale_out            # writes benchmarks/scale_out.md and scale_out.json
    python -m benchmarks.scale_out --quick    # tiny sizes, seconds: checks that the script runs

Each figure is one real `python -m mnist_adder.train` command, timed from start to exit, run one after
the other so that no two compete for the cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.timing import train_command, write_report
from mnist_adder.runs.provenance import machine
from mnist_adder.runs.tables import markdown_table

OUT_DIR = Path(__file__).resolve().parent


def timed(*arguments: str) -> tuple[float, list[dict[str, float]]]:
    """Wall seconds of one train command, and the metrics.json of each run it made."""
    result = train_command(*arguments)
    return result["wall_seconds"], result["runs"]


def run(quick: bool) -> dict:
    short = ["debug=fdr"] if quick else ["debug=limit", "callbacks.error_pictures=null"]
    sweep = ["-m", "seed=1,2,3,4", *short]
    serial, _ = timed(*sweep)
    parallel, _ = timed(*sweep, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")

    epoch = (
        ["debug=fdr"] if quick else ["model=dual", "trainer.max_epochs=1", "callbacks.error_pictures=null"]
    )
    precision = {}
    for name in ("32-true", "bf16-mixed"):
        seconds, (metrics,) = timed(*epoch, f"trainer.precision={name}")
        precision[name] = {
            "wall_seconds": seconds,
            "fit_seconds": metrics.get("fit_seconds"),
            "test_sum_acc": metrics.get("test/sum_acc"),
            "test_digit_acc": metrics.get("test/digit_acc"),
        }
    return {
        "machine": machine(),
        "quick": quick,
        "sweep": {
            "command": " ".join(sweep),
            "serial_seconds": serial,
            "joblib_2_seconds": parallel,
            "ratio": serial / parallel,
        },  # fmt: skip
        "precision": {"command": " ".join(epoch), **precision},
    }


def markdown(results: dict) -> str:
    sweep, precision = results["sweep"], results["precision"]
    m = results["machine"]
    launchers = [
        ["basic (one job after another)", f"{sweep['serial_seconds']:.1f}"],
        ["`hydra/launcher=joblib hydra.launcher.n_jobs=2` (torch threads = cores // 2 each)",
         f"{sweep['joblib_2_seconds']:.1f}"],
        ["**serial / parallel**", f"**{sweep['ratio']:.2f}**"],
    ]  # fmt: skip

    def cell(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
        return "-" if value is None else f"{scale * value:.{digits}f}"

    precisions = [
        [f"`{name}`", cell(row["fit_seconds"]), cell(row["wall_seconds"]),
         cell(row["test_digit_acc"], 100, 2), cell(row["test_sum_acc"], 100, 2)]
        for name, row in ((name, precision[name]) for name in ("32-true", "bf16-mixed"))
    ]  # fmt: skip
    return "\n".join([
        "# Scale-out on one machine",
        "",
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, no GPU; torch {m['torch']}, "
        f"lightning {m['lightning']}. Written by `python -m benchmarks.scale_out`"
        + (" --quick (tiny sizes: not figures to quote)." if results["quick"] else "."),
        "",
        f"## A 4-job sweep: `python -m mnist_adder.train {sweep['command']}`",
        "",
        markdown_table(["launcher", "wall seconds"], launchers),
        f"## bf16 on a CPU: `python -m mnist_adder.train {precision['command']} trainer.precision=...`",
        "",
        markdown_table(["precision", "fit seconds", "wall seconds", "test digit acc %", "test sum acc %"],
                       precisions),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for scale_out.md and .json")
    args = parser.parse_args(argv)
    results = run(args.quick)
    write_report(args.out, "scale_out", results, markdown(results))
    return results


if __name__ == "__main__":
    main()
