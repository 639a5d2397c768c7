"""What Optuna's pruner saves in a real search: `hparams_search=optuna` on real MNIST, each trial's state,
epochs and fit time, and the fit time the pruned trials would have taken to run whole.

    python -m benchmarks.pruning           # 16 trials of 4 epochs: writes benchmarks/pruning.md and .json
    python -m benchmarks.pruning --quick   # 3 tiny trials, all pruned, the report only printed: a check

A pruned trial's whole fit is estimated from its own pace: its fit time × all epochs / the epochs it ran.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna

from benchmarks.timing import run_command, write_report
from mnist_adder.runs.provenance import machine
from mnist_adder.runs.tables import markdown_table, metrics_of, runs_by

OUT_DIR = Path(__file__).resolve().parent
QUICK = ["+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
         "hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=1.1"]  # every trial pruned


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="3 tiny trials, all pruned")
    parser.add_argument("--out", type=Path, help="the report's folder (default: benchmarks/; --quick: none)")
    args = parser.parse_args(argv)
    trials, epochs = (3, 3) if args.quick else (args.trials, args.epochs)
    overrides = [f"hydra.sweeper.n_trials={trials}", f"trainer.max_epochs={epochs}", "test=false",
                 *(QUICK if args.quick else [])]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mnist_adder_bench_") as log_dir:
        command = [sys.executable, "-m", "mnist_adder.train", "-m", "hparams_search=optuna", *overrides,
                   f"paths.log_dir={log_dir}"]  # fmt: skip
        start = time.perf_counter()
        run_command(command)
        wall = time.perf_counter() - start
        storage = f"sqlite:///{log_dir}/optuna.db"
        (summary,) = optuna.get_all_study_summaries(storage=storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        jobs = runs_by(Path(log_dir), "optuna_trial")
        metrics = {int(trial): metrics_of(run) for trial, run in jobs.items()}
    rows = []
    for trial in study.trials:
        ran = trial.user_attrs.get("pruned_at_epoch", epochs - 1) + 1
        fit = metrics[trial.number]["fit_seconds"]
        rows.append({"trial": trial.number, "state": trial.state.name.lower(), "epochs": ran,
                     "val sum acc": round(100 * trial.value, 2), "fit s": round(fit, 1),
                     "whole fit s": round(fit * epochs / ran, 1)})  # fmt: skip
    fit, whole = sum(row["fit s"] for row in rows), sum(row["whole fit s"] for row in rows)
    pruned = [row for row in rows if row["state"] == "pruned"]
    results = {"command": " ".join(["python -m mnist_adder.train -m hparams_search=optuna", *overrides]),
               "machine": machine(), "wall_seconds": wall, "trials": rows, "fit_seconds": fit,
               "whole_fit_seconds": whole}  # fmt: skip
    m = results["machine"]
    report = "\n".join([
        "# Pruning in a real search", "",
        f"Measured {m['date']} on {m['hardware']}, torch {m['torch']}, commit {m['commit']}. Written by "
        f"`python -m benchmarks.pruning`, which runs `{results['command']}`.", "",
        f"{len(pruned)} of {len(rows)} trials pruned: "
        f"{fit:.0f} s of fit in all where running every trial whole would take an estimated {whole:.0f} s "
        f"({1 - fit / whole:.0%} saved); {wall:.0f} s for the whole command.", "",
        markdown_table(list(rows[0]), [list(row.values()) for row in rows]), "",
        "`val sum acc`: the trial's best validation sum accuracy (a pruned trial's, up to where it stopped). "
        "`whole fit s`: for a pruned trial, its fit time × all epochs / the epochs it ran.", "",
    ])  # fmt: skip
    if args.out or not args.quick:
        write_report(args.out or OUT_DIR, "pruning", results, report)
    else:
        print(report)
    return results


if __name__ == "__main__":
    main()
