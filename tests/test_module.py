import lightning as L
import pytest
import torch

from mnist_adder import UserError
from mnist_adder.models.module import DigitPlusNumberModule
from tests.conftest import synthetic_mnist

NET = {
    "backbone": {"_target_": "mnist_adder.models.nets.CompactCNN", "width": 8},
    "sum_head": {"_target_": "mnist_adder.models.nets.LearnedSumHead", "hidden": 16},
}


def batch(digits=None):
    images, labels = synthetic_mnist(8)
    images = images.unsqueeze(1).float() / 255
    digits = labels if digits is None else digits
    numbers = torch.arange(8) % 10
    return images, numbers, digits, labels + numbers


def loss_of(module, batch):
    torch.manual_seed(0)
    module.train()
    return module.model_step(batch, "train")["loss"]


def test_adder_training_never_reads_digit_labels():
    module = DigitPlusNumberModule(**NET, digit_loss_weight=0.0)
    right, wrong = batch(), batch(digits=torch.zeros(8, dtype=torch.long))
    assert loss_of(module, right) == loss_of(module, wrong)


def test_dual_training_uses_digit_labels():
    module = DigitPlusNumberModule(**NET, digit_loss_weight=1.0)
    assert loss_of(module, batch()) != loss_of(module, batch(digits=torch.zeros(8, dtype=torch.long)))


def test_with_the_shift_head_the_loss_does_not_depend_on_the_numbers():
    # Why held-out pairs cannot hurt it: which number an image is paired with never reaches a gradient.
    shift_head = {"_target_": "mnist_adder.models.nets.ShiftSumHead", "hidden": 16}
    module = DigitPlusNumberModule(NET["backbone"], shift_head)
    images, _, digits, _ = batch()
    for numbers in (torch.zeros(8, dtype=torch.long), torch.arange(8) % 10, torch.full((8,), 9)):
        assert loss_of(module, (images, numbers, digits, digits + numbers)) == loss_of(module, batch())


def test_the_adder_reads_its_digit_from_its_sum():
    module = DigitPlusNumberModule(**NET, digit_loss_weight=0.0)
    sum_logits = torch.nn.functional.one_hot(torch.tensor([12, 3, 0]), 19).float()
    digit, total = module.net.answers(torch.randn(3, 10), sum_logits, torch.tensor([5, 3, 0]))
    assert digit.tolist() == [7, 0, 0] and total.tolist() == [12, 3, 0]
    impossible, _ = module.net.answers(torch.randn(1, 10), sum_logits[:1], torch.tensor([1]))
    assert impossible.tolist() == [11]  # counted as a miss, not clamped to 9


@pytest.mark.parametrize("digit_loss_weight", [1.0, 0.0])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, digit_loss_weight):
    module = DigitPlusNumberModule(**NET, digit_loss_weight=digit_loss_weight)
    trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    loader = torch.utils.data.DataLoader([batch()], batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)

    loaded = DigitPlusNumberModule.load_from_checkpoint(path)  # no config at hand
    images, numbers, _, _ = batch()
    module.eval(), loaded.eval()
    for expected, actual in zip(module(images, numbers), loaded(images, numbers), strict=True):
        assert torch.equal(expected, actual)
    assert loaded.hparams.digit_loss_weight == digit_loss_weight


@pytest.mark.parametrize("digit_loss_weight", [1.0, 0.0])
def test_probabilities_agree_with_predictions_and_sum_to_one(digit_loss_weight):
    module = DigitPlusNumberModule(**NET, digit_loss_weight=digit_loss_weight).eval()
    images, numbers, _, _ = batch()
    digit_probs, sum_probs = module.net.probabilities(images, numbers)
    digit, total = module.net.predict(images, numbers)
    assert digit_probs.shape == (8, 10) and sum_probs.shape == (8, 19)
    assert torch.allclose(digit_probs.sum(dim=1), torch.ones(8)) and torch.allclose(
        sum_probs.sum(dim=1), torch.ones(8)
    )
    assert (sum_probs.argmax(dim=1) == total).all()
    possible = (digit >= 0) & (digit <= 9)  # an adder can read an impossible digit
    assert (digit_probs.argmax(dim=1)[possible] == digit[possible]).all()


def test_test_time_shifts_average_five_views_out_of_training_only():
    exact = {**NET, "sum_head": {"_target_": "mnist_adder.models.nets.ExactSumHead"}}
    torch.manual_seed(0)
    plain = DigitPlusNumberModule(**exact)
    shifted = DigitPlusNumberModule(**exact, test_time_shifts=1)
    shifted.load_state_dict(plain.state_dict())
    images, numbers, _, _ = batch()
    for module in (plain, shifted):
        module.train()
    assert torch.equal(plain(images, numbers)[0], shifted(images, numbers)[0])  # training sees one view
    plain.eval(), shifted.eval()
    digit_logits, sum_logits = shifted(images, numbers)
    views = [images, *(images.roll(s, dims=d) for d in (-1, -2) for s in (1, -1))]
    mean_probs = torch.stack([plain(view, numbers)[0].softmax(dim=1) for view in views]).mean(dim=0)
    assert torch.allclose(digit_logits.exp(), mean_probs, atol=1e-6)
    assert torch.allclose(sum_logits.exp().sum(dim=1), torch.ones(8), atol=1e-5)


@pytest.mark.parametrize("shifts", [-1, 14, 1.5])
def test_test_time_shifts_out_of_range_are_one_clear_error(shifts):
    with pytest.raises(UserError, match="test_time_shifts must be 0"):
        DigitPlusNumberModule(**NET, test_time_shifts=shifts)
