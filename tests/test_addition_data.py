"""The MNIST-addition samples: two N-digit numbers in images, grouped once, each image used once."""

import pytest
import torch

from mnist_adder import UserError
from mnist_adder.data.addition import AdditionSums, MNISTAdditionDataModule
from mnist_adder.data.carry import add
from tests.conftest import synthetic_mnist


def test_samples_are_two_numbers_in_images_and_their_sum():
    images, digits = synthetic_mnist(100)
    dataset = AdditionSums(images, digits, num_digits=3, seed=0)
    assert len(dataset) == 100 // 6  # every sum reads 6 images; 4 are left over
    image, sample_digits, total = dataset[2]
    assert image.shape == (6, 1, 28, 28) and image.dtype == torch.float32
    assert sample_digits.shape == (6,) and total.shape == (4,) and total.dtype == torch.int64
    assert torch.equal(total, add(sample_digits[None, :3], sample_digits[None, 3:])[0])
    used = dataset.groups.flatten()
    assert len(used.unique()) == len(used) == 96  # each image at most once
    assert torch.equal(sample_digits, digits[dataset.groups[2]])


def test_grouping_is_a_function_of_the_seed():
    images, digits = synthetic_mnist(60)
    first, again, other = (AdditionSums(images, digits, 1, seed) for seed in (4, 4, 5))
    assert torch.equal(first.groups, again.groups)
    assert not torch.equal(first.groups, other.groups)


def test_datamodule_batches_count_images_and_split_nothing_off_by_default(fake_mnist):
    datamodule = MNISTAdditionDataModule(num_digits=2, batch_size=64, augment={"degrees": 10})
    datamodule.setup()
    assert len(datamodule.train_set) == 600 // 4 and len(datamodule.val_set) == 0
    assert len(datamodule.test_set) == 200 // 4 and datamodule.val_dataloader() == []
    images, digits, total = next(iter(datamodule.train_dataloader()))
    assert images.shape == (16, 4, 1, 28, 28) and total.shape == (16, 3)


def test_bad_number_lengths_are_rejected():
    for bad in (0, -1, 2.5):
        with pytest.raises(UserError, match="data.num_digits must be a positive integer"):
            MNISTAdditionDataModule(num_digits=bad)


def test_numbers_too_long_for_a_split_are_rejected(fake_mnist):
    datamodule = MNISTAdditionDataModule(num_digits=200)  # 400 images a sum; the fake test split has 200
    with pytest.raises(UserError, match="data.num_digits=200 makes no sum of the 200 test images"):
        datamodule.setup("test")
