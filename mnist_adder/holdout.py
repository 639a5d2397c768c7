"""The held-out-pairs study: does a sum head add, or memorise the table? A table and a heat map.

    python -m mnist_adder.train -m experiment=holdout data.holdout_pairs=diagonal,random20 \\
        model/sum_head=learned,learned_probs,exact seed=1,2,3
    python -m mnist_adder.holdout lightning_logs/multirun/<that folder> [--out results/holdout]

Runs that differ only in their seed share a row. Writes into --out:
- holdout.md: test accuracy on seen and on unseen (held-out) pairs, mean ± std over seeds;
- holdout.png: test sum accuracy per (digit, number), the mean over seeds, held-out cells outlined.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.mnist import DIGIT_CLASSES
from mnist_adder.data.pairing import PairedDigits
from mnist_adder.models.checkpoints import load_module, newest_checkpoint
from mnist_adder.runs.tables import markdown_table, mean_std, metrics_of, run_groups

COLUMNS = [  # header, metrics.json key
    ("sum, seen pairs %", "test/sum_acc_seen"),
    ("sum, unseen pairs %", "test/sum_acc_unseen"),
    ("digit, seen pairs %", "test/digit_acc_seen"),
    ("digit, unseen pairs %", "test/digit_acc_unseen"),
]


def cell_accuracy(predicted_sum: Tensor, number: Tensor, digit: Tensor) -> Tensor:
    """(10, 10) sum accuracy per (digit, number) of the predicted sums of (image, number) samples."""
    cell = digit * DIGIT_CLASSES + number
    hits = (predicted_sum == digit + number).double()
    hits = torch.bincount(cell, weights=hits, minlength=DIGIT_CLASSES**2)
    counts = torch.bincount(cell, minlength=DIGIT_CLASSES**2)
    return (hits / counts).view(DIGIT_CLASSES, DIGIT_CLASSES)


def head_name(spec: dict) -> str:
    """The name shown for a sum head's Hydra spec, e.g. "LearnedSumHead (probs)", "ShiftSumHead (frozen)"."""
    name = spec["_target_"].rsplit(".", 1)[1]
    if "digit_input" in spec:
        name += f" ({spec['digit_input']})"
    return name + (" (frozen)" if spec.get("trainable") is False else "")


def study(runs: list[Path], test_set: PairedDigits) -> tuple[str, str, Tensor, Tensor, list[str]]:
    """Runs that differ only in their seed -> (holdout preset, sum head name, held-out mask, mean test sum
    accuracy per (digit, number), table cells), from their best checkpoints and metrics.json."""
    models = [load_module(newest_checkpoint(run)).eval() for run in runs]
    image, number, digit, _ = test_set.__getitems__(range(len(test_set)))
    with torch.no_grad():  # the sum head's own answer: does it add, or recall the pairs it saw?
        sums = [model.net.head_answers(*model(image, number), number)[1] for model in models]
    accuracy = torch.stack([cell_accuracy(total, number, digit) for total in sums])
    preset, head = str(models[0].hparams.get("holdout_pairs", "none")), head_name(models[0].hparams.sum_head)
    metrics = [metrics_of(run) for run in runs]
    cells = [preset, head, str(len(runs)), *(mean_std(metrics, key, scale=100) for _, key in COLUMNS)]
    return preset, head, models[0].held_out, accuracy.mean(dim=0), cells


def heat_maps(rows: list[tuple[str, str, Tensor, Tensor]]) -> Figure:
    """One 10x10 map per (preset, head, held_out, accuracy) row, held-out cells outlined in red."""
    presets = sorted({row[0] for row in rows})
    heads = sorted({row[1] for row in rows})
    figure = Figure(figsize=(4.2 * len(heads), 4.4 * len(presets)), layout="constrained")
    axes = figure.subplots(len(presets), len(heads), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for preset, head, held_out, accuracy in rows:
        ax = axes[presets.index(preset), heads.index(head)]
        ax.set_visible(True)
        image = ax.imshow(100 * accuracy, vmin=0, vmax=100, cmap="viridis")
        for digit in range(DIGIT_CLASSES):
            for number in range(DIGIT_CLASSES):
                value = 100 * float(accuracy[digit, number])
                color = "white" if value < 60 else "black"
                ax.text(number, digit, f"{value:.0f}", ha="center", va="center", fontsize=6, color=color)
                if held_out[digit, number]:
                    ax.add_patch(Rectangle((number - 0.5, digit - 0.5), 1, 1, fill=False, color="red", lw=2))
        ax.set(title=f"{preset}: {head}", xlabel="number", ylabel="digit", xticks=range(10), yticks=range(10))
    figure.colorbar(image, ax=axes, shrink=0.6, label="test sum accuracy %, mean over seeds")
    return figure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="+", type=Path, help="run or multirun folders to search")
    parser.add_argument(
        "--out",
        type=Path,
        default=PROJECT_ROOT / "results" / "holdout",
        help="folder for holdout.md and holdout.png (default results/holdout)",
    )
    args = parser.parse_args(argv)
    datamodule = DigitPlusNumberDataModule(data_dir=str(PROJECT_ROOT / "data"))
    try:
        groups = run_groups(args.folders)
        datamodule.prepare_data()
        datamodule.setup("test")
        rows = sorted((study(runs, datamodule.test_set) for runs in groups.values()), key=lambda r: r[:2])
    except UserError as error:
        sys.exit(f"error: {error}")
    if not (rows := [row for row in rows if row[2].any()]):
        sys.exit(
            "error: none of those runs held pairs out: train with data.holdout_pairs=diagonal or random20"
        )
    header = ["held out", "sum head", "seeds", *(column[0] for column in COLUMNS)]
    table = markdown_table(header, [row[-1] for row in rows])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "holdout.md").write_text(table)
    heat_maps([row[:4] for row in rows]).savefig(args.out / "holdout.png", dpi=110, bbox_inches="tight")
    print(table + f"\nwrote {args.out / 'holdout.md'} and {args.out / 'holdout.png'}")


if __name__ == "__main__":
    main()
