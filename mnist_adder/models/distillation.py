"""Knowledge distillation (Hinton et al. 2015): a student learns, besides the true digits, the digit
probabilities of trained teachers, softened by a temperature. `DigitPlusNumberModule(distillation=...)`
uses it in training; `experiment=distilled` and `distilled_tiny` are its recipes (results/distillation.md).

    teachers = Teachers(["lightning_logs/teachers/*/*/checkpoints/epoch*.ckpt"], temperature=4.0)
    loss = distillation_loss(student_digit_logits, teachers.probabilities(images), teachers.temperature)
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mnist_adder import UserError
from mnist_adder.models.checkpoints import load_net


def expanded(teachers: Sequence[str]) -> list[str]:
    """The checkpoint files that `teachers` names: each a path, or a pattern with `*` or `?` that stands
    for every file it matches, in sorted order (`lightning_logs/teachers/*/*/checkpoints/epoch*.ckpt`)."""
    paths = []
    for teacher in teachers:
        matches = sorted(glob.glob(teacher)) if glob.has_magic(teacher) else [teacher]
        if not matches or not all(Path(path).is_file() for path in matches):
            raise UserError(f"model.distillation.teachers: no checkpoint at {teacher}")
        paths += matches
    return paths


class Teachers:
    """Frozen image + number nets, read from their checkpoints, in eval mode (so each one's test-time
    shifts, if it has any, are part of what it teaches). A plain object, not an `nn.Module`: the
    student's checkpoint holds neither their weights nor their parameters, only their paths (`paths`,
    the patterns expanded)."""

    def __init__(self, teachers: str | Sequence[str] | None, temperature: float) -> None:
        teachers = [teachers] if isinstance(teachers, str) else list(teachers or [])
        if not teachers:
            example = "'model.distillation.teachers=[lightning_logs/.../checkpoints/epoch23.ckpt]'"
            raise UserError(f"model.distillation.teachers names no checkpoint: give one or more: {example}")
        if temperature <= 0:
            raise UserError(f"model.distillation.temperature must be positive, got {temperature}")
        self.temperature, self.nets, self.paths = float(temperature), [], expanded(teachers)
        for path in self.paths:
            try:
                net = load_net(path)
            except UserError as error:
                raise UserError(f"model.distillation.teachers: {error}") from None
            if net.digit_from_sum:
                raise UserError(
                    f"model.distillation.teachers: {path} was trained on sums alone, so its digit head never "
                    "learnt: a teacher must be trained with digits (model=dual)"
                )
            self.nets.append(net.requires_grad_(False))

    def to(self, device: torch.device) -> Teachers:
        self.nets = [net.to(device) for net in self.nets]
        return self

    @torch.no_grad()
    def probabilities(self, image: Tensor) -> Tensor:
        """(B, 1, 28, 28) normalised images -> (B, 10) float32: the mean of the teachers' digit
        probabilities at the temperature."""
        image = image.contiguous(memory_format=torch.channels_last)
        probs = [(net.backbone(image) / self.temperature).softmax(dim=1) for net in self.nets]
        return torch.stack(probs).mean(dim=0)


def distillation_loss(student_logits: Tensor, target: Tensor, temperature: float) -> Tensor:
    """KL(target || softmax(student_logits / T)), times T² so that its gradients keep their size whatever
    the temperature (Hinton et al. 2015); a mean over the batch."""
    log_probs = (student_logits / temperature).log_softmax(dim=1)
    return F.kl_div(log_probs, target, reduction="batchmean") * temperature**2
