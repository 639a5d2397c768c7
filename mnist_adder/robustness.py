"""How a model fares off MNIST's clean test images: each kind of damage a picture suffers on its way in,
and handwriting from another source, each read through the same preparation as predict.

    python -m mnist_adder.robustness          # the newest best checkpoint, into results/robustness.md
    python -m mnist_adder.robustness --checkpoint PATH --limit 500 --out robustness.md
    python -m mnist_adder.robustness --split val     # the damage on validation digits, to choose a recipe
    python -m mnist_adder.robustness --split val --temperatures 1 2 3   # what one temperature does for all
    python -m mnist_adder.robustness --split val --checkpoint A.ckpt B.ckpt   # two nets, answers averaged

For every set: the accuracy of the answer shown (a digit and its sum, which add up) and of each head
alone, how often the heads disagree, the expected calibration error before and after temperature scaling,
the share of mistakes made with more than 90 % confidence, how many answers are shown as sure
(`NOT_SURE_BELOW`) and how many of those are wrong, and the commonest confusions.

The other handwriting is the 1,797 digits of 8x8 pixels that scikit-learn ships (UCI's optical
recognition of handwritten digits: 43 writers, none of them MNIST's), enlarged to 128 px smoothly and with
blocky pixels, as files often are. Nothing in the project is chosen on them: they are held out. Needs the
robustness extra: pip install -e ".[robustness]".

`--split val` reads the 5,000 validation digits that training splits off (`data.eval_seed` 0) instead of
the test digits, damaged the same ways, and leaves out the other handwriting: the training recipes that
read other writers (`experiment=robust`) were chosen on its mean over the damage, into
results/robustness-val.md. Beside them it reads digits that no MNIST writer wrote, lettered in the fonts
installed (`mnist_adder.data.lettering`, all of them, whatever `--limit`), as files and stored as 8x8
bitmap counts: where a recipe meant for other writers is chosen now.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from datetime import datetime
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from mnist_adder import DATA_DIR, PROJECT_ROOT, UserError
from mnist_adder.data.damage import DAMAGE, pixels_of
from mnist_adder.data.datamodule import validation_digits
from mnist_adder.data.lettering import FONT_SETS, installed_fonts, lettered
from mnist_adder.data.mnist import fetch_mnist, load_mnist, normalise
from mnist_adder.models.checkpoints import load_nets, newest_checkpoint
from mnist_adder.models.nets import ECE_BINS, NOT_SURE_BELOW, AveragedNets, calibration_error, fit_temperature
from mnist_adder.models.scoring import (
    COLUMNS,
    CONFIDENT,
    other_handwriting,
    percent,
    prepared,
    score,
)
from mnist_adder.runs import app
from mnist_adder.runs.provenance import commit, hardware


def named(name: str, blank: int) -> str:
    return f"{name} ({blank} with no ink left)" if blank else name


def lettered_sets() -> dict[str, tuple[list[Image.Image], Tensor]]:
    """The digits lettered in each of `FONT_SETS` found installed, as files and stored as 8x8 bitmap
    counts enlarged with blocky pixels (the storage of the held-out handwriting)."""
    sets = {}
    for name, families in FONT_SETS.items():
        fonts = installed_fonts(families)
        if not fonts:
            continue
        pictures, digits = lettered(fonts)
        stored = [DAMAGE["8x8 bitmap counts, blocky"](255 - pixels_of(picture)) for picture in pictures]
        sets[f"{name} ({len(fonts)}), lettered, as files"] = (pictures, digits)
        sets[f"{name} ({len(fonts)}), lettered, 8x8 bitmap counts, blocky"] = (stored, digits)
    return sets


def temperatures_table(
    damaged: dict[str, tuple[Tensor, Tensor]],
    lettered: dict[str, tuple[Tensor, Tensor]],
    temperatures: list[float],
) -> list[str]:
    """What one temperature does for every set at once: for each of `temperatures`, for the one fit on the
    clean files and for the one fit on every set pooled, the ECE on the clean files, then over the damaged
    sets and over the lettered ones (`lettered_sets`, where the fonts are installed) the mean ECE and the
    mistakes made with more than 90 % confidence, all of them. A last row fits each set's own temperature:
    how few confident mistakes calibration alone can leave, were each kind of image known and calibrated.
    Each set: name -> ((N, 10) the answers' log-probabilities at temperature 1, `Scores.log_probs`; (N,)
    digits); `damaged` holds the clean files first."""
    answers = {**damaged, **lettered}
    (clean, *others) = damaged
    groups = {"damaged": others, "lettered": list(lettered)}
    pooled = (torch.cat([log_probs for log_probs, _ in answers.values()]),
              torch.cat([digits for _, digits in answers.values()]))  # fmt: skip
    own = {name: fit_temperature(*answers[name]) for name in answers}
    fitted = {"fit on the clean files": own[clean], "fit on every set": fit_temperature(*pooled)}

    def figures(name: str, temperature: float) -> tuple[float, int, int]:
        """One set's ECE, mistakes and confident mistakes at one temperature."""
        log_probs, digits = answers[name]
        probs = (log_probs / temperature).softmax(dim=1)
        confidence, answer = probs.max(dim=1)
        wrong = answer != digits
        return (
            calibration_error(probs, digits),
            int(wrong.sum()),
            int((wrong & (confidence > CONFIDENT)).sum()),
        )

    rows = []
    for label, temperature_of in [
        *((f"{t:g}", dict.fromkeys(answers, t)) for t in temperatures),
        *((f"{t:.3f} ({name})", dict.fromkeys(answers, t)) for name, t in fitted.items()),
        (f"each set's own, fit on it ({min(own.values()):.2f}–{max(own.values()):.2f})", own),
    ]:
        cells = [percent(figures(clean, temperature_of[clean])[0])]
        for names in groups.values():
            if not names:
                cells += ["-", "-"]
                continue
            eces, wrong, confident = zip(
                *(figures(name, temperature_of[name]) for name in names), strict=True
            )
            cells += [percent(sum(eces) / len(eces)), f"{sum(confident)} of {sum(wrong)}"]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return [
        "## One temperature for every set",
        "",
        f"The answers' ECE ({ECE_BINS} bins) at each temperature on the clean files, and over the "
        f"{len(groups['damaged'])} damaged sets and the {len(groups['lettered'])} lettered ones the mean ECE "
        "and how many of the mistakes come with more than 90 % confidence:",
        "",
        "| temperature | ECE, clean files | mean ECE, damaged | mistakes > 90 % sure, damaged "
        "| mean ECE, lettered | mistakes > 90 % sure, lettered |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def report(
    checkpoints: list[str], limit: int | None, split: str = "test", temperatures: list[float] | None = None
) -> str:
    """The Markdown report: a row per set, MNIST's clean images first. Several checkpoints are read as one
    model, their heads' probabilities averaged (`AveragedNets`)."""
    if split == "test" and importlib.util.find_spec("sklearn") is None:
        raise UserError('the other handwriting needs the robustness extra: pip install -e ".[robustness]"')
    net = load_nets(checkpoints)
    fetch_mnist(DATA_DIR)
    images, digits = load_mnist(DATA_DIR, train=False) if split == "test" else validation_digits()
    images, digits = images[:limit], digits[:limit]
    mnist = "MNIST test" if split == "test" else "MNIST validation"
    rows, damaged = [[f"{mnist}, as tensors", *score(net, normalise(images), digits).cells()]], []
    # name -> the answers' log-probabilities at temperature 1, and the digits: for `temperatures_table`
    damaged_answers, lettered_answers = {}, {}
    for name, damage in DAMAGE.items():
        prepared_images, blank = prepared(damage(image) for image in images)  # one large picture at a time
        figures = score(net, prepared_images, digits)
        damaged_answers[name] = figures.log_probs, digits
        rows.append([named(f"{mnist}, {name}, as a file", blank), *figures.cells()])
        damaged.append(figures.answer_acc)
    if split == "test":
        for name, (pictures, target) in other_handwriting(limit).items():
            prepared_images, blank = prepared(pictures)
            rows.append([named(name, blank), *score(net, prepared_images, target).cells()])
    lettering = []
    if split == "val":
        for name, (pictures, target) in lettered_sets().items():
            prepared_images, blank = prepared(pictures)
            figures = score(net, prepared_images, target)
            rows.append([named(name, blank), *figures.cells()])
            lettering.append(figures.answer_acc)
            lettered_answers[name] = figures.log_probs, target
    options = (f" --split {split}" if split != "test" else "") + (f" --limit {limit}" if limit else "")
    options += f" --temperatures {' '.join(f'{t:g}' for t in temperatures)}" if temperatures else ""
    command = "python -m mnist_adder.robustness" + options
    paths = [Path(checkpoint).resolve() for checkpoint in checkpoints]
    shown = " ".join(str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)
                     for path in paths)  # fmt: skip
    if isinstance(net, AveragedNets):
        each = ", ".join(f"{member.temperature:.3f}" for member in net.nets)
        which = (
            "the mean of" if math.isclose(net.temperature, net.mean_temperature) else "fit, not the mean of"
        )
        temperature = (f"the temperature {net.temperature:.3f} ({which} the {len(net.nets)} nets' own: "
                       f"{each}), their heads' probabilities averaged")  # fmt: skip
        if "thinned" in net.views:
            temperature += ", each net reading every image as given and with its strokes thinned"
    else:
        temperature = f"the checkpoint's temperature ({net.temperature:.3f})"
    lines = [
        f"# Off MNIST's clean {'test' if split == 'test' else 'validation'} images",
        "",
        f"`{command} --checkpoint {shown}`",
        f"({datetime.now():%Y-%m-%d}, commit {commit() or 'unknown'}, {hardware()}). Each image is paired",
        "with a random number (seed 0). The answer is the digit and sum that add up; each head's accuracy is",
        f"its own. ECE: {ECE_BINS} bins, before and after {temperature}.",
        f"Shown as sure: confidence at least {NOT_SURE_BELOW:g}. The damage is",
        "`mnist_adder/data/damage.py`'s; "
        + (
            "the other handwriting is held out (see the command's docstring)."
            if split == "test"
            else "these validation digits are where recipes are chosen (`experiment=robust`)."
        ),
        "",
        "| set | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (1 + len(COLUMNS)),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Mean answer accuracy over the {len(damaged)} sets read as files: "
        f"{100 * sum(damaged) / len(damaged):.2f} %.",
    ]
    if lettering:
        lines[-1] += (
            f" Over the {len(lettering)} lettered sets, digits no MNIST writer wrote "
            f"(`mnist_adder.data.lettering`): {100 * sum(lettering) / len(lettering):.2f} %."
        )
    if temperatures:
        lines += ["", *temperatures_table(damaged_answers, lettered_answers, temperatures)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_adder.robustness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        action="extend",  # --checkpoint A B and --checkpoint A --checkpoint B alike, as predict takes them
        help="a .ckpt file, or several to read as one model, their answers averaged; "
        "default: the newest best one under lightning_logs/",
    )
    parser.add_argument("--limit", type=int, help="the first LIMIT images of each set (default: all)")
    parser.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="MNIST's test digits and the other handwriting (default), or validation digits",
    )
    parser.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        help="also tabulate the ECE and confident mistakes at each of these temperatures",
    )
    parser.add_argument("--out", type=Path, help="default: results/robustness.md, or robustness-val.md")
    args = parser.parse_args(argv)
    out = args.out or PROJECT_ROOT / "results" / f"robustness{'-val' if args.split == 'val' else ''}.md"
    with app.user_errors():
        checkpoints = args.checkpoint or [str(newest_checkpoint())]
        text = report(checkpoints, args.limit, args.split, args.temperatures)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
