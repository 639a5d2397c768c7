import pytest
import torch
import torch.nn.functional as F

import mnist_adder.data.datamodule as data
from mnist_adder import UserError
from mnist_adder.data.damage import bitmap_counts
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD
from mnist_adder.data.pairing import PairedDigits
from mnist_adder.data.photos import ink_on_dark, to_mnist
from tests.conftest import synthetic_mnist


def test_datamodule_split_and_evaluation_pairs_are_fixed(fake_mnist):
    def build(seed):
        datamodule = DigitPlusNumberDataModule(val_size=100, seed=seed)
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


def test_bad_loader_settings_are_rejected():
    with pytest.raises(UserError, match="batch_size"):
        DigitPlusNumberDataModule(batch_size=0)
    with pytest.raises(UserError, match="num_workers"):
        DigitPlusNumberDataModule(num_workers=-1)


def test_random_distortion_moves_each_image_its_own_way_and_keeps_the_background():
    images = PairedDigits(*synthetic_mnist(1), seed=0)[0][0].expand(8, 1, 28, 28).clone()
    assert torch.allclose(data.RandomDistortion(degrees=0, translate=0, scale=0)(images), images, atol=1e-5)
    moved = data.RandomDistortion()(images)
    assert moved.shape == images.shape
    assert not torch.allclose(moved[0], moved[1])
    blank = torch.full((2, 1, 28, 28), -MNIST_MEAN / MNIST_STD)
    assert torch.allclose(data.RandomDistortion(degrees=30)(blank), blank, atol=1e-5)


def test_slant_and_width_change_a_digit_and_leave_the_older_draws_alone():
    background = -MNIST_MEAN / MNIST_STD
    bar = torch.full((16, 1, 28, 28), background)
    bar[..., 4:24, 11:17] = (1 - MNIST_MEAN) / MNIST_STD  # a vertical stroke, 6 pixels wide
    still = {"degrees": 0, "translate": 0, "scale": 0}
    plain = data.RandomDistortion(**still)(bar, torch.Generator().manual_seed(0))
    assert torch.allclose(plain, bar, atol=1e-5)

    def columns(images, rows):  # the ink's columns in those rows, per image
        return (images[:, 0, rows] > 0).any(dim=1).float().argmax(dim=-1)

    slanted = data.RandomDistortion(**still, shear=0.5)(bar, torch.Generator().manual_seed(0))
    moved = (columns(slanted, slice(4, 6)) - columns(slanted, slice(22, 24))).abs()
    assert moved.max() >= 4  # the top and the foot of the stroke are pixels apart
    widths = (data.RandomDistortion(**still, aspect=1.0)(bar) > 0)[:, 0, 14].sum(dim=-1)
    assert widths.min() < 6 < widths.max()
    # with neither, the same generator gives the same rotations, shifts and zooms as before both existed
    older = data.RandomDistortion()(bar, torch.Generator().manual_seed(1))
    assert torch.equal(data.RandomDistortion(shear=0, aspect=0)(bar, torch.Generator().manual_seed(1)), older)


def test_random_degradation_scans_at_low_resolution_and_changes_the_pen():
    background, full = -MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD
    images = torch.full((64, 1, 28, 28), background)
    images[..., 4:24, 12:15] = full  # a "1", three pixels wide
    assert torch.equal(data.RandomDegradation(resolution=0, stroke=0)(images), images)
    scanned = data.RandomDegradation(resolution=1, sizes=(8, 8))(images)
    ink = (images[:1] - background) * MNIST_STD
    expected = F.interpolate(F.interpolate(ink, size=(8, 8), mode="area"), size=(28, 28), mode="bicubic")
    expected = expected.clamp(0, 1) / expected.clamp(0, 1).max()
    assert torch.allclose(scanned, expected / MNIST_STD + background, atol=1e-5)
    assert torch.allclose(scanned.amax(dim=(1, 2, 3)), torch.tensor(full))  # the brightest ink is full again
    inked = (data.RandomDegradation(resolution=0, stroke=1)(images) > 0.5 * full + 0.5 * background).sum(
        dim=(1, 2, 3))  # fmt: skip
    before = int((images[0] > 0.5 * full + 0.5 * background).sum())
    assert (inked > before).any() and (inked < before).any()  # broader pens and finer ones
    blank = torch.full((2, 1, 28, 28), background)
    assert torch.allclose(data.RandomDegradation(resolution=1, stroke=1)(blank), blank, atol=1e-5)
    with pytest.raises(UserError, match="probabilities in"):
        data.RandomDegradation(resolution=2)
    with pytest.raises(UserError, match=r"sizes must be \[smallest, largest\] within 2..28"):
        data.RandomDegradation(sizes=(14, 7))


def test_bitmap_storage_matches_a_stored_file_read_back():
    # The batched storage in training must give what predict makes of a file stored that way:
    # damage.bitmap_counts (one image, as a file), then photos.to_mnist.
    rows, columns = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    radius = (((rows - 12) / 9) ** 2 + ((columns - 15) / 5) ** 2).sqrt()
    ring = ((1.5 - (radius - 1).abs() * 6).clamp(0, 1) * 255).to(torch.uint8)  # a "0", off centre
    ring[12:27, 19:21] = 255  # and a tail: a "9", whose centre of mass is not its box's centre
    from_file = torch.from_numpy(to_mnist(ink_on_dark(bitmap_counts(ring))))[None] * MNIST_STD + MNIST_MEAN
    stored = data.RandomDegradation(resolution=0, bitmap=1)((ring[None, None] / 255 - MNIST_MEAN) / MNIST_STD)
    stored = stored * MNIST_STD + MNIST_MEAN
    clean = torch.from_numpy(to_mnist(ring.numpy() / 255))[None] * MNIST_STD + MNIST_MEAN
    # Their resize kernels differ a little; the storage moves the digit further.
    assert (stored - from_file).abs().mean() < 0.6 * (clean - from_file).abs().mean()
    steps = torch.arange(28.0)
    for image in (stored[0, 0], from_file[0, 0]):  # the ink's box 20 pixels high, its mass at the centre
        inked = (image > 0.05).any(dim=1).nonzero()
        assert 19 <= int(inked.max() - inked.min()) + 1 <= 21
        ink = image.clamp(min=0)
        for profile in (ink.sum(dim=1), ink.sum(dim=0)):
            assert abs(float((profile * steps).sum() / profile.sum()) - 13.5) < 0.5
    with pytest.raises(UserError, match="probabilities in"):
        data.RandomDegradation(bitmap=1.5)


@pytest.mark.parametrize("module", ["digit_plus_number", "mnist_addition"])
def test_data_kept_on_the_device_gives_the_same_batches(fake_mnist, module):
    # On a GPU, on_device keeps every split there; the batches must be those of the CPU path. Here the
    # device is the CPU, so this checks that the on-device path cuts the same samples.
    from mnist_adder.data.addition import MNISTAdditionDataModule

    make = DigitPlusNumberDataModule if module == "digit_plus_number" else MNISTAdditionDataModule
    plain, kept = make(val_size=100, seed=3), make(val_size=100, seed=3, on_device=True)
    for datamodule in (plain, kept):
        datamodule.setup()
    assert kept.data_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        for ours, theirs in zip(next(iter(getattr(plain, loader)())), next(iter(getattr(kept, loader)())),
                                strict=True):  # fmt: skip
            assert torch.equal(ours, theirs.cpu())


def test_data_on_a_gpu_with_worker_processes_is_one_clear_error(fake_mnist, monkeypatch):
    datamodule = DigitPlusNumberDataModule(num_workers=2, on_device=True)
    monkeypatch.setattr(datamodule, "data_device", lambda: torch.device("cuda"))
    with pytest.raises(UserError, match="data.on_device keeps the images on the GPU.*data.num_workers=0"):
        datamodule.setup()
