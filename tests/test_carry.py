"""The exact sum likelihood and the most likely sum: checked against enumerating every pair of numbers."""

import pytest
import torch

from mnist_adder.data.carry import (
    add,
    digit_posteriors,
    digit_sum_log_probs,
    digits_of,
    most_likely_sum,
    number_of,
    sum_log_likelihood,
)


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
    every_sum = digits_of(torch.arange(expected.shape[1]), num_digits + 1)
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
    likelihood = sum_log_likelihood(log_p_a, log_p_b, digits_of(torch.tensor([198, 199, 57]), 3))  # 99 + 99
    assert likelihood[1] < -1e20 and likelihood[0] > -1e20
    leading_2 = torch.tensor([[2, 0, 0]])  # a leading digit is a last carry: 0 or 1
    assert sum_log_likelihood(log_p_a[:1], log_p_b[:1], leading_2) < -1e20
    likelihood[[0, 2]].sum().backward()
    assert torch.isfinite(log_p_a.grad).all() and log_p_a.grad.abs().sum() > 0


def test_certain_digits_give_their_sum_with_certainty():
    a, b = torch.tensor([[4, 0, 7]]), torch.tensor([[9, 9, 5]])  # 407 + 995 = 1402
    certain = lambda digits: torch.nn.functional.one_hot(digits, 10).float().clamp_min(1e-12).log()  # noqa: E731
    assert torch.equal(add(a, b), torch.tensor([[1, 4, 0, 2]]))
    likelihood = sum_log_likelihood(certain(a), certain(b), add(a, b))
    assert likelihood.exp().item() == pytest.approx(1.0)
    assert torch.equal(most_likely_sum(certain(a), certain(b)), add(a, b))
    assert number_of(a).item() == 407 and torch.equal(digits_of(torch.tensor([1402]), 4), add(a, b))


def test_adding_digits_agrees_with_python_integers_for_100_digit_numbers():
    generator = torch.Generator().manual_seed(7)
    a, b = torch.randint(10, (2, 5, 100), generator=generator)
    a[0], b[0] = 9, 9  # 99...9 + 99...9: a carry through every position
    as_int = lambda digits: int("".join(map(str, digits.tolist())))  # noqa: E731
    for row in range(5):
        assert as_int(add(a, b)[row]) == as_int(a[row]) + as_int(b[row])


@pytest.mark.parametrize("num_digits", [1, 2, 3])
@pytest.mark.parametrize("sharpness", [1.0, 3.0])
def test_most_likely_sum_is_the_argmax_of_enumerating_every_pair(num_digits, sharpness):
    generator = torch.Generator().manual_seed(num_digits)
    log_p_a, log_p_b = (sharpness * torch.randn(2, 40, num_digits, 10, generator=generator)).log_softmax(-1)
    expected = brute_force(log_p_a, log_p_b).argmax(dim=1)
    assert torch.equal(number_of(most_likely_sum(log_p_a, log_p_b)), expected)
    of_likeliest_digits = number_of(add(log_p_a.argmax(-1), log_p_b.argmax(-1)))
    assert (of_likeliest_digits != expected).any()  # the two predictions differ: the test can tell them apart


def test_most_likely_sum_of_100_digit_numbers_is_no_less_likely_than_its_neighbours():
    log_p_a, log_p_b = random_digits(4, 100, seed=8), random_digits(4, 100, seed=9)
    best = most_likely_sum(log_p_a, log_p_b)
    likelihood = sum_log_likelihood(log_p_a, log_p_b, best)
    of_likeliest_digits = add(log_p_a.argmax(-1), log_p_b.argmax(-1))
    assert (likelihood >= sum_log_likelihood(log_p_a, log_p_b, of_likeliest_digits)).all()
    for position in range(1, 101):  # every sum that differs from it in one digit is less likely
        for step in (-1, 1):
            neighbour = best.clone()
            neighbour[:, position] = (neighbour[:, position] + step) % 10
            assert (sum_log_likelihood(log_p_a, log_p_b, neighbour) <= likelihood).all()


def test_digit_posteriors_are_the_enumerated_posteriors_given_the_sum():
    log_p_a, log_p_b = random_digits(2, 2, seed=10), random_digits(2, 2, seed=11)
    total = torch.tensor([[0, 9, 7], [1, 0, 4]])  # 97 and 104
    posterior_a, posterior_b = digit_posteriors(log_p_a, log_p_b, total)
    numbers = torch.arange(100)
    digits = digits_of(numbers, 2)
    for row, number in enumerate(number_of(total)):
        b = number - numbers  # every a with the b that completes it
        possible = (b >= 0) & (b <= 99)
        a_digits, b_digits = digits[possible], digits[b[possible]]
        log_weight = log_p_a[row].double().gather(1, a_digits.T).sum(0)  # log P(a) + log P(b), each pair
        log_weight += log_p_b[row].double().gather(1, b_digits.T).sum(0)
        weight = (log_weight - log_weight.max()).exp()
        for position in range(2):
            expected_a = torch.zeros(10, dtype=torch.float64).index_add_(0, a_digits[:, position], weight)
            expected_b = torch.zeros(10, dtype=torch.float64).index_add_(0, b_digits[:, position], weight)
            assert torch.allclose(posterior_a[row, position].double(), expected_a / weight.sum(), atol=1e-5)
            assert torch.allclose(posterior_b[row, position].double(), expected_b / weight.sum(), atol=1e-5)


def test_knowing_no_digit_a_sum_tells_of_the_leading_pair_and_ten_times_less_at_each_next_position():
    generator = torch.Generator().manual_seed(12)
    a, b = torch.randint(10, (2, 200, 5), generator=generator)
    uniform = torch.full((200, 5, 10), 0.1).log()
    posterior_a, _ = digit_posteriors(uniform, uniform, add(a, b))
    moved = (posterior_a - 0.1).abs().sum(dim=-1).mean(dim=0) / 2  # (5,) by position, most significant first
    assert moved[0] > 0.2 and (moved[1:] < moved[:-1] / 5).all()  # measured: 0.35, 0.036, 0.0037, ...
