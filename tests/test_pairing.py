import pytest
import torch
from torch.utils.data import DataLoader

from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD
from mnist_adder.data.pairing import PairedDigits, keep_batch, pair_numbers
from tests.conftest import synthetic_mnist


def test_samples_have_documented_shapes_and_dtypes():
    dataset = PairedDigits(*synthetic_mnist(50), seed=0)
    image, number, digit, total = dataset[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert number.shape == digit.shape == total.shape == ()
    assert number.dtype == digit.dtype == total.dtype == torch.int64
    images, numbers, digits, totals = dataset.__getitems__([0, 1, 2])
    assert images.shape == (3, 1, 28, 28)
    assert torch.equal(images[2], dataset[2][0])


def test_images_are_normalised():
    images = torch.tensor([[0] * 28 * 28, [255] * 28 * 28], dtype=torch.uint8).view(2, 28, 28)
    batch = PairedDigits(images, torch.tensor([0, 1]), seed=0).__getitems__([0, 1])[0]
    assert batch[0].max() == pytest.approx(-MNIST_MEAN / MNIST_STD)
    assert batch[1].min() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD)


def test_sum_is_digit_plus_number_and_numbers_cover_0_to_9():
    dataset = PairedDigits(*synthetic_mnist(2000), seed=1)
    _, numbers, digits, totals = dataset.__getitems__(list(range(len(dataset))))
    assert torch.equal(totals, digits + numbers)
    assert set(numbers.tolist()) == set(range(10))
    assert numbers.bincount().min() > 150  # roughly uniform: 200 expected per number


def test_training_pairs_change_between_epochs_and_evaluation_pairs_do_not():
    images, digits = synthetic_mnist(1000)
    dataset = PairedDigits(images, digits, seed=5)
    epoch0 = dataset.numbers().clone()
    dataset.set_epoch(1)
    epoch1 = dataset.numbers().clone()
    assert (epoch0 != epoch1).float().mean() > 0.8
    assert torch.equal(PairedDigits(images, digits, seed=5).numbers(), epoch0)  # rebuilt: same pairs


def test_pairs_are_the_same_with_workers_and_each_worker_draws_its_own():
    dataset = PairedDigits(*synthetic_mnist(256), seed=3)
    loader = DataLoader(dataset, batch_size=32, num_workers=2, persistent_workers=True, collate_fn=keep_batch)
    for epoch in (0, 1):  # persistent workers must see the new epoch
        dataset.set_epoch(epoch)
        batches = [numbers for _, numbers, _, _ in loader]
        assert torch.equal(torch.cat(batches), pair_numbers(3, epoch, dataset.digits))
        assert not torch.equal(batches[0], batches[1])  # batches 0 and 1 come from different workers
