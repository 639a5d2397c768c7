"""Distillation (`mnist_adder.models.distillation`): the loss, the teachers, and a distilled run on
synthetic data whose checkpoint loads without its teachers."""

from pathlib import Path

import pytest
import torch

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.models.checkpoints import load_net
from mnist_adder.models.distillation import Teachers, distillation_loss
from mnist_adder.models.module import DigitPlusNumberModule
from mnist_adder.train import train
from tests.conftest import DUAL_BEFORE, compose_train

ADDER = str(PROJECT_ROOT / "tests" / "checkpoints" / "adder-before-the-move.ckpt")


def test_the_loss_is_zero_for_a_student_that_agrees_and_grows_as_it_strays():
    logits = torch.randn(32, 10, generator=torch.Generator().manual_seed(0))
    target = (logits / 4).softmax(dim=1)
    assert distillation_loss(logits, target, 4.0).abs() < 1e-5
    assert distillation_loss(logits + torch.randn(32, 10), target, 4.0) > 0.01
    # Times T²: the gradient keeps its size as the temperature rises (Hinton et al. 2015).
    sizes = []
    for temperature in (2.0, 8.0):
        student = (logits * 1.5).requires_grad_()
        distillation_loss(student, (logits / temperature).softmax(dim=1), temperature).backward()
        sizes.append(student.grad.norm())
    assert 0.2 < sizes[1] / sizes[0] < 5


def test_teachers_give_the_mean_of_their_softened_digit_probabilities():
    images = torch.randn(6, 1, 28, 28)
    one, two = Teachers([DUAL_BEFORE], 3.0), Teachers([DUAL_BEFORE, DUAL_BEFORE], 3.0)
    probs = one.probabilities(images)
    assert probs.shape == (6, 10) and torch.allclose(probs.sum(dim=1), torch.ones(6))
    torch.testing.assert_close(two.probabilities(images), probs)
    with torch.no_grad():
        expected = (load_net(DUAL_BEFORE).backbone(images) / 3.0).softmax(dim=1)
    torch.testing.assert_close(probs, expected)
    assert not any(p.requires_grad for net in one.nets for p in net.parameters())


@pytest.mark.parametrize(
    ("teachers", "temperature", "message"),
    [
        (None, 4.0, "names no checkpoint"),
        ([], 4.0, "names no checkpoint"),
        (["/no/such.ckpt"], 4.0, "no checkpoint at /no/such.ckpt"),
        (["/no/such/*.ckpt"], 4.0, "no checkpoint at /no/such/\\*.ckpt"),
        ([ADDER], 4.0, "trained on sums alone"),
        ([DUAL_BEFORE], 0.0, "temperature must be positive"),
    ],
)
def test_wrong_teachers_are_one_clear_error(teachers, temperature, message):
    with pytest.raises(UserError, match=message):
        Teachers(teachers, temperature)


def test_a_distilled_run_learns_from_its_teacher_and_its_checkpoint_loads_without_it(tmp_path, fake_mnist):
    small = ["trainer=cpu", "trainer.max_epochs=1", "data.batch_size=64", "data.val_size=100",
             "callbacks.error_pictures=null"]  # fmt: skip
    train(compose_train(tmp_path / "teacher", *small))
    teacher = tmp_path / "teacher.ckpt"
    (tmp_path / "teacher" / "checkpoints" / "last.ckpt").rename(teacher)
    student = tmp_path / "student"
    pattern = f"model.distillation.teachers=[{tmp_path}/teach*.ckpt]"  # a pattern: every file it matches
    metrics = train(compose_train(student, "experiment=distilled_tiny", pattern, *small))
    assert metrics["train/distill_loss"] > 0
    teacher.unlink()  # the student's checkpoint names its teacher, but needs it no more
    checkpoint = student / "checkpoints" / "last.ckpt"
    assert sum(p.numel() for p in load_net(checkpoint).parameters()) == metrics["parameters"] == 7_522
    module = DigitPlusNumberModule.load_from_checkpoint(checkpoint)
    assert module.teachers is None and module.hparams.distillation["teachers"] == [str(teacher)]


def test_a_pattern_stands_for_every_checkpoint_it_matches_in_order(tmp_path):
    for name in ("b", "a"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "epoch03.ckpt").write_bytes(Path(DUAL_BEFORE).read_bytes())
    teachers = Teachers([f"{tmp_path}/*/checkpoints/epoch*.ckpt", DUAL_BEFORE], 4.0)
    assert teachers.paths == [f"{tmp_path}/{name}/checkpoints/epoch03.ckpt" for name in "ab"] + [DUAL_BEFORE]
    assert len(teachers.nets) == 3
