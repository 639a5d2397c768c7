"""How a model fares off MNIST's clean test images: each kind of damage a picture suffers on its way in,
and handwriting from another source, each read through the same preparation as predict.

    python -m mnist_adder.robustness          # the newest best checkpoint, into results/robustness.md
    python -m mnist_adder.robustness --checkpoint PATH --limit 500 --out robustness.md
    python -m mnist_adder.robustness --split val     # the damage on validation digits, to choose a recipe

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
results/robustness-val.md.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from mnist_adder import DATA_DIR, PROJECT_ROOT, UserError
from mnist_adder.data.damage import BICUBIC, DAMAGE, NEAREST, on_paper, resized
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.mnist import DIGIT_CLASSES, fetch_mnist, load_mnist, normalise
from mnist_adder.data.photos import ink_on_dark, to_mnist
from mnist_adder.models.checkpoints import load_net, newest_checkpoint
from mnist_adder.models.nets import ECE_BINS, NOT_SURE_BELOW, AdderNet, calibration_error
from mnist_adder.runs import app
from mnist_adder.runs.provenance import commit, hardware

CONFIDENT = 0.9  # a mistake made with more confidence than this is one a person would believe
COLUMNS = [
    "set", "images", "answer acc", "digit head", "sum head", "heads disagree", "ECE before", "ECE after",
    "mistakes > 90 % sure", "shown as sure", "wrong among sure", "commonest confusions (true → read)",
]  # fmt: skip


def other_handwriting(limit: int | None) -> dict[str, tuple[list[Image.Image], Tensor]]:
    """scikit-learn's 8x8 digits, ink bright in 17 levels, as 128-px pictures: smooth and blocky."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = torch.from_numpy(digits.images[:limit] * 255 / 16).round().to(torch.uint8)
    target = torch.from_numpy(digits.target[:limit])
    return {
        f"other handwriting, {name}": ([resized(on_paper(image), 128, resample) for image in ink], target)
        for name, resample in (("enlarged smoothly", BICUBIC), ("enlarged with blocky pixels", NEAREST))
    }


def scores(net: AdderNet, images: Tensor, digits: Tensor) -> tuple[list[str], float]:
    """The table's cells for (N, 1, 28, 28) normalised images of `digits`, each with a random number, and
    the answer's accuracy."""
    numbers = torch.randint(0, DIGIT_CLASSES, (len(digits),), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        parts = [net(images[i : i + 1000], numbers[i : i + 1000]) for i in range(0, len(images), 1000)]
    logits = tuple(torch.cat(part) for part in zip(*parts, strict=True))
    head_digit, head_sum = net.head_answers(*logits, numbers)
    log_probs = net.answer_log_probs(*logits, numbers, temperature=1.0)
    probs = (log_probs / net.temperature).softmax(dim=1)
    confidence, answer = probs.max(dim=1)
    wrong, sure = answer != digits, confidence >= NOT_SURE_BELOW

    def percent(share: Tensor | float) -> str:
        return f"{100 * float(share):.2f} %"

    accuracy = float((~wrong).float().mean())
    confusions = Counter(zip(digits[wrong].tolist(), answer[wrong].tolist(), strict=True)).most_common(3)
    cells = [
        f"{len(digits):,}",
        percent(accuracy),
        percent((head_digit == digits).float().mean()),
        percent((head_sum == digits + numbers).float().mean()),
        percent(net.heads_disagree(*logits, numbers).float().mean()),
        percent(calibration_error(log_probs.exp(), digits)),
        percent(calibration_error(probs, digits)),
        f"{int((wrong & (confidence > CONFIDENT)).sum())} of {int(wrong.sum())}",
        percent(sure.float().mean()),
        percent((wrong & sure).sum() / sure.sum().clamp(min=1)),
        ", ".join(f"{true} → {read} ({count})" for (true, read), count in confusions) or "none",
    ]
    return cells, accuracy


def prepared(pictures: Iterable[Image.Image]) -> tuple[Tensor, int]:
    """Pictures -> (N, 1, 28, 28) normalised, as predict prepares a file, and how many had no ink left
    (predict refuses those; here the net reads a blank field for each, and is scored on what it says)."""
    images, blank = [], 0
    for picture in pictures:
        try:
            images.append(torch.from_numpy(to_mnist(ink_on_dark(picture))))
        except UserError:  # the damage left no ink
            images.append(normalise(torch.zeros(28, 28, dtype=torch.uint8)))
            blank += 1
    return torch.stack(images), blank


def named(name: str, blank: int) -> str:
    return f"{name} ({blank} with no ink left)" if blank else name


def validation_digits() -> tuple[Tensor, Tensor]:
    """The validation split that training holds out of MNIST's training images: (N, 28, 28) uint8, (N,)."""
    datamodule = DigitPlusNumberDataModule(data_dir=DATA_DIR)
    datamodule.prepare_data()
    datamodule.setup("validate")
    return datamodule.val_set.images, datamodule.val_set.digits


def report(checkpoint: str, limit: int | None, split: str = "test") -> str:
    """The Markdown report: a row per set, MNIST's clean images first."""
    if split == "test" and importlib.util.find_spec("sklearn") is None:
        raise UserError('the other handwriting needs the robustness extra: pip install -e ".[robustness]"')
    net = load_net(checkpoint)
    fetch_mnist(DATA_DIR)
    images, digits = load_mnist(DATA_DIR, train=False) if split == "test" else validation_digits()
    images, digits = images[:limit], digits[:limit]
    mnist = "MNIST test" if split == "test" else "MNIST validation"
    cells, _ = scores(net, normalise(images), digits)
    rows, damaged = [[f"{mnist}, as tensors", *cells]], []
    for name, damage in DAMAGE.items():
        prepared_images, blank = prepared(damage(image) for image in images)  # one large picture at a time
        cells, accuracy = scores(net, prepared_images, digits)
        rows.append([named(f"{mnist}, {name}, as a file", blank), *cells])
        damaged.append(accuracy)
    if split == "test":
        for name, (pictures, target) in other_handwriting(limit).items():
            prepared_images, blank = prepared(pictures)
            cells, _ = scores(net, prepared_images, target)
            rows.append([named(name, blank), *cells])
    options = (f" --split {split}" if split != "test" else "") + (f" --limit {limit}" if limit else "")
    command = "python -m mnist_adder.robustness" + options
    path = Path(checkpoint).resolve()
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    lines = [
        f"# Off MNIST's clean {'test' if split == 'test' else 'validation'} images",
        "",
        f"`{command} --checkpoint {shown}`",
        f"({datetime.now():%Y-%m-%d}, commit {commit() or 'unknown'}, {hardware()}). Each image is paired",
        "with a random number (seed 0). The answer is the digit and sum that add up; each head's accuracy is",
        f"its own. ECE: {ECE_BINS} bins, before and after the checkpoint's temperature",
        f"({net.temperature:.3f}). Shown as sure: confidence at least {NOT_SURE_BELOW:g}. The damage is",
        "`mnist_adder/data/damage.py`'s; "
        + ("the other handwriting is held out (see the command's docstring)." if split == "test" else
           "these validation digits are where recipes are chosen (`experiment=robust`)."),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"Mean answer accuracy over the {len(damaged)} sets read as files: "
        f"{100 * sum(damaged) / len(damaged):.2f} %.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_adder.robustness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", help="a .ckpt file; default: the newest best one under lightning_logs/"
    )
    parser.add_argument("--limit", type=int, help="the first LIMIT images of each set (default: all)")
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="MNIST's test digits and the other handwriting (default), or validation digits")
    parser.add_argument("--out", type=Path, help="default: results/robustness.md, or robustness-val.md")
    args = parser.parse_args(argv)
    out = args.out or PROJECT_ROOT / "results" / f"robustness{'-val' if args.split == 'val' else ''}.md"
    with app.user_errors():
        text = report(args.checkpoint or str(newest_checkpoint()), args.limit, args.split)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
