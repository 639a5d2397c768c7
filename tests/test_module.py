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


def test_the_adders_head_reads_its_digit_from_its_sum_and_its_answer_is_always_possible():
    module = DigitPlusNumberModule(**NET, digit_loss_weight=0.0)
    sum_logits = torch.nn.functional.one_hot(torch.tensor([12, 3, 0]), 19).float()
    digit, total = module.net.head_answers(torch.randn(3, 10), sum_logits, torch.tensor([5, 3, 0]))
    assert digit.tolist() == [7, 0, 0] and total.tolist() == [12, 3, 0]
    impossible, _ = module.net.head_answers(torch.randn(1, 10), sum_logits[:1], torch.tensor([1]))
    assert impossible.tolist() == [11]  # counted as a miss, not clamped to 9
    sum_logits = torch.zeros(1, 19)
    sum_logits[0, 3], sum_logits[0, 18] = 5.0, 2.0  # sum 3 best, then sum 18
    digit, total = module.net.answers(torch.randn(1, 10), sum_logits, torch.tensor([9]))
    assert digit.tolist() == [9] and total.tolist() == [18]  # 3 is no digit + 9; 18 is the likeliest that is


def test_the_answer_is_the_most_likely_consistent_pair_not_each_heads_own():
    module = DigitPlusNumberModule(**NET)  # the dual net
    digit_logits = torch.log(torch.tensor([[0.05] * 4 + [0.5, 0.3] + [0.05] * 4]))  # 4, else 5
    sum_logits = torch.full((1, 19), -10.0)
    sum_logits[0, 9], sum_logits[0, 8], sum_logits[0, 7] = 3.0, 2.5, 0.0  # 9, else 8 (= 5 + 3)
    number = torch.tensor([3])
    assert [int(t) for t in module.net.head_answers(digit_logits, sum_logits, number)] == [4, 9]  # 4 + 3 = 9
    digit, total = module.net.answers(digit_logits, sum_logits, number)
    log_p_digit, log_p_sum = digit_logits.log_softmax(1)[0], sum_logits.log_softmax(1)[0]
    best = max(range(10), key=lambda d: log_p_digit[d] + log_p_sum[d + 3])
    assert (int(digit), int(total)) == (best, best + 3) == (5, 8)


@pytest.mark.parametrize("digit_loss_weight", [1.0, 0.0])
def test_every_answer_adds_up_whatever_the_logits(digit_loss_weight):
    module = DigitPlusNumberModule(**NET, digit_loss_weight=digit_loss_weight)
    torch.manual_seed(0)
    digit_logits, sum_logits = 5 * torch.randn(1000, 10), 5 * torch.randn(1000, 19)
    number = torch.randint(0, 10, (1000,))
    head_digit, head_total = module.net.head_answers(digit_logits, sum_logits, number)
    assert (head_total != head_digit + number).any() or (head_digit < 0).any()  # the heads do disagree
    digit, total = module.net.answers(digit_logits, sum_logits, number)
    assert ((digit >= 0) & (digit <= 9)).all() and torch.equal(total, digit + number)


def test_evaluation_counts_the_heads_contradictions_and_scores_the_answer():
    module = DigitPlusNumberModule(**NET).eval()
    images, numbers, digits, sums = batch()
    with torch.no_grad():
        step = module.model_step((images, numbers, digits, sums), "test")
        head_digit, head_total = module.net.head_answers(*module(images, numbers), numbers)
    metrics = {name: float(metric.compute()) for name, metric in module.test_metrics.items()}
    assert metrics["contradictions"] == (head_total != head_digit + numbers).float().mean().item()
    assert metrics["answer_acc"] == (step["digit_pred"] == digits).float().mean().item()
    assert torch.equal(step["sum_pred"], step["digit_pred"] + numbers)


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
def test_probabilities_are_those_of_the_answers_and_sum_to_one(digit_loss_weight):
    module = DigitPlusNumberModule(**NET, digit_loss_weight=digit_loss_weight).eval()
    images, numbers, _, _ = batch()
    digit_probs, sum_probs = module.net.probabilities(images, numbers)
    digit, total = module.net.predict(images, numbers)
    assert digit_probs.shape == (8, 10) and sum_probs.shape == (8, 19)
    assert torch.allclose(digit_probs.sum(dim=1), torch.ones(8))
    assert torch.equal(sum_probs.gather(1, numbers[:, None] + torch.arange(10)), digit_probs)
    assert (digit_probs.argmax(dim=1) == digit).all() and (sum_probs.argmax(dim=1) == total).all()


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
