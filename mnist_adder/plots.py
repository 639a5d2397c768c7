"""Figures for people: training curves from runs' TensorBoard events, and a trained model's answers.

    python -m mnist_adder.plots curves RUN_DIR [RUN_DIR ...] --out results/curves.png
    python -m mnist_adder.plots samples CHECKPOINT --out results/samples.png
    python -m mnist_adder.plots calibration CHECKPOINT --out results/calibration.png

`curves` draws validation digit and sum accuracy per epoch, one line per run, read with TensorBoard's
own event reader. `samples` shows test images with their number, the predicted digit and sum, and the
model's most confident mistakes. `calibration` draws the reliability diagram of the answers' confidence
on the test images, before and after temperature scaling, and writes beside it (as .md) the expected
calibration errors and the risk-coverage table: how many answers are shown as sure, and how many of those
are wrong, at each threshold, on the validation and the test images.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD
from mnist_adder.models.checkpoints import load_net, read_checkpoint
from mnist_adder.models.nets import ECE_BINS, NOT_SURE_BELOW, AdderNet, calibration_error
from mnist_adder.runs import app
from mnist_adder.runs.provenance import commit, hardware

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


THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
TARGET_RISK = 0.001  # "not sure" below the lowest threshold whose sure answers on validation are this right


def answers_of(net: AdderNet, dataset: torch.utils.data.Dataset) -> tuple[Tensor, Tensor]:
    """(N, 10) log-probabilities of the answers at temperature 1, and the (N,) true digits, of a split."""
    images, numbers, digits, _ = dataset.__getitems__(range(len(dataset)))
    parts = []
    with torch.inference_mode():
        for start in range(0, len(images), 1000):
            image, number = images[start : start + 1000], numbers[start : start + 1000]
            parts.append(net.answer_log_probs(*net(image, number), number, temperature=1.0))
    return torch.cat(parts), digits


def risk_coverage(probs: Tensor, digits: Tensor) -> list[tuple[float, float]]:
    """At each of `THRESHOLDS`: the share of answers at least that likely (shown as sure), and the share of
    those that are wrong."""
    confidence, answer = probs.max(dim=1)
    rows = []
    for threshold in THRESHOLDS:
        sure = confidence >= threshold
        wrong = (answer[sure] != digits[sure]).float().mean().nan_to_num()
        rows.append((sure.float().mean().item(), wrong.item()))
    return rows


def reliability_figure(probs: dict[str, Tensor], digits: Tensor) -> plt.Figure:
    """One reliability diagram per named (N, 10) probabilities: accuracy against confidence, in bins."""
    figure, axes = plt.subplots(1, len(probs), figsize=(5 * len(probs), 4.4), sharey=True, squeeze=False)
    edges = torch.linspace(0, 1, ECE_BINS + 1)
    for ax, (name, p) in zip(axes.flat, probs.items(), strict=True):
        confidence, answer = p.max(dim=1)
        right = (answer == digits).float()
        which = torch.bucketize(confidence, edges[1:-1])
        for b, left in enumerate(edges[:-1].tolist()):
            inside = which == b
            if inside.any():
                ax.bar(left, right[inside].mean().item(), 1 / ECE_BINS, align="edge", color="C0", ec="k")
                ax.text(left + 0.5 / ECE_BINS, 0.02, int(inside.sum()), ha="center", fontsize=7, rotation=90)
        ax.plot([0, 1], [0, 1], "--", color="gray")
        ax.set_title(f"{name}: ECE {100 * calibration_error(p, digits):.2f} %", fontsize=10)
        ax.set_xlabel("confidence of the answer (images per bin at its foot)")
    axes.flat[0].set_ylabel("accuracy of the answers")
    figure.suptitle(f"Reliability on {len(digits):,} test images", fontsize=11)
    figure.tight_layout()
    return figure


def calibration_report(checkpoint: str, data_dir: Path) -> tuple[plt.Figure, str]:
    """The reliability diagrams on the test images, before and after temperature scaling, and a Markdown
    report: ECE and the risk-coverage table on validation and test, and the threshold validation picks."""
    net = load_net(checkpoint)
    settings = read_checkpoint(checkpoint).get("datamodule_hyper_parameters", {})
    datamodule = DigitPlusNumberDataModule(**{**settings, "data_dir": str(data_dir)})
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    splits = {"validation": answers_of(net, datamodule.val_set), "test": answers_of(net, datamodule.test_set)}
    temperatures = {"before (T = 1)": 1.0, f"after (T = {net.temperature:.3f})": net.temperature}
    log_probs, digits = splits["test"]
    scaled = {name: (log_probs / t).softmax(dim=1) for name, t in temperatures.items()}
    figure = reliability_figure(scaled, digits)

    lines = [
        "# Calibration of the answers' confidence",
        "",
        f"`python -m mnist_adder.plots calibration {checkpoint}` ({datetime.now():%Y-%m-%d}, commit",
        f"{commit() or 'unknown'}, {hardware()}). The answer is the most likely digit and sum that add up;",
        "its confidence, the probability shown, is divided by a temperature T fit on the validation images",
        f"(Guo et al. 2017), which changes no answer. Expected calibration error, {ECE_BINS} bins:",
        "",
        "| images | answer accuracy | ECE before (T = 1) | ECE after |",
        "|---|---|---|---|",
    ]
    tables = {}
    for split, (log_probs, digits) in splits.items():
        accuracy = (log_probs.argmax(dim=1) == digits).float().mean()
        before, after = (calibration_error((log_probs / t).softmax(1), digits) for t in temperatures.values())
        cells = [f"{100 * accuracy:.2f} %", f"{100 * before:.3f} %", f"{100 * after:.3f} %"]
        lines.append(f"| {split}, {len(digits):,} | {' | '.join(cells)} |")
        tables[split] = risk_coverage((log_probs / net.temperature).softmax(dim=1), digits)
    safe = [t for t, (_, risk) in zip(THRESHOLDS, tables["validation"], strict=True) if risk <= TARGET_RISK]
    lines += [
        "",
        'An answer less likely than a threshold is shown as "not sure", with the next likeliest reading.',
        f"On validation, the lowest threshold whose sure answers are wrong at most {100 * TARGET_RISK:g} %",
        f"of the time is {safe[0] if safe else 'none of these'}; predict and the demo use `NOT_SURE_BELOW` =",
        f"{NOT_SURE_BELOW:g} (`mnist_adder/models/nets.py`).",
        "",
        "| not sure below | validation: sure | wrong among them | test: sure | wrong among them |",
        "|---|---|---|---|---|",
    ]
    for threshold, val, test in zip(THRESHOLDS, tables["validation"], tables["test"], strict=True):
        cells = [f"{100 * cover:.2f} % | {100 * risk:.3f} %" for cover, risk in (val, test)]
        lines.append(f"| {threshold:g} | {' | '.join(cells)} |")
    return figure, "\n".join(lines) + "\n"


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
    calibration = figures.add_parser("calibration", help="reliability and risk-coverage of a model's answers")
    calibration.add_argument("checkpoint", help="a .ckpt file written by mnist_adder.train")
    calibration.add_argument("--out", type=Path, default=PROJECT_ROOT / "results" / "calibration.png",
                             help="the diagram; its report goes beside it, as .md")  # fmt: skip
    calibration.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / "data")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only, no window
    with app.user_errors():
        if args.figure == "curves":
            if missing := [str(run) for run in args.runs if not run.is_dir()]:
                raise UserError(f"not a folder: {', '.join(missing)}: give run folders under lightning_logs/")
            figure = curves_figure(args.runs)
        elif args.figure == "samples":
            figure = samples_figure(args.checkpoint, args.data_dir)
        else:
            figure, report = calibration_report(args.checkpoint, args.data_dir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=110)
        print(f"wrote {args.out}")
        if args.figure == "calibration":
            args.out.with_suffix(".md").write_text(report)
            print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
