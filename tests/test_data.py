import pytest
import torch
from torch.utils.data import DataLoader

import mnist_adder.data as data
from mnist_adder import UserError
from mnist_adder.data import MNISTAdderDataModule, PairedDigits, keep_batch, pair_numbers
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
    assert batch[0].max() == pytest.approx(-data.MNIST_MEAN / data.MNIST_STD)
    assert batch[1].min() == pytest.approx((1 - data.MNIST_MEAN) / data.MNIST_STD)


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


def test_datamodule_split_and_evaluation_pairs_are_fixed(fake_mnist):
    def build(seed):
        datamodule = MNISTAdderDataModule(val_size=100, seed=seed)
        datamodule.setup()
        return datamodule

    a, b = build(seed=1), build(seed=2)
    assert len(a.train_set) == 500 and len(a.val_set) == 100 and len(a.test_set) == 200
    for split in ("val_set", "test_set"):
        first, second = getattr(a, split), getattr(b, split)
        assert torch.equal(first.images, second.images)
        assert torch.equal(first.numbers(), second.numbers())
    assert not torch.equal(
        a.train_set.numbers(), b.train_set.numbers()
    )  # the run's seed draws training pairs
    batch = next(iter(a.train_dataloader()))
    assert batch[0].shape == (256, 1, 28, 28)


def test_a_file_failing_its_checksum_is_deleted_and_never_used(tmp_path, monkeypatch):
    raw = data.raw_dir(tmp_path)
    raw.mkdir(parents=True)
    for name in data.MNIST_SHA256:
        (raw / name).write_bytes(b"not mnist")
    assert data.discard_bad_files(raw) == list(data.MNIST_SHA256)
    assert not any(raw.iterdir())

    def fetch_corrupt(data_dir):  # a route that delivers the wrong bytes
        for name in data.MNIST_SHA256:
            (data.raw_dir(data_dir) / name).write_bytes(b"still not mnist")

    monkeypatch.setattr(data, "FETCHERS", [fetch_corrupt])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        data.fetch_mnist(tmp_path)
    assert not any(raw.iterdir())


def test_a_data_dir_that_cannot_be_written_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="is not a writable folder"):
        data.fetch_mnist(blocker)


def test_bad_loader_settings_are_rejected():
    with pytest.raises(UserError, match="batch_size"):
        MNISTAdderDataModule(batch_size=0)
    with pytest.raises(UserError, match="num_workers"):
        MNISTAdderDataModule(num_workers=-1)


def test_random_affine_moves_each_image_its_own_way_and_keeps_the_background():
    images = PairedDigits(*synthetic_mnist(1), seed=0)[0][0].expand(8, 1, 28, 28).clone()
    assert torch.allclose(data.RandomAffine(degrees=0, translate=0, scale=0)(images), images, atol=1e-5)
    moved = data.RandomAffine()(images)
    assert moved.shape == images.shape
    assert not torch.allclose(moved[0], moved[1])
    blank = torch.full((2, 1, 28, 28), -data.MNIST_MEAN / data.MNIST_STD)
    assert torch.allclose(data.RandomAffine(degrees=30)(blank), blank, atol=1e-5)
