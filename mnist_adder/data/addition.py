"""The MNIST-addition benchmark's data: two N-digit numbers, each written as N MNIST images, and their sum.

The protocol of DeepProbLog, DeepStochLog, NeurASP, A-NeSI and ABL: the images of a split are shuffled
once and cut into consecutive groups of 2N; each group is one sample, the first N images the number a
(most significant digit first), the last N the number b, and only a + b is the label. So every training
image is used once per epoch (60,000 images -> 60,000 // 2N sums), and the test sums are made from the
10k test images the same way.

    from mnist_adder.data.addition import MNISTAdditionDataModule
    dm = MNISTAdditionDataModule(num_digits=2); dm.prepare_data(); dm.setup("fit")
    images, digits, total = next(iter(dm.train_dataloader()))   # (B, 4, 1, 28, 28), (B, 4), (B,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mnist_adder import DATA_DIR, FROM_RECIPE, UserError, with_recipe
from mnist_adder.data.carry import add
from mnist_adder.data.datamodule import MNISTDataModule
from mnist_adder.data.mnist import check_images, normalise

# A batch of MNIST addition: images (B, 2N, 1, 28, 28) float32, their digits (B, 2N) and the digits of the
# sums (B, N + 1) int64, most significant first (a sum of 100-digit numbers does not fit in an int64).
AdditionBatch = tuple[Tensor, Tensor, Tensor]


class AdditionSums(Dataset):
    """Sums of two `num_digits`-digit numbers written in MNIST images, grouped once by `seed`.

    A sample is `(images, digits, total)`: images (2N, 1, 28, 28) float32 normalised, a's digits then b's,
    each most significant first; their digits (2N,) int64, for scoring at test time only; and the digits
    of total = a + b, (N + 1,) int64, the only label training reads. Images left over (fewer than 2N) are
    unused.
    Indexing with a list of indices returns a whole batch (`__getitems__`), as `PairedDigits` does.
    """

    def __init__(self, images: Tensor, digits: Tensor, num_digits: int, seed: int) -> None:
        check_images(images)
        self.images = images
        order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed)).to(digits.device)
        self.groups = order[: len(order) // (2 * num_digits) * 2 * num_digits].view(-1, 2 * num_digits)
        self.digits = digits.long()[self.groups]  # (samples, 2N)
        self.totals = add(self.digits[:, :num_digits], self.digits[:, num_digits:])  # (samples, N + 1)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitems__(self, indices: Sequence[int]) -> AdditionBatch:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.groups.device)
        return normalise(self.images[self.groups[index]]), self.digits[index], self.totals[index]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        images, digits, total = self.__getitems__([index])
        return images[0], digits[0], total[0]


class MNISTAdditionDataModule(MNISTDataModule):
    """MNIST addition with `num_digits`-digit numbers, the field's protocol (see the module doc).

    `batch_size` counts images, as for the adder task, so that every N takes the same number of steps per
    epoch: a batch holds batch_size // 2N sums (at least one). `val_size` images may be split off the
    training images for validation; the benchmark's protocol trains on all 60k (`val_size: 0`) and tests
    the last epoch. Training sums are grouped once from `seed`, validation and test sums from `eval_seed`.
    An argument left out takes its value from `data=mnist_addition` (conf/data/mnist_addition.yaml).
    """

    def __init__(
        self,
        num_digits: int = FROM_RECIPE,
        data_dir: str = DATA_DIR,
        batch_size: int = FROM_RECIPE,
        num_workers: int = FROM_RECIPE,
        val_size: int = FROM_RECIPE,
        seed: int = 0,
        eval_seed: int = FROM_RECIPE,
        augment: dict[str, float] | None = FROM_RECIPE,
        degrade: dict[str, Any] | None = FROM_RECIPE,
        on_device: bool = False,
    ) -> None:
        settings = with_recipe("data/mnist_addition", locals())
        if type(settings["num_digits"]) is not int or settings["num_digits"] < 1:
            raise UserError(f"data.num_digits must be a positive integer, got {settings['num_digits']!r}")
        super().__init__(settings)

    @property
    def batch_samples(self) -> int:
        return max(1, self.hparams.batch_size // (2 * self.hparams.num_digits))

    def make_dataset(self, images: Tensor, digits: Tensor, split: str) -> AdditionSums:
        seed = self.hparams.seed if split == "train" else self.hparams.eval_seed
        sums = AdditionSums(images, digits, self.hparams.num_digits, seed)
        if len(digits) and not len(sums):
            raise UserError(
                f"data.num_digits={self.hparams.num_digits} makes no sum of the {len(digits)} {split} "
                f"images: each sum reads {2 * self.hparams.num_digits}"
            )
        return sums
