import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mnist_adder import UserError
from mnist_adder.models.nets import (
    AdderNet,
    AveragedNets,
    CompactCNN,
    ExactSumHead,
    FastCNN,
    LearnedSumHead,
    ReferenceCNN,
    ReferenceSumHead,
    ShiftAverage,
    ShiftSumHead,
    TinyCNN,
    thinned,
)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_compact_backbone_gives_digit_logits_with_about_100k_parameters():
    backbone = CompactCNN(width=16)
    assert backbone(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert count(backbone) <= 100_000


def test_fast_backbone_gives_digit_logits_with_fewer_multiply_adds():
    fast, compact = FastCNN(), CompactCNN()
    assert fast(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert count(fast) == 29_178

    def mult_adds(net):
        with FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, 1, 28, 28))
        return counter.get_total_flops() // 2

    assert mult_adds(fast) < mult_adds(compact) / 2


def test_tiny_backbones_stay_under_8000_parameters_plain_or_separable():
    plain, separable = TinyCNN(), TinyCNN((16, 24, 32, 48, 56), separable=True)
    for net in (plain, separable):
        assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert count(plain) == 7_578 and count(separable) == 7_522
    with pytest.raises(UserError, match="TinyCNN takes 5 widths"):
        TinyCNN((8, 16))


def test_shift_average_loads_the_weights_of_its_bare_net():
    bare, wrapped = CompactCNN(width=4), ShiftAverage(CompactCNN(width=4), shifts=1)
    wrapped.load_state_dict(bare.state_dict())
    assert all(torch.equal(value, wrapped.net.state_dict()[key]) for key, value in bare.state_dict().items())
    wrapped.load_state_dict(wrapped.state_dict())  # and its own


def test_learned_sum_head_gives_19_logits_that_depend_on_the_number():
    head = LearnedSumHead(hidden=16)
    digit_logits = torch.randn(3, 10)
    low, high = head(digit_logits, torch.tensor([0, 0, 0])), head(digit_logits, torch.tensor([9, 9, 9]))
    assert low.shape == (3, 19)
    assert not torch.allclose(low, high)


def test_adder_net_returns_both_heads():
    net = AdderNet(CompactCNN(width=8), LearnedSumHead(hidden=16))
    digit_logits, sum_logits = net(torch.randn(5, 1, 28, 28), torch.arange(5))
    assert digit_logits.shape == (5, 10) and sum_logits.shape == (5, 19)


def test_sum_head_reads_probabilities_or_raw_logits():
    digit_logits, number = torch.randn(3, 10), torch.tensor([1, 2, 3])
    probs, logits = (
        LearnedSumHead(hidden=8, digit_input="probs"),
        LearnedSumHead(hidden=8, digit_input="logits"),
    )
    logits.load_state_dict(probs.state_dict())
    # Probabilities ignore a shift of all logits; raw logits do not.
    assert torch.allclose(probs(digit_logits + 5, number), probs(digit_logits, number), atol=1e-6)
    assert not torch.allclose(logits(digit_logits + 5, number), logits(digit_logits, number))
    with pytest.raises(UserError, match="model.sum_head.digit_input must be"):
        LearnedSumHead(digit_input="argmax")


def test_exact_head_is_the_digit_distribution_shifted_by_the_number():
    digit_logits, number = torch.randn(4, 10), torch.tensor([0, 3, 9, 5])
    sum_probs = ExactSumHead()(digit_logits, number).softmax(dim=1)
    digit_probs = digit_logits.softmax(dim=1)
    for row, n in enumerate(number.tolist()):
        assert torch.allclose(sum_probs[row, n : n + 10], digit_probs[row])
        assert sum_probs[row].sum() == pytest.approx(1.0)
    assert list(ExactSumHead().parameters()) == []


def test_exact_head_passes_gradients_from_the_sum_to_the_digits():
    digit_logits = torch.randn(2, 10, requires_grad=True)
    sum_logits = ExactSumHead()(digit_logits, torch.tensor([2, 7]))
    torch.nn.functional.cross_entropy(sum_logits, torch.tensor([5, 16])).backward()
    assert torch.isfinite(digit_logits.grad).all() and digit_logits.grad.abs().sum() > 0


def test_shift_head_is_equivariant_to_the_number():
    head, digit_logits = ShiftSumHead(hidden=16), torch.randn(5, 10)
    sums = head(digit_logits, torch.zeros(5, dtype=torch.long))
    for n in range(10):  # adding n to the number shifts every sum logit by n, the same learned values
        shifted = head(digit_logits, torch.full((5,), n))
        assert torch.equal(shifted[:, n : n + 10], sums[:, :10])
        assert torch.isinf(shifted[:, :n]).all() and torch.isinf(shifted[:, n + 10 :]).all()


def test_shift_head_learns_and_can_be_frozen():
    digit_logits = torch.randn(4, 10, requires_grad=True)
    head = ShiftSumHead(hidden=16)
    torch.nn.functional.cross_entropy(
        head(digit_logits, torch.tensor([0, 1, 2, 3])), torch.tensor([3, 4, 5, 6])
    ).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert digit_logits.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in ShiftSumHead(trainable=False).parameters())


def test_seed_nets_copy_the_published_parameter_counts_and_shapes():
    dual = AdderNet(ReferenceCNN(), LearnedSumHead(hidden=128, digit_input="logits"))
    adder = AdderNet(ReferenceCNN(), ReferenceSumHead())
    assert count(dual) == 6_384_925
    assert count(adder) == 6_801_186
    image, number = torch.randn(2, 1, 28, 28), torch.tensor([1, 8])
    assert [tuple(out.shape) for out in dual(image, number)] == [(2, 10), (2, 19)]
    assert [tuple(out.shape) for out in adder(image, number)] == [(2, 10), (2, 20)]


def test_nets_averaged_give_the_mean_of_each_heads_probabilities_at_the_mean_temperature():
    images, numbers = torch.randn(6, 1, 28, 28), torch.arange(6) % 10
    nets = []
    for seed, temperature in ((0, 1.0), (1, 3.0)):
        torch.manual_seed(seed)
        nets.append(AdderNet(CompactCNN(width=4), LearnedSumHead(hidden=8)).eval())
        nets[-1].temperature = temperature
    averaged = AveragedNets(nets)
    assert averaged.temperature == 2.0
    with torch.inference_mode():
        digit_logits, sum_logits = averaged(images, numbers)
        heads = [net(images, numbers) for net in nets]
    for logits, each in zip((digit_logits, sum_logits), zip(*heads, strict=True), strict=True):
        assert torch.allclose(logits.exp(), (each[0].softmax(dim=1) + each[1].softmax(dim=1)) / 2, atol=1e-6)
    digit_probs, sum_probs = averaged.probabilities(images, numbers)
    assert torch.allclose(digit_probs, sum_probs.gather(1, numbers[:, None] + torch.arange(10)))
    alone = AveragedNets(nets[:1])
    assert torch.allclose(alone.probabilities(images, numbers)[0], nets[0].probabilities(images, numbers)[0],
                          atol=1e-6)  # fmt: skip


def test_a_thinned_view_thins_each_stroke_and_is_averaged_with_the_image_as_given():
    bar = torch.zeros(1, 1, 9, 9)
    bar[..., 3:6] = 1.0  # a stroke 3 pixels wide
    thin = thinned(bar)
    assert thin[0, 0, 4].tolist() == [0, 0, 0, 0.5, 1, 0.5, 0, 0, 0]  # its edges half as bright
    assert torch.equal(thinned(bar * 2 - 1), thin * 2 - 1)  # the same on normalised images
    images, numbers = torch.randn(6, 1, 28, 28), torch.arange(6) % 10
    torch.manual_seed(0)
    net = AdderNet(CompactCNN(width=4), LearnedSumHead(hidden=8)).eval()
    both = AveragedNets([net], views=("as given", "thinned"))
    with torch.inference_mode():
        digit_logits, _ = both(images, numbers)
        each = [net(view, numbers)[0].softmax(dim=1) for view in (images, thinned(images))]
    assert torch.allclose(digit_logits.exp(), (each[0] + each[1]) / 2, atol=1e-6)
    with pytest.raises(UserError, match="views must be one or more of 'as given', 'thinned'"):
        AveragedNets([net], views=("sharpened",))


def test_nets_that_read_digits_differently_are_not_averaged():
    with pytest.raises(UserError, match="read digits alike"):
        AveragedNets([AdderNet(CompactCNN(width=4), LearnedSumHead(hidden=8)),
                      AdderNet(CompactCNN(width=4), ReferenceSumHead(), digit_from_sum=True)])  # fmt: skip
    with pytest.raises(UserError, match="no nets to average"):
        AveragedNets([])
