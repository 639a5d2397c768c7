"""Plain `nn.Module`s: digit backbones, sum heads, and `AdderNet` that joins them. No Lightning here.

    net = AdderNet(CompactCNN(width=16), LearnedSumHead(hidden=128))
    digit_logits, sum_logits = net(image, number)   # (B, 10), (B, 19)

Backbones map (B, 1, 28, 28) images to (B, 10) digit logits; sum heads map those logits and (B,) numbers
to sum logits. `SeedCNN` and `SeedAdderHead` copy the two published reference nets exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_adder import UserError
from mnist_adder.mnist import IMAGE_SHAPE, NUM_DIGITS
from mnist_adder.pairing import NUM_SUMS


def with_number(digit: Tensor, number: Tensor) -> Tensor:
    """(B, 10) digit representation and (B,) int64 numbers -> (B, 20) [digit, one-hot(number)]."""
    return torch.cat([digit, F.one_hot(number, NUM_DIGITS).to(digit.dtype)], dim=1)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class CompactCNN(nn.Module):
    """(B, 1, 28, 28) float32 images -> (B, 10) digit logits.

    Five 3x3 conv-BN-ReLU layers: one of `width` channels at 28 pixels, two of 2*`width` at 14, two of
    4*`width` at 7, each stage closed by 2x2 max-pooling; then a linear layer over the 3x3 map, which keeps
    where the strokes are (global average pooling lost a point of accuracy). width=16 has 75k parameters.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *conv_bn_relu(1, width),
            nn.MaxPool2d(2),
            *conv_bn_relu(width, 2 * width),
            *conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2),
            *conv_bn_relu(2 * width, 4 * width),
            *conv_bn_relu(4 * width, 4 * width),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width * 3 * 3, NUM_DIGITS),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


class FastCNN(nn.Module):
    """(B, 1, 28, 28) float32 images -> (B, 10) digit logits, for short runs on a CPU.

    One conv per stage, at 28, 14 and 7 pixels with `widths` channels, each followed by 2x2 max-pooling
    *before* BatchNorm and ReLU, so that those run on a quarter of the pixels: about twice as fast to train
    as conv-BN-ReLU-pool. widths=(16, 32, 64): 29k parameters, 1.9M multiply-adds per image.

    Variants, each a lever of the speedrun (`results/speedrun.md` has what each gave): `stem="strided"`
    makes the first stage a 5x5 conv of stride 2 instead of a 3x3 conv and pooling at 28 pixels (the same
    multiply-adds, no 28-pixel feature map to pool); `batch_norm=False` drops BatchNorm (the convs get
    biases); `border` pixels are cut off each side of the image first (MNIST's digits sit in its central
    20x20 box: border=2 saves a quarter of the multiply-adds).
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64),
        stem: Literal["pooled", "strided"] = "pooled",
        batch_norm: bool = True,
        border: int = 0,
    ) -> None:
        super().__init__()
        if stem not in ("pooled", "strided"):
            raise UserError(f"model.backbone.stem must be 'pooled' or 'strided', got {stem!r}")
        if type(border) is not int or not 0 <= border <= 4:
            raise UserError(f"model.backbone.border must be 0..4 pixels (digits fill 20x20), got {border!r}")
        self.border = border
        layers, channels = [], 1
        for i, width in enumerate(widths):
            if i == 0 and stem == "strided":
                down = [nn.Conv2d(channels, width, 5, stride=2, padding=2, bias=not batch_norm)]
            else:
                down = [nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm), nn.MaxPool2d(2)]
            layers += [*down, *([nn.BatchNorm2d(width)] if batch_norm else []), nn.ReLU(inplace=True)]
            channels = width
        size = (IMAGE_SHAPE[1] - 2 * border) >> len(widths)
        self.layers = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size * size, NUM_DIGITS))

    def forward(self, image: Tensor) -> Tensor:
        if self.border:
            image = image[..., self.border : -self.border, self.border : -self.border]
        return self.layers(image)


def at_sums(values: Tensor, number: Tensor) -> Tensor:
    """(B, 10) values for sum - number = 0..9 and (B,) numbers -> (B, 19) over sums, -inf where impossible."""
    sums = number[:, None] + torch.arange(NUM_DIGITS, device=number.device)
    return values.new_full((len(number), NUM_SUMS), float("-inf")).scatter(1, sums, values)


class LearnedSumHead(nn.Module):
    """(B, 10) digit logits and (B,) int64 numbers -> (B, 19) sum logits.

    An MLP over [digit representation, one-hot(number)]; nothing adds the argmax to the number, so it
    must learn the addition table. The representation is `digit_input`:
    - "logits", the raw digit logits: learns far faster, above all from sums alone, where near-uniform
      probabilities at the start carry almost no signal (sum-only: 98.1 % test sum accuracy after
      2 epochs, against 63.7 % with "probs"; dual, 15 epochs: 99.60 % best validation sum accuracy,
      against 99.44 %);
    - "probs", softmax(digit logits): the head sees only the digit's distribution.
    """

    def __init__(self, hidden: int = 128, digit_input: Literal["probs", "logits"] = "logits") -> None:
        super().__init__()
        if digit_input not in ("probs", "logits"):
            raise UserError(f"model.sum_head.digit_input must be 'probs' or 'logits', got {digit_input!r}")
        self.digit_input = digit_input
        self.layers = nn.Sequential(
            nn.Linear(2 * NUM_DIGITS, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, NUM_SUMS)
        )

    def forward(self, digit_logits: Tensor, number: Tensor) -> Tensor:
        digit = digit_logits.softmax(dim=1) if self.digit_input == "probs" else digit_logits
        return self.layers(with_number(digit, number))


class ExactSumHead(nn.Module):
    """(B, 10) digit logits and (B,) int64 numbers -> (B, 19) sum log-probabilities, with no parameters.

    P(sum = s) = P(digit = s - number): the digit distribution shifted by the number, a differentiable
    adder. Impossible sums get log-probability -inf. Trained on sums alone, it teaches the backbone the
    digits without a digit label. Not for label smoothing, which would put weight on impossible sums.
    """

    def forward(self, digit_logits: Tensor, number: Tensor) -> Tensor:
        return at_sums(digit_logits.log_softmax(dim=1), number)


class ShiftSumHead(nn.Module):
    """(B, 10) digit logits and (B,) int64 numbers -> (B, 19) sum logits: a learned head that adds.

    logit(sum = s) = g(digit logits)[s - number], where g is a learned MLP (10 -> `hidden` -> 10) shared
    by every number; sums outside number..number+9 get -inf. The head is equivariant to the number: adding
    k to it shifts the sum logits by k. So g never sees the number, and what it learns from a digit
    paired with some numbers holds for that digit with every number: held-out (digit, number) pairs are
    no harder than seen ones. `LearnedSumHead` sees one-hot(number) and must learn each pair's sum apart.

    `trainable=False` freezes g at its initial weights (the ablation that shows g's training matters).
    Not for label smoothing: impossible sums have -inf logits.
    """

    def __init__(self, hidden: int = 128, trainable: bool = True) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(NUM_DIGITS, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, NUM_DIGITS)
        )
        self.layers.requires_grad_(trainable)

    def forward(self, digit_logits: Tensor, number: Tensor) -> Tensor:
        return at_sums(self.layers(digit_logits), number)  # layers: logit(sum - number = k), k in 0..9


class SeedCNN(nn.Module):
    """The published reference backbone, copied: (B, 1, 28, 28) -> (B, 10) digit values, 6,379,786 parameters.

    Convs 1->32->64 (3x3, pad 1), max-pool, 64->128->256 (pad 1), max-pool, 256->512->1024 (no pad), then
    1024->10 (3x3, no pad) down to 1x1. ReLU follows every conv but the last. No BatchNorm.
    """

    def __init__(self) -> None:
        super().__init__()

        def conv(in_channels: int, out_channels: int, padding: int) -> list[nn.Module]:
            return [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU(inplace=True)]

        self.layers = nn.Sequential(
            *conv(1, 32, 1),
            *conv(32, 64, 1),
            nn.MaxPool2d(2),
            *conv(64, 128, 1),
            *conv(128, 256, 1),
            nn.MaxPool2d(2),
            *conv(256, 512, 0),
            *conv(512, 1024, 0),
            nn.Conv2d(1024, NUM_DIGITS, 3),
            nn.Flatten(),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


class SeedAdderHead(nn.Module):
    """The published sum-only reference head, copied: [10 digit values, one-hot(number)] -> (B, 20).

    fc1 Linear(20, 200), fc2 Linear(200, 400), fc3 Linear(400, 800), with ReLU, then fc4 Linear(800, 20,
    bias=False). 20 outputs for 19 possible sums, as published: the sum is the argmax over all 20, so
    predicting the 20th is a miss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * NUM_DIGITS, 200),
            nn.ReLU(inplace=True),
            nn.Linear(200, 400),
            nn.ReLU(inplace=True),
            nn.Linear(400, 800),
            nn.ReLU(inplace=True),
            nn.Linear(800, 20, bias=False),
        )

    def forward(self, digit_logits: Tensor, number: Tensor) -> Tensor:
        return self.layers(with_number(digit_logits, number))


class AdderNet(nn.Module):
    """(B, 1, 28, 28) images and (B,) numbers in 0..9 -> (B, 10) digit logits and (B, 19) sum logits."""

    def __init__(self, backbone: nn.Module, sum_head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.sum_head = backbone, sum_head

    def forward(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        digit_logits = self.backbone(image)
        return digit_logits, self.sum_head(digit_logits, number)
