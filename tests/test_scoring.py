"""The figures of a set (`mnist_adder.models.scoring.score`), for one net and for several averaged."""

import pytest
import torch

from mnist_adder import UserError
from mnist_adder.models.nets import AdderNet, CompactCNN, LearnedSumHead
from mnist_adder.models.scoring import numbers_for, score


def a_net(seed: int, temperature: float = 1.0, digit_from_sum: bool = False) -> AdderNet:
    torch.manual_seed(seed)
    net = AdderNet(CompactCNN(width=4), LearnedSumHead(hidden=8), digit_from_sum).eval()
    net.temperature = temperature
    return net


def test_one_net_alone_and_in_a_list_and_twice_over_give_the_same_figures():
    images, digits = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
    net = a_net(0, temperature=1.7)
    alone, listed, twice = (
        score(net, images, digits),
        score([net], images, digits),
        score([net, net], images, digits),
    )
    numbers = numbers_for(64)
    with torch.inference_mode():
        expected = net.answer_log_probs(*net(images, numbers), numbers, temperature=1.0)
    assert torch.allclose(alone.log_probs, expected, atol=1e-5)
    for other in (listed, twice):
        assert torch.allclose(other.log_probs, alone.log_probs, atol=1e-5)
        assert other.cells() == alone.cells()


def test_several_nets_are_read_as_their_heads_averaged_at_the_mean_of_their_temperatures():
    images, digits = torch.randn(64, 1, 28, 28), torch.arange(64) % 10
    first, second = a_net(0, temperature=0.5), a_net(1, temperature=3.0)
    both = score([first, second], images, digits)
    numbers = numbers_for(64)
    with torch.inference_mode():
        heads = [net(images, numbers) for net in (first, second)]
    digit_probs = torch.stack([digit.softmax(dim=1) for digit, _ in heads]).mean(dim=0)
    sum_probs = torch.stack([total.softmax(dim=1) for _, total in heads]).mean(dim=0)
    sums = numbers[:, None] + torch.arange(10)
    expected = (digit_probs.log() + sum_probs.gather(1, sums).log()).log_softmax(dim=1)
    assert torch.allclose(both.log_probs, expected, atol=1e-5)  # at temperature 1, for the ECE before
    calibrated = (expected / 1.75).softmax(dim=1)
    assert both.answer_acc == float((calibrated.argmax(dim=1) == digits).float().mean())
    confident = (calibrated.max(dim=1).values > 0.9) & (calibrated.argmax(dim=1) != digits)
    assert both.confident_mistakes == int(confident.sum())


def test_nets_that_read_digits_differently_are_not_averaged():
    images, digits = torch.randn(8, 1, 28, 28), torch.arange(8)
    with pytest.raises(UserError, match="nets to average must read digits alike"):
        score([a_net(0), a_net(1, digit_from_sum=True)], images, digits)
