"""The LightningModule of the MNIST-addition benchmark: one backbone reads every image, and the loss is
the exact likelihood of the observed sum (`mnist_adder.data.carry`). No digit label is read in training.

    python -m mnist_adder.train experiment=mnist_addition                       # N = 1
    python -m mnist_adder.train experiment=mnist_addition data.num_digits=15    # two 15-digit numbers
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mnist_adder import FROM_RECIPE, with_recipe
from mnist_adder.data.addition import AdditionBatch
from mnist_adder.data.carry import add, most_likely_sum, sum_log_likelihood
from mnist_adder.data.mnist import IMAGE_SHAPE
from mnist_adder.models.module import TaskModule, stage_metrics
from mnist_adder.models.nets import ShiftAverage, build


class MNISTAdditionModule(TaskModule):
    """Learns digits from sums alone: (B, 2N, 1, 28, 28) images of two N-digit numbers -> digit logits.

    loss = -log P(a + b = total), exact, with the digit distributions the backbone reads (see
    `mnist_adder.data.carry.sum_log_likelihood`). `sum_acc` scores the sum of the most likely digits, the
    field's prediction; in validation and test `most_likely_sum_acc` scores the most likely sum
    (`mnist_adder.data.carry.most_likely_sum`). `digit_acc` scores every image's most likely digit against the
    hidden labels, at test time only. N comes from the batch, so one model reads numbers of any length.

    An argument left out takes its value from `model=mnist_addition` (conf/model/mnist_addition.yaml).

    Args:
        backbone, optimizer, scheduler, compile, test_time_shifts: as for
            `mnist_adder.models.module.DigitPlusNumberModule`, a built backbone included.
    """

    datamodule_target = "mnist_adder.data.addition.MNISTAdditionDataModule"
    data_config = "mnist_addition"

    def __init__(
        self,
        backbone: dict[str, Any] | nn.Module = FROM_RECIPE,
        optimizer: dict[str, Any] | None = FROM_RECIPE,
        scheduler: dict[str, Any] | None = FROM_RECIPE,
        compile: bool = FROM_RECIPE,
        test_time_shifts: int = FROM_RECIPE,
    ) -> None:
        super().__init__()
        settings = with_recipe("model/mnist_addition", locals())
        kept = {name: value for name, value in settings.items() if not isinstance(value, nn.Module)}
        self.save_hyperparameters(kept)  # a built backbone is not a plain value: see DigitPlusNumberModule
        backbone = build(settings["backbone"])
        self.net = ShiftAverage(backbone, settings["test_time_shifts"]).to(memory_format=torch.channels_last)
        self.train_metrics = stage_metrics(["loss"], ["sum_acc"], evaluation=False)
        self.val_metrics = stage_metrics(["loss"], ["sum_acc", "most_likely_sum_acc"], evaluation=True)
        self.test_metrics = stage_metrics(
            ["loss"], ["sum_acc", "most_likely_sum_acc", "digit_acc"], evaluation=True
        )
        self.example_input_array = (torch.zeros(1, 2, *IMAGE_SHAPE),)  # one sum of two 1-digit numbers

    def forward(self, images: Tensor) -> Tensor:
        """(B, 2N, 1, 28, 28) float32 normalised images -> (B, 2N, 10) digit logits."""
        flat = images.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        return self.net(flat).view(*images.shape[:2], -1)

    def model_step(self, batch: AdditionBatch, stage: str) -> dict[str, Tensor]:
        images, digits, total = batch
        log_probs = self(images).log_softmax(dim=-1)
        log_p_a, log_p_b = log_probs.chunk(2, dim=1)
        loss = -sum_log_likelihood(log_p_a, log_p_b, total).mean()
        predicted = log_probs.argmax(dim=-1).detach()
        predicted_total = add(*predicted.chunk(2, dim=1))

        metrics = getattr(self, f"{stage}_metrics")
        metrics["loss"].update(loss.detach(), weight=len(images))
        metrics["sum_acc"].update((predicted_total == total).all(dim=1).float())
        if "most_likely_sum_acc" in metrics:
            best = most_likely_sum(log_p_a.detach(), log_p_b.detach())
            metrics["most_likely_sum_acc"].update((best == total).all(dim=1).float())
        if "digit_acc" in metrics:  # the hidden labels, read at test time only
            metrics["digit_acc"].update((predicted == digits).float())
        if "samples" in metrics:
            metrics["samples"].update(len(images))
        return {"loss": loss, "sum_pred": predicted_total, "log_probs": log_probs.detach()}
