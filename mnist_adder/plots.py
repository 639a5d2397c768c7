"""Figures for people: training curves from runs' TensorBoard events, and a trained model's answers.

    python -m mnist_adder.plots curves RUN_DIR [RUN_DIR ...] --out results/curves.png
    python -m mnist_adder.plots samples CHECKPOINT --out results/samples.png

`curves` draws validation digit and sum accuracy per epoch, one line per run, read with TensorBoard's
own event reader. `samples` shows test images with their number, the predicted digit and sum, and the
model's most confident mistakes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD
from mnist_adder.models.checkpoints import load_net
from mnist_adder.runs import app

CURVES = ("val/digit_acc", "val/sum_acc")


def read_curves(run_dir: Path) -> dict[str, list[float]]:
    """Each of `CURVES` per epoch, as logged by the run in `run_dir`."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    return {tag: [event.value for event in events.Scalars(tag)] for tag in CURVES if tag in tags}


def run_label(run_dir: Path) -> str:
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else None
    kept = [o for o in overrides or [] if not o.startswith(("paths.", "ckpt_path=", "hydra."))]
    return " ".join(kept) or run_dir.name


def curves_figure(run_dirs: list[Path]) -> plt.Figure:
    """Validation digit and sum accuracy (%) per epoch, a panel each, a line per run."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run_dir in run_dirs:
        curves = read_curves(run_dir)
        if not curves:
            raise UserError(
                f"{run_dir} has no TensorBoard events with {', '.join(CURVES)}: give a run folder"
            )
        for ax, tag in zip(axes, CURVES, strict=True):
            values = [100 * value for value in curves.get(tag, [])]
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=run_label(run_dir))
    for ax, tag in zip(axes, CURVES, strict=True):
        ax.set_title(tag)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy %")
    axes[0].set_ylim(bottom=max(0, axes[0].get_ylim()[0]))
    axes[1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def samples_figure(checkpoint: str, data_dir: Path, shown: int = 12, mistakes: int = 4) -> plt.Figure:
    """The first `shown` test pairs and the `mistakes` most confident wrong sums, titled with the model's
    answers (wrong ones in red)."""
    net = load_net(checkpoint)
    datamodule = DigitPlusNumberDataModule(data_dir=str(data_dir))
    datamodule.prepare_data()
    datamodule.setup("test")
    images, numbers, digits, sums = datamodule.test_set.__getitems__(range(len(datamodule.test_set)))
    digit_probs, sum_probs = [], []
    for start in range(0, len(images), 1000):
        part = slice(start, start + 1000)
        probs = net.probabilities(images[part], numbers[part])
        digit_probs.append(probs[0])
        sum_probs.append(probs[1])
    digit_pred = torch.cat(digit_probs).argmax(dim=1)
    sum_probs = torch.cat(sum_probs)
    sum_pred = sum_probs.argmax(dim=1)
    wrong = (sum_pred != sums).nonzero().flatten()
    worst = wrong[sum_probs[wrong].max(dim=1).values.argsort(descending=True)][:mistakes]
    chosen = list(range(shown)) + worst.tolist()

    columns = 8
    rows = -(-len(chosen) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, chosen, strict=False):
        ax.imshow((images[i, 0] * MNIST_STD + MNIST_MEAN).numpy(), cmap="gray_r")
        right = bool(sum_pred[i] == sums[i])
        title = f"{int(digits[i])} + {int(numbers[i])}\nsaid {int(digit_pred[i])}, sum {int(sum_pred[i])}"
        ax.set_title(title, fontsize=9, color="black" if right else "red")
    figure.suptitle(
        f"Test pairs and the model's answers; the last {len(worst)}: its most confident mistakes "
        f"({len(wrong)} of {len(sums):,} sums wrong)",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    figures = parser.add_subparsers(dest="figure", required=True)
    curves = figures.add_parser("curves", help="validation accuracy per epoch of some runs")
    curves.add_argument("runs", nargs="+", type=Path, help="run folders (each holds its TensorBoard events)")
    curves.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "curves.png")
    samples = figures.add_parser("samples", help="a model's answers on test pairs")
    samples.add_argument("checkpoint", help="a .ckpt file written by mnist_adder.train")
    samples.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "samples.png")
    samples.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only, no window
    with app.user_errors():
        if args.figure == "curves":
            if missing := [str(run) for run in args.runs if not run.is_dir()]:
                raise UserError(f"not a folder: {', '.join(missing)}: give run folders under lightning_logs/")
            figure = curves_figure(args.runs)
        else:
            figure = samples_figure(args.checkpoint, args.data_dir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
