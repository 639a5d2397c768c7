"""How a trained net fares on a set of images, in the figures a person can act on: the answer's accuracy,
each head's, how often the heads disagree, calibration, confident mistakes and the answers shown as sure.
`python -m mnist_adder.robustness` tabulates them over damaged and foreign digits; the model card
(`mnist_adder.models.card`) quotes them.

    from mnist_adder.models.scoring import score
    figures = score(net, images, digits)     # (N, 1, 28, 28) normalised, (N,) int64 -> Scores
    figures.answer_acc, figures.cells()
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mnist_adder import UserError
from mnist_adder.data.damage import BICUBIC, NEAREST, on_paper, resized
from mnist_adder.data.mnist import DIGIT_CLASSES, normalise
from mnist_adder.data.photos import ink_on_dark, to_mnist
from mnist_adder.models.nets import NOT_SURE_BELOW, AdderNet, AveragedNets, calibration_error

CONFIDENT = 0.9  # a mistake made with more confidence than this is one a person would believe
COLUMNS = [
    "images", "answer acc", "digit head", "sum head", "heads disagree", "ECE before", "ECE after",
    "mistakes > 90 % sure", "shown as sure", "wrong among sure", "commonest confusions (true → read)",
]  # fmt: skip


@dataclass
class Scores:
    """A net's figures on one set; shares in [0, 1]."""

    images: int
    answer_acc: float
    digit_head: float
    sum_head: float
    heads_disagree: float
    ece_before: float  # at temperature 1
    ece_after: float  # at the net's temperature
    mistakes: int
    confident_mistakes: int  # of them, made with more than `CONFIDENT` confidence
    sure: float  # the share of answers shown as sure (`NOT_SURE_BELOW`)
    wrong_among_sure: float
    confusions: list[tuple[tuple[int, int], int]]  # the commonest ((true, read), count)
    log_probs: Tensor = field(repr=False)  # (N, 10): the answers' at temperature 1, for other temperatures

    def cells(self) -> list[str]:
        """The row of `COLUMNS`."""
        shares = (self.answer_acc, self.digit_head, self.sum_head, self.heads_disagree, self.ece_before,
                  self.ece_after)  # fmt: skip
        return [
            f"{self.images:,}",
            *(percent(share) for share in shares),
            f"{self.confident_mistakes} of {self.mistakes}",
            percent(self.sure),
            percent(self.wrong_among_sure),
            ", ".join(f"{true} → {read} ({count})" for (true, read), count in self.confusions) or "none",
        ]


def percent(share: float) -> str:
    return f"{100 * share:.2f} %"


def numbers_for(count: int) -> Tensor:
    """The numbers the images of a set are paired with: random in 0..9, seed 0."""
    return torch.randint(0, DIGIT_CLASSES, (count,), generator=torch.Generator().manual_seed(0))


def logits_of(net: AdderNet, images: Tensor, numbers: Tensor) -> tuple[Tensor, Tensor]:
    with torch.inference_mode():
        parts = [net(images[i : i + 1000], numbers[i : i + 1000]) for i in range(0, len(images), 1000)]
    digit_logits, sum_logits = (torch.cat(part) for part in zip(*parts, strict=True))
    return digit_logits, sum_logits


def score(net: AdderNet | Sequence[AdderNet], images: Tensor, digits: Tensor) -> Scores:
    """The figures of (N, 1, 28, 28) normalised images of `digits`, each paired with a random number. Several
    nets are read as one model, their heads' probabilities averaged (`AveragedNets`)."""
    net = net if isinstance(net, AdderNet) else AveragedNets(list(net))
    numbers = numbers_for(len(digits))
    logits = logits_of(net, images, numbers)
    head_digit, head_sum = net.head_answers(*logits, numbers)
    log_probs = net.answer_log_probs(*logits, numbers, temperature=1.0)
    probs = (log_probs / net.temperature).softmax(dim=1)
    confidence, answer = probs.max(dim=1)
    wrong, sure = answer != digits, confidence >= NOT_SURE_BELOW
    return Scores(
        images=len(digits),
        answer_acc=float((~wrong).float().mean()),
        digit_head=float((head_digit == digits).float().mean()),
        sum_head=float((head_sum == digits + numbers).float().mean()),
        heads_disagree=float(net.heads_disagree(*logits, numbers).float().mean()),
        ece_before=calibration_error(log_probs.exp(), digits),
        ece_after=calibration_error(probs, digits),
        mistakes=int(wrong.sum()),
        confident_mistakes=int((wrong & (confidence > CONFIDENT)).sum()),
        sure=float(sure.float().mean()),
        wrong_among_sure=float((wrong & sure).sum() / sure.sum().clamp(min=1)),
        confusions=Counter(zip(digits[wrong].tolist(), answer[wrong].tolist(), strict=True)).most_common(3),
        log_probs=log_probs,
    )


def sure_share(net: AdderNet, images: Tensor) -> float:
    """The share of (N, 1, 28, 28) images, each paired with a random number, answered as sure: for images
    that hold no digit, where every sure answer is a wrong one."""
    numbers = numbers_for(len(images))
    confidence = net.answer_log_probs(*logits_of(net, images, numbers), numbers).exp().amax(dim=1)
    return float((confidence >= NOT_SURE_BELOW).float().mean())


def prepared(pictures: Iterable[Image.Image]) -> tuple[Tensor, int]:
    """Pictures -> (N, 1, 28, 28) normalised, as predict prepares a file, and how many had no ink left
    (predict refuses those; here the net reads a blank field for each, and is scored on what it says)."""
    images, blank = [], 0
    for picture in pictures:
        try:
            images.append(to_mnist(ink_on_dark(picture)))
        except UserError:  # the damage left no ink
            images.append(normalise(torch.zeros(28, 28, dtype=torch.uint8)).numpy())
            blank += 1
    return torch.from_numpy(np.stack(images)), blank


def other_handwriting(limit: int | None = None) -> dict[str, tuple[list[Image.Image], Tensor]]:
    """scikit-learn's 8x8 digits (the robustness extra), ink bright in 17 levels, as 128-px pictures:
    smooth and blocky."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = torch.from_numpy(digits.images[:limit] * 255 / 16).round().to(torch.uint8)
    target = torch.from_numpy(digits.target[:limit])
    return {
        f"other handwriting, {name}": ([resized(on_paper(image), 128, resample) for image in ink], target)
        for name, resample in (("enlarged smoothly", BICUBIC), ("enlarged with blocky pixels", NEAREST))
    }
