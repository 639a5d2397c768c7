"""MNIST images paired with a number: samples (image, number, digit, sum) for the adder task.

from mnist_adder.data.pairing import PairedDigits
images, number, digit, total = PairedDigits(images, digits, seed=0)[[0, 1, 2]]   # a batch of three
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mnist_adder import UserError
from mnist_adder.data.mnist import DIGIT_CLASSES, check_images, normalise

# A batch of the image + number task: images (B, 1, 28, 28) float32, then numbers, digits and sums (B,) int64.
NumberBatch = tuple[Tensor, Tensor, Tensor, Tensor]


HOLDOUT_PRESETS = ("none", "diagonal", "random20")


def holdout_mask(pairs: str | Sequence[Sequence[int]] | None) -> Tensor:
    """(10, 10) bool, True at the (digit, number) pairs that training never shows.

    `pairs` is a preset: "none" (or None), "diagonal" (number == digit), "random20" (20 of the 100 pairs,
    always the same 20), or a list of [digit, number] pairs. Raises `UserError` for anything else.
    """
    mask = torch.zeros(DIGIT_CLASSES, DIGIT_CLASSES, dtype=torch.bool)
    if pairs is None or pairs == "none":
        return mask
    if pairs == "diagonal":
        return torch.eye(DIGIT_CLASSES, dtype=torch.bool)
    if pairs == "random20":
        chosen = torch.randperm(DIGIT_CLASSES**2, generator=torch.Generator().manual_seed(0))[:20]
        return mask.view(-1).index_fill(0, chosen, True).view(DIGIT_CLASSES, DIGIT_CLASSES)
    digits = range(DIGIT_CLASSES)
    if isinstance(pairs, str) or not all(
        isinstance(pair, Sequence) and len(pair) == 2 and all(type(x) is int and x in digits for x in pair)
        for pair in pairs
    ):
        raise UserError(
            f"data.holdout_pairs must be one of {', '.join(HOLDOUT_PRESETS)} or a list of [digit, number] "
            f"pairs in 0..9, got {pairs!r}"
        )
    for digit, number in pairs:
        mask[digit, number] = True
    if full := [digit for digit in digits if mask[digit].all()]:
        raise UserError(f"data.holdout_pairs holds out every number of digit {full[0]}: leave it one or more")
    return mask


def pair_numbers(seed: int, epoch: int, digits: Tensor, held_out: Tensor | None = None) -> Tensor:
    """The numbers (N,) int64 in 0..9 paired with the digits (N,): a pure function of (seed, epoch, digits).

    Each number is uniform over those allowed for its digit: all ten, or those not `held_out[digit]`.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if held_out is None or not held_out.any():
        return torch.randint(0, DIGIT_CLASSES, (len(digits),), generator=generator)
    allowed = ~held_out
    by_digit = allowed.int().argsort(dim=1, descending=True, stable=True)  # row d: d's allowed numbers first
    rank = torch.rand(len(digits), generator=generator) * allowed.sum(dim=1)[digits]
    return by_digit[digits, rank.long()]


class PairedDigits(Dataset):
    """MNIST images, each paired with a number in 0..9.

    A sample is `(image, number, digit, total)`: image (1, 28, 28) float32 normalised, number, digit and
    total = digit + number int64 scalars. The number of sample i is `pair_numbers(...)[i]`, so it depends
    on (seed, epoch, index) only: not on workers, batch order or device count. It is never one that
    `held_out` (see `holdout_mask`) marks for the sample's digit. For a training set, `EpochSampler`
    calls `set_epoch` every epoch to draw fresh pairs; an evaluation set stays at epoch 0, the same pairs
    every run.

    Indexing with a list of indices returns a whole batch at once (`__getitems__`), so the DataLoader does
    no per-sample work; give it `collate_fn=keep_batch`.
    """

    def __init__(self, images: Tensor, digits: Tensor, seed: int, held_out: Tensor | None = None) -> None:
        check_images(images)
        self.images, self.digits, self.seed, self.held_out = images, digits.long(), seed, held_out
        self._cpu_digits = self.digits.cpu()  # numbers are drawn on the CPU, then kept where the images are
        # Shared memory, so that worker processes, persistent ones included, see the epoch change.
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()
        self._numbers_epoch, self._numbers = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.digits)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def numbers(self) -> Tensor:
        """The numbers (N,) paired with every sample in the current epoch."""
        epoch = int(self._epoch)
        if epoch != self._numbers_epoch:
            numbers = pair_numbers(self.seed, epoch, self._cpu_digits, self.held_out)
            self._numbers_epoch, self._numbers = epoch, numbers.to(self.digits.device)
        return self._numbers

    def __getitems__(self, indices: Sequence[int]) -> NumberBatch:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.digits.device)
        images = normalise(self.images[index])
        numbers, digits = self.numbers()[index], self.digits[index]
        return images, numbers, digits, digits + numbers

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        image, number, digit, total = self.__getitems__([index])
        return image[0], number[0], digit[0], total[0]


def keep_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Collate for `PairedDigits`: its `__getitems__` already returns a batch."""
    return batch
