"""The exact sum likelihood: checked against enumerating every pair of numbers."""

import pytest
import torch

from mnist_adder.carry import digit_sum_log_probs, digits_of, number_of, sum_log_likelihood


def random_digits(batch, num_digits, seed):
    generator = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(batch, num_digits, 10, generator=generator)).log_softmax(dim=-1)


def brute_force(log_p_a, log_p_b):
    """(B, N, 10) twice -> (B, 2 * 10^N - 1) P(a + b = s) for every s, by enumerating all 10^2N pairs."""
    num_digits = log_p_a.shape[1]
    numbers = torch.arange(10**num_digits)
    digits = digits_of(numbers, num_digits)  # (10^N, N)

    def number_probs(log_p):  # (B, 10^N): P(number) = product of its digits' probabilities
        return log_p.double().gather(2, digits.T.expand(len(log_p), -1, -1)).sum(dim=1).exp()

    p_a, p_b = number_probs(log_p_a), number_probs(log_p_b)
    sums = (numbers[:, None] + numbers).flatten()
    joint = (p_a[:, :, None] * p_b[:, None, :]).flatten(1)
    return torch.zeros(len(p_a), 2 * 10**num_digits - 1, dtype=torch.float64).index_add_(1, sums, joint)


@pytest.mark.parametrize("num_digits", [1, 2, 3])
def test_carry_programme_equals_enumerating_every_pair_of_numbers(num_digits):
    log_p_a, log_p_b = random_digits(3, num_digits, seed=1), random_digits(3, num_digits, seed=2)
    expected = brute_force(log_p_a, log_p_b)  # (3, S)
    every_sum = torch.arange(expected.shape[1])
    for row in range(3):
        repeat = (len(every_sum), -1, -1)
        likelihood = sum_log_likelihood(log_p_a[row].expand(repeat), log_p_b[row].expand(repeat), every_sum)
        assert torch.allclose(likelihood.double().exp(), expected[row], atol=1e-6)


def test_one_digit_is_the_convolution_of_the_two_distributions():
    log_p_a, log_p_b = random_digits(4, 1, seed=3), random_digits(4, 1, seed=4)
    p_a, p_b = log_p_a[:, 0].exp(), log_p_b[:, 0].exp()
    convolution = torch.stack(
        [sum(p_a[:, a] * p_b[:, t - a] for a in range(10) if 0 <= t - a <= 9) for t in range(19)], 1
    )
    assert torch.allclose(digit_sum_log_probs(log_p_a[:, 0], log_p_b[:, 0]).exp(), convolution, atol=1e-6)


def test_impossible_sums_are_near_zero_and_gradients_stay_finite():
    log_p_a = random_digits(3, 2, seed=5).requires_grad_()
    log_p_b = random_digits(3, 2, seed=6)
    likelihood = sum_log_likelihood(log_p_a, log_p_b, torch.tensor([198, 199, 57]))  # 99 + 99 = 198
    assert likelihood[1] < -1e20 and likelihood[0] > -1e20
    assert (sum_log_likelihood(log_p_a[:2], log_p_b[:2], torch.tensor([1000, -3])) < -1e20).all()
    likelihood[[0, 2]].sum().backward()
    assert torch.isfinite(log_p_a.grad).all() and log_p_a.grad.abs().sum() > 0


def test_certain_digits_give_their_sum_with_certainty():
    a, b = torch.tensor([[4, 0, 7]]), torch.tensor([[9, 9, 5]])  # 407 + 995 = 1402
    certain = lambda digits: torch.nn.functional.one_hot(digits, 10).float().clamp_min(1e-12).log()  # noqa: E731
    likelihood = sum_log_likelihood(certain(a), certain(b), torch.tensor([1402]))
    assert likelihood.exp().item() == pytest.approx(1.0)
    assert number_of(a).item() == 407 and torch.equal(
        digits_of(torch.tensor([1402]), 4), torch.tensor([[1, 4, 0, 2]])
    )
