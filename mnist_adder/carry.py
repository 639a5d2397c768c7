"""The exact likelihood of a sum of two N-digit numbers whose digits are only known as distributions.

    log_p_a, log_p_b = digit_logits.log_softmax(-1).chunk(2, dim=1)  # (B, N, 10) each, most significant 1st
    loss = -sum_log_likelihood(log_p_a, log_p_b, total).mean()      # total (B,) int64

For N = 1 this is the convolution P(sum = s) = sum_a P(a) P(s - a). For N > 1 a dynamic programme runs
over the positions, units first, with the carry as its state: 2 states and 19 digit sums per position,
so O(N) work per sum instead of the 10^(2N) digit assignments, in log space and batched.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mnist_adder.mnist import DIGIT_CLASSES, SUM_CLASSES

MAX_NUM_DIGITS = 18  # the sum of two 18-digit numbers still fits in int64
# log(0) as a finite number: logsumexp over only "-inf" entries has a NaN gradient, this has none.
LOG_ZERO = -1e30


def digits_of(number: Tensor, width: int) -> Tensor:
    """(B,) int64 non-negative numbers -> (B, width) int64 decimal digits, most significant first."""
    powers = 10 ** torch.arange(width - 1, -1, -1, device=number.device)
    return number[:, None] // powers % 10


def number_of(digits: Tensor) -> Tensor:
    """(B, N) int64 decimal digits, most significant first -> (B,) int64 numbers."""
    powers = 10 ** torch.arange(digits.shape[1] - 1, -1, -1, device=digits.device)
    return (digits * powers).sum(dim=1)


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
    significant digit first, all digits independent) and (B,) int64 sums -> (B,) float32.

    Position by position from the units, with c the carry into a position and s its digit of the sum:
    P(s, carry out c' | c) = P(a_i + b_i = s + 10 c' - c). The sum's leading digit is the last carry
    (0 or 1); a sum that no two N-digit numbers make has log-likelihood about -1e30.
    """
    batch, num_digits, _ = log_p_a.shape
    pair_sums = digit_sum_log_probs(log_p_a.float(), log_p_b.float())  # (B, N, 19)
    sum_digits = digits_of(total, num_digits + 1)  # (B, N + 1): the leading one is the final carry
    carry = torch.arange(2, device=total.device)
    log_alpha = pair_sums.new_tensor([0.0, LOG_ZERO]).expand(batch, 2)  # log P(carry into the units)
    for position in range(num_digits - 1, -1, -1):
        # t[b, c', c] = s + 10 c' - c: the digit sum that writes s and carries c' out, given c in
        t = sum_digits[:, position + 1, None, None] + 10 * carry[:, None] - carry
        log_p_t = pair_sums[:, position].gather(1, t.clamp(0, SUM_CLASSES - 1).flatten(1)).view(t.shape)
        log_p_t = log_p_t.masked_fill((t < 0) | (t >= SUM_CLASSES), LOG_ZERO)
        log_alpha = torch.logsumexp(log_alpha[:, None, :] + log_p_t, dim=-1)  # (B, 2): carry out
    impossible = (total < 0) | (total > 2 * (10**num_digits - 1))  # digits_of would wrap those round
    leading = sum_digits[:, 0].clamp(0, 1)
    return log_alpha.gather(1, leading[:, None])[:, 0].masked_fill(impossible, LOG_ZERO)
