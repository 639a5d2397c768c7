"""Plain `nn.Module`s: digit backbones, sum heads, and `AdderNet` that joins them. No Lightning here.

    net = AdderNet(CompactCNN(width=16), LearnedSumHead(hidden=128))
    digit_logits, sum_logits = net(image, number)   # (B, 10), (B, 19)

Backbones map (B, 1, 28, 28) images to (B, 10) digit logits; sum heads map those logits and (B,) numbers
to sum logits. `ReferenceCNN` and `ReferenceSumHead` copy the two published reference nets exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_adder import UserError
from mnist_adder.data.mnist import DIGIT_CLASSES, IMAGE_SHAPE, SUM_CLASSES
from mnist_adder.models import current_name


def with_number(digit: Tensor, number: Tensor) -> Tensor:
    """(B, 10) digit representation and (B,) int64 numbers -> (B, 20) [digit, one-hot(number)]."""
    return torch.cat([digit, F.one_hot(number, DIGIT_CLASSES).to(digit.dtype)], dim=1)


def conv_bn_relu(in_channels: int, out_channels: int, separable: bool = False) -> list[nn.Module]:
    """A 3x3 conv, BatchNorm and ReLU; `separable`: the conv split into a depthwise 3x3 and a 1x1."""
    if separable:
        convs = [nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
                 nn.Conv2d(in_channels, out_channels, 1, bias=False)]  # fmt: skip
    else:
        convs = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)]
    return [*convs, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


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
            nn.Linear(4 * width * 3 * 3, DIGIT_CLASSES),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


class FastCNN(nn.Module):
    """(B, 1, 28, 28) float32 images -> (B, 10) digit logits, for short runs on a CPU.

    One conv per stage, at 28, 14 and 7 pixels with `widths` channels, each followed by 2x2 max-pooling
    *before* BatchNorm and ReLU, so that those run on a quarter of the pixels: about twice as fast to train
    as conv-BN-ReLU-pool. widths=(16, 32, 64): 29k parameters, 1.9M multiply-adds per image.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        layers, channels = [], 1
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]  # fmt: skip
            channels = width
        size = IMAGE_SHAPE[1] >> len(widths)
        self.layers = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size * size, DIGIT_CLASSES))

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


class TinyCNN(nn.Module):
    """(B, 1, 28, 28) float32 images -> (B, 10) digit logits, in under 8,000 parameters (experiment=tiny).

    3x3 conv-BN-ReLU layers of `widths` channels: two at 28 pixels, two at 14 and one at 7, with 2x2
    max-pooling between the stages; then global average pooling, `dropout`, and a linear layer. Averaging
    over the map, where CompactCNN keeps it, is what fits the budget. widths=(8, 12, 16, 16, 16): 7,578
    parameters, 1.6M multiply-adds per image. `separable` splits every conv after the first into a
    depthwise 3x3 and a 1x1, which buys wider layers: (16, 24, 32, 48, 56) holds 7,522.
    """

    def __init__(
        self, widths: Sequence[int] = (8, 12, 16, 16, 16), dropout: float = 0.0, separable: bool = False
    ) -> None:
        super().__init__()
        if len(widths) != 5:
            raise UserError(f"TinyCNN takes 5 widths (2 layers at 28 pixels, 2 at 14, 1 at 7): {widths!r}")
        first, second, third, fourth, fifth = widths
        self.layers = nn.Sequential(
            *conv_bn_relu(1, first),
            *conv_bn_relu(first, second, separable),
            nn.MaxPool2d(2),
            *conv_bn_relu(second, third, separable),
            *conv_bn_relu(third, fourth, separable),
            nn.MaxPool2d(2),
            *conv_bn_relu(fourth, fifth, separable),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(fifth, DIGIT_CLASSES),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


def check_shifts(shifts: int) -> int:
    """`shifts` if it is a valid number of pixels for `ShiftAverage`, else `UserError`."""
    if type(shifts) is not int or not 0 <= shifts < IMAGE_SHAPE[-1] // 2:
        raise UserError(f"test_time_shifts must be 0 (none) or 1..13 pixels, got {shifts!r}")
    return shifts


def mean_of_probs(log_probs: Sequence[Tensor]) -> Tensor:
    """The log of the mean of the probabilities whose logs (or logits) are `log_probs`, each (B, C)."""
    parts = torch.stack([part.log_softmax(dim=1) for part in log_probs])
    return parts.logsumexp(dim=0) - math.log(len(log_probs))


class ShiftAverage(nn.Module):
    """Test-time augmentation around a backbone: (B, 1, 28, 28) images -> (B, 10) digit logits.

    In training, or with `shifts=0`, the backbone's own logits. Otherwise the backbone also reads each image
    moved `shifts` pixels left, right, up and down, and the logits are the log of the mean of the five
    views' probabilities: log-probabilities, which suit a sum head that reads the digit distribution (the
    exact one). `shifts` is a plain attribute, so an evaluation may change it.
    """

    def __init__(self, net: nn.Module, shifts: int = 0) -> None:
        super().__init__()
        self.net, self.shifts = net, check_shifts(shifts)
        self.register_load_state_dict_pre_hook(_add_net_prefix)

    def forward(self, image: Tensor) -> Tensor:
        if self.training or not self.shifts:
            return self.net(image)
        # Rolled-in edge pixels are blank on MNIST. One call per view: on a CPU, five calls of a batch ran
        # 1.7 times faster than one call of the five views stacked.
        views = [
            image,
            *(image.roll(step, dims=dim) for dim in (-1, -2) for step in (self.shifts, -self.shifts)),
        ]
        return mean_of_probs([self.net(view) for view in views])


def _add_net_prefix(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Lets a `ShiftAverage` load the weights of its bare net, as checkpoints saved before it wrapped the
    net hold them: `layers.0.weight` becomes `net.layers.0.weight`."""
    for key in [key for key in state_dict if key.startswith(prefix) and not key.startswith(f"{prefix}net.")]:
        state_dict[f"{prefix}net.{key.removeprefix(prefix)}"] = state_dict.pop(key)


def at_sums(values: Tensor, number: Tensor) -> Tensor:
    """(B, 10) values for sum - number = 0..9 and (B,) numbers -> (B, 19) over sums, -inf where impossible."""
    sums = number[:, None] + torch.arange(DIGIT_CLASSES, device=number.device)
    return values.new_full((number.shape[0], SUM_CLASSES), float("-inf")).scatter(1, sums, values)


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
            nn.Linear(2 * DIGIT_CLASSES, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, SUM_CLASSES)
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
            nn.Linear(DIGIT_CLASSES, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, DIGIT_CLASSES)
        )
        self.layers.requires_grad_(trainable)

    def forward(self, digit_logits: Tensor, number: Tensor) -> Tensor:
        return at_sums(self.layers(digit_logits), number)  # layers: logit(sum - number = k), k in 0..9


class ReferenceCNN(nn.Module):
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
            nn.Conv2d(1024, DIGIT_CLASSES, 3),
            nn.Flatten(),
        )

    def forward(self, image: Tensor) -> Tensor:
        return self.layers(image)


class ReferenceSumHead(nn.Module):
    """The published sum-only reference head, copied: [10 digit values, one-hot(number)] -> (B, 20).

    fc1 Linear(20, 200), fc2 Linear(200, 400), fc3 Linear(400, 800), with ReLU, then fc4 Linear(800, 20,
    bias=False). 20 outputs for 19 possible sums, as published: the sum is the argmax over all 20, so
    predicting the 20th is a miss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * DIGIT_CLASSES, 200),
            nn.ReLU(inplace=True),
            nn.Linear(200, 400),
            nn.ReLU(inplace=True),
            nn.Linear(400, 800),
            nn.ReLU(inplace=True),
            nn.Linear(800, 20, bias=False),
        )

    def forward(self, digit_logits: Tensor, number: Tensor) -> Tensor:
        return self.layers(with_number(digit_logits, number))


ECE_BINS = 15  # of every expected calibration error the project reports (Guo et al. 2017 use 15)

# An answer less likely than this is shown as "not sure", with the next likeliest reading. Chosen on the
# shipped model's validation images: `python -m mnist_adder.plots calibration` (results/calibration.md).
NOT_SURE_BELOW = 0.98


class AdderNet(nn.Module):
    """(B, 1, 28, 28) images and (B,) int64 numbers in 0..9 -> (B, 10) digit and (B, 19) sum logits.

    Each head answers on its own, and the two can disagree ("digit 4, 4 + 3 = 9"). What it tells people is
    one answer, consistent by construction: the digit d that maximises log p_digit(d) + log p_sum(d + n),
    with the sum d + n (`answer_log_probs`). `predict` and `probabilities` give that answer;
    `head_answers` gives each head's own, for the studies and the per-head accuracies.

    `digit_from_sum`: the net was trained on sums alone (its digit head is untrained), so its answer rests
    on the sum head alone, at the sums n..n+9. The published sum-only head (`ReferenceSumHead`) gives 20
    sum logits; the 20th is never right, and never an answer.

    `temperature` scales the answers' probabilities (`fit_temperature`): training fits it on the validation
    images after each validation, and a checkpoint keeps it (one written before it existed gets 1).
    """

    def __init__(self, backbone: nn.Module, sum_head: nn.Module, digit_from_sum: bool = False) -> None:
        super().__init__()
        self.backbone, self.sum_head, self.digit_from_sum = backbone, sum_head, digit_from_sum
        self.temperature = 1.0

    def forward(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        digit_logits = self.backbone(image.contiguous(memory_format=torch.channels_last))
        return digit_logits, self.sum_head(digit_logits, number)

    def head_answers(self, digit_logits: Tensor, sum_logits: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        """Each head's own digits and sums (B,) int64, from the logits. An adder's digit is its sum - number,
        which may fall outside 0..9 (a miss)."""
        total = sum_logits.argmax(dim=1)
        return (total - number if self.digit_from_sum else digit_logits.argmax(dim=1)), total

    def heads_disagree(self, digit_logits: Tensor, sum_logits: Tensor, number: Tensor) -> Tensor:
        """(B,) bool: where the heads' own answers contradict each other: the sum is not the digit + number,
        or (an adder, whose digit is its sum - number) the sum is out of number..number+9."""
        digit, total = self.head_answers(digit_logits, sum_logits, number)
        return (total != digit + number) | (total < number) | (total >= number + DIGIT_CLASSES)

    def answer_log_probs(
        self, digit_logits: Tensor, sum_logits: Tensor, number: Tensor, temperature: float | None = None
    ) -> Tensor:
        """(B, 10) log-probabilities of the consistent answers "digit d, sum d + number", d = 0..9:
        log p_digit(d) + log p_sum(d + number) (an adder's: log p_sum(d + number)), divided by the
        `temperature` (default: the net's) and normalised over d."""
        sums = number[:, None] + torch.arange(DIGIT_CLASSES, device=number.device)
        scores = sum_logits.log_softmax(dim=1).gather(1, sums)
        if not self.digit_from_sum:
            scores = scores + digit_logits.log_softmax(dim=1)
        return (scores / (self.temperature if temperature is None else temperature)).log_softmax(dim=1)

    def answers(self, digit_logits: Tensor, sum_logits: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        """The consistent answers of the logits: digits (B,) int64 in 0..9, and their sums digit + number."""
        digit = self.answer_log_probs(digit_logits, sum_logits, number).argmax(dim=1)
        return digit, digit + number

    @torch.inference_mode()
    def predict(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        """Digits and their sums (B,) int64, digit + number, for (B, 1, 28, 28) normalised images and (B,)
        numbers."""
        return self.answers(*self(image, number), number)

    @torch.inference_mode()
    def probabilities(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        """The answer's digit (B, 10) and sum (B, 19) probabilities for normalised images and (B,) numbers:
        one distribution over the consistent answers, so digit_probs[:, d] == sum_probs[:, d + number]."""
        digit_logits, sum_logits = self(image, number)
        digit_probs = self.answer_log_probs(digit_logits, sum_logits, number).exp()
        sums = number[:, None] + torch.arange(DIGIT_CLASSES, device=number.device)
        return digit_probs, torch.zeros_like(sum_logits).scatter(1, sums, digit_probs)


def thinned(image: Tensor) -> Tensor:
    """(B, 1, H, W) images, ink bright -> the same with each stroke about half a pixel thinner a side: the
    mean of the image and its 3x3 erosion (a minimum filter). Works on normalised images as on raw ones."""
    return (image - F.max_pool2d(-image, 3, stride=1, padding=1)) / 2


# How `AveragedNets` may read each image: as given, and with its strokes thinned (`thinned`), which on
# digits no MNIST writer wrote reads better and less often sure of a mistake (results/README.md).
VIEWS = {"as given": lambda image: image, "thinned": thinned}


class AveragedNets(AdderNet):
    """Several `AdderNet`s read as one: each head's probabilities are the mean of the nets' (a deep
    ensemble, Lakshminarayanan et al. 2017), and the answer is decoded from them as one net's is.

        net = AveragedNets([load_net(a), load_net(b)], views=("as given", "thinned"))
        digit_logits, sum_logits = net(image, number)   # (B, 10), (B, 19): log of the mean probabilities

    `views`: how each net reads each image (`VIEWS`), the mean taken over every net and view; by default
    as given only. On digits no MNIST writer wrote, the average of a few nets reads better than any one of
    them and is less often sure of a wrong answer, and more so when each also reads the image with its
    strokes thinned (results/README.md, "Several nets averaged" and "Each image read as given and
    thinned"). Its `temperature` is the mean of the nets' own. `python -m mnist_adder.average` writes the
    nets as one file that `load_net` reads (with `--temperature fit`, at a temperature fit on the
    validation images). It is read, never trained.
    """

    def __init__(self, nets: Sequence[AdderNet], views: Sequence[str] = ("as given",)) -> None:
        nn.Module.__init__(self)  # AdderNet's answers, not its parts: the nets hold the backbones and heads
        if not nets:
            raise UserError("no nets to average: give at least one checkpoint")
        if len({net.digit_from_sum for net in nets}) > 1:
            raise UserError(
                "nets to average must read digits alike: all trained with digits, or all on sums alone"
            )
        if not views or not set(views) <= VIEWS.keys():
            raise UserError(f"views must be one or more of {', '.join(map(repr, VIEWS))}, got {list(views)}")
        self.nets, self.views = nn.ModuleList(nets), tuple(views)
        self.digit_from_sum = nets[0].digit_from_sum
        self.temperature = self.mean_temperature

    @property
    def mean_temperature(self) -> float:
        """The mean of the nets' temperatures: the average's own, unless one was fit for it."""
        return sum(net.temperature for net in self.nets) / len(self.nets)

    def forward(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        each = [net(VIEWS[view](image), number) for view in self.views for net in self.nets]
        if len({sums.shape[1] for _, sums in each}) > 1:
            raise UserError("nets to average must have sum heads of one width")
        digit_logits, sum_logits = (mean_of_probs(head) for head in zip(*each, strict=True))
        return digit_logits, sum_logits


def fit_temperature(log_probs: Tensor, target: Tensor) -> float:
    """The temperature T that makes softmax(log_probs / T) most likely for (N, C) log-probabilities and
    (N,) int64 targets: temperature scaling (Guo et al. 2017). The order of the classes stays, so no answer
    changes, only how sure it is said to be. L-BFGS on log T, kept within [1/20, 20]."""
    with torch.inference_mode(False), torch.enable_grad():
        log_probs = log_probs.detach().float().cpu().clamp(min=-1e4).clone()  # no -inf: a finite loss
        target = target.detach().cpu().clone()
        log_t = torch.zeros((), requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], max_iter=50, line_search_fn="strong_wolfe")

        def nll() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(log_probs / log_t.exp(), target)
            loss.backward()
            return loss

        optimizer.step(nll)
    if not torch.isfinite(log_t):  # a line search that ran off: leave the probabilities as they are
        return 1.0
    return float(log_t.detach().clamp(-math.log(20), math.log(20)).exp())


def calibration_error(probs: Tensor, target: Tensor) -> float:
    """The expected calibration error of (N, C) probabilities for (N,) int64 targets, in `ECE_BINS` bins."""
    from torchmetrics.functional.classification import multiclass_calibration_error  # off predict's path

    return float(multiclass_calibration_error(probs, target, probs.shape[1], n_bins=ECE_BINS))


def build(spec: dict[str, Any] | nn.Module) -> nn.Module:
    """The net of a spec such as `{"_target_": "mnist_adder.models.nets.CompactCNN", "width": 16}`, or
    `spec` itself if it is a net already.

    Hydra's `instantiate` would do it, but loading a checkpoint for people must not pay Hydra's import, and
    a checkpoint may name only the nets of this module (by their path now or before, see `current_name`).
    """
    if isinstance(spec, nn.Module):
        return spec
    target = current_name(str(spec.get("_target_", "")))
    module, _, name = target.rpartition(".")
    net = globals().get(name) if module == __name__ else None
    if not (isinstance(net, type) and issubclass(net, nn.Module)):
        raise UserError(f"{spec.get('_target_') or spec!r} is not a net of {__name__}")
    return net(**{k: v for k, v in spec.items() if k[0] != "_"})


def adder_net(backbone: dict[str, Any] | nn.Module, sum_head: dict[str, Any] | nn.Module,
              digit_loss_weight: float = 1.0, test_time_shifts: int = 0, **_: Any) -> AdderNet:  # fmt: skip
    """The `AdderNet` of `DigitPlusNumberModule`'s arguments (a checkpoint's hyper-parameters), in
    channels_last memory format, which makes the convolutions about 30 % faster on a CPU."""
    net = AdderNet(ShiftAverage(build(backbone), test_time_shifts), build(sum_head), digit_loss_weight == 0)
    return net.to(memory_format=torch.channels_last)
