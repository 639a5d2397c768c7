"""The exact likelihood of a sum of two N-digit numbers whose digits are only known as distributions,
and the most likely sum.

    log_p_a, log_p_b = digit_logits.log_softmax(-1).chunk(2, dim=1)  # (B, N, 10) each, most significant 1st
    loss = -sum_log_likelihood(log_p_a, log_p_b, total).mean()      # total (B, N + 1) its digits
    best = most_likely_sum(log_p_a, log_p_b)                         # (B, N + 1)

Numbers are digit tensors, most significant first, so N has no limit (a sum of two 100-digit numbers does
not fit in int64). For N = 1 the likelihood is the convolution P(sum = s) = sum_a P(a) P(s - a). For N > 1 a
dynamic programme runs over the positions, units first, with the carry as its state: 2 states and 19
digit sums per position, so O(N) work per sum instead of the 10^(2N) digit assignments, in log space and
batched.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mnist_adder.data.mnist import DIGIT_CLASSES, SUM_CLASSES

# log(0) as a finite number: logsumexp over only "-inf" entries has a NaN gradient, this has none.
LOG_ZERO = -1e30


def digits_of(number: Tensor, width: int) -> Tensor:
    """(B,) int64 non-negative numbers -> (B, width) int64 decimal digits, most significant first."""
    powers = 10 ** torch.arange(width - 1, -1, -1, device=number.device)
    return number[:, None] // powers % 10


def number_of(digits: Tensor) -> Tensor:
    """(B, N) int64 decimal digits, most significant first, N <= 18 -> (B,) int64 numbers."""
    powers = 10 ** torch.arange(digits.shape[1] - 1, -1, -1, device=digits.device)
    return (digits * powers).sum(dim=1)


def add(a: Tensor, b: Tensor) -> Tensor:
    """(B, N) int64 digits of two numbers, most significant first -> (B, N + 1) the digits of their sum."""
    column_sums = torch.nn.functional.pad(a + b, (1, 0))  # (B, N + 1): a leading column for the last carry
    total = torch.empty_like(column_sums)
    carry = torch.zeros_like(column_sums[:, 0])
    for position in range(column_sums.shape[1] - 1, -1, -1):
        column = column_sums[:, position] + carry
        total[:, position], carry = column % 10, column // 10
    return total


def digit_sum_log_probs(log_p_a: Tensor, log_p_b: Tensor) -> Tensor:
    """(..., 10) log-probabilities of two independent digits -> (..., 19) log P(a + b = t), t in 0..18."""
    t_minus_a = (
        torch.arange(SUM_CLASSES, device=log_p_a.device)
        - torch.arange(DIGIT_CLASSES, device=log_p_a.device)[:, None]
    )
    possible = (t_minus_a >= 0) & (t_minus_a < DIGIT_CLASSES)  # (10, 19): b = t - a is a digit
    log_p_b_at = log_p_b[..., t_minus_a.clamp(0, DIGIT_CLASSES - 1)].masked_fill(~possible, LOG_ZERO)
    return torch.logsumexp(log_p_a[..., :, None] + log_p_b_at, dim=-2)


def sum_log_likelihood(log_p_a: Tensor, log_p_b: Tensor, total: Tensor) -> Tensor:
    """log P(a + b = total) for (B, N, 10) digit log-probabilities of the numbers a and b (most
    significant digit first, all digits independent) and (B, N + 1) int64 digits of the sums -> (B,).

    Position by position from the units, with c the carry into a position and s its digit of the sum:
    P(s, carry out c' | c) = P(a_i + b_i = s + 10 c' - c). The sum's leading digit is the last carry
    (0 or 1); a sum that no two N-digit numbers make has log-likelihood about -1e30.
    """
    batch, num_digits, _ = log_p_a.shape
    pair_sums = digit_sum_log_probs(log_p_a.float(), log_p_b.float())  # (B, N, 19)
    carry = torch.arange(2, device=total.device)
    log_alpha = pair_sums.new_tensor([0.0, LOG_ZERO]).expand(batch, 2)  # log P(carry into the units)
    for position in range(num_digits - 1, -1, -1):
        # t[b, c', c] = s + 10 c' - c: the digit sum that writes s and carries c' out, given c in
        t = total[:, position + 1, None, None] + 10 * carry[:, None] - carry
        log_p_t = pair_sums[:, position].gather(1, t.clamp(0, SUM_CLASSES - 1).flatten(1)).view(t.shape)
        log_p_t = log_p_t.masked_fill((t < 0) | (t >= SUM_CLASSES), LOG_ZERO)
        log_alpha = torch.logsumexp(log_alpha[:, None, :] + log_p_t, dim=-1)  # (B, 2): carry out
    leading = total[:, 0]
    likelihood = log_alpha.gather(1, leading.clamp(0, 1)[:, None])[:, 0]
    return likelihood.masked_fill((leading < 0) | (leading > 1), LOG_ZERO)


def digit_posteriors(log_p_a: Tensor, log_p_b: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """P(a_i = d | a + b = total) and P(b_i = d | a + b = total), exact: (B, N, 10) each.

    The gradient of log P(a + b = total) with respect to the digits' log-probabilities, since the
    likelihood is linear in each digit's probabilities. It is also what training pulls each digit's
    distribution towards: d loss / d logits = prior - posterior.
    """
    with torch.enable_grad():
        log_p_a, log_p_b = (log_p.detach().float().requires_grad_() for log_p in (log_p_a, log_p_b))
        likelihood = sum_log_likelihood(log_p_a, log_p_b, total).sum()
        return torch.autograd.grad(likelihood, (log_p_a, log_p_b))


def most_likely_sum(log_p_a: Tensor, log_p_b: Tensor) -> Tensor:
    """argmax over s of P(a + b = s), exactly: (B, N, 10) digit log-probabilities twice -> (B, N + 1) digits.

    Not the sum of the most likely digits: P(a + b = s) adds up every pair of numbers that makes s, and
    several carry paths write the same sum. See `_most_likely_sum` for the pass that finds it.
    """
    pair_sums = digit_sum_log_probs(log_p_a.float(), log_p_b.float()).double().cpu().numpy()
    best = np.stack([_most_likely_sum(sample) for sample in pair_sums])
    return torch.from_numpy(best).to(log_p_a.device)


def _most_likely_sum(log_pair_sums: np.ndarray) -> np.ndarray:
    """(N, 19) log P(a_i + b_i = t), most significant first -> (N + 1,) the digits of the most likely sum.

    The carry programme again, units first, but keeping candidates: each candidate is a choice of the sum's
    lower digits with alpha = (P(those digits and carry 0 out), P(... carry 1 out)). Each extends by the 10
    digits of the next position. Whatever the higher digits, a candidate's final probability is
    alpha . beta for some beta >= 0 that does not depend on it, so only candidates on the upper-right
    convex hull of the alphas can win: the others are dropped, which keeps the pass exact and the
    candidates few (Viterbi keeps one per state instead, which would find the most likely carry path).
    At the end the leading digit is the last carry.
    """
    digits = np.zeros((1, 0), dtype=np.int64)  # (candidates, positions so far), units first
    alpha = np.array([[1.0, 0.0]])
    s = np.arange(DIGIT_CLASSES)
    for position in range(len(log_pair_sums) - 1, -1, -1):
        # p[t] for t in 0..18, relative to the most likely t; p[19] = p[-1] = 0 stands for impossible t
        p = np.append(np.exp(log_pair_sums[position] - log_pair_sums[position].max()), 0.0)
        carry_0 = alpha[:, :1] * p[s] + alpha[:, 1:] * p[s - 1]  # t = s - c in
        carry_1 = alpha[:, :1] * p[s + 10] + alpha[:, 1:] * p[s + 9]  # t = s + 10 - c in
        alpha = np.stack([carry_0, carry_1], axis=-1).reshape(-1, 2)
        alpha /= alpha.max()
        digits = np.concatenate(
            [np.repeat(digits, DIGIT_CLASSES, axis=0), np.tile(s, len(digits))[:, None]], 1
        )
        keep = upper_right_hull(alpha)
        digits, alpha = digits[keep], alpha[keep]
    candidate, last_carry = np.unravel_index(alpha.argmax(), alpha.shape)
    return np.concatenate([[last_carry], digits[candidate, ::-1]])


def upper_right_hull(points: np.ndarray) -> np.ndarray:
    """(K, 2) non-negative points -> the indices of those that maximise w . point for some w >= 0, w != 0:
    the vertices of the convex hull from the highest x to the highest y (Andrew's monotone chain)."""
    hull: list[int] = []
    for index in np.lexsort((-points[:, 1], -points[:, 0])):  # x falling, then y falling
        if hull and points[index, 1] <= points[hull[-1], 1]:
            continue  # no higher than a point at least as far right: never the best
        while len(hull) >= 2 and _turn(points[hull[-2]], points[hull[-1]], points[index]) <= 0:
            hull.pop()  # the middle point lies on or below the segment past it
        hull.append(index)
    return np.array(hull)


def _turn(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
