"""The LightningDataModules: MNIST split, sampled, batched and augmented, for each task.

Data flows: raw IDX files (`mnist`) -> uint8 tensors in memory -> samples of a task (`pairing`: image and
number; `addition_data`: two numbers written in images) -> batches -> the net.

    from mnist_adder.data.datamodule import DigitPlusNumberDataModule
    dm = DigitPlusNumberDataModule(); dm.prepare_data(); dm.setup("fit")   # MNIST in the project's data/
    image, number, digit, total = next(iter(dm.train_dataloader()))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mnist_adder import DATA_DIR, FROM_RECIPE, UserError, with_recipe, writable_folder
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD, fetch_mnist, load_mnist
from mnist_adder.data.pairing import PairedDigits, holdout_mask, keep_batch

SHARED_CHECKED = ("batch_size", "num_workers", "val_size", "seed")  # settings every task's data module has
ORDER, AUGMENT = 1, 2  # what a seed derived from the run's seed is for; samples use the run's seed itself


def derived_seed(seed: int, purpose: int, *more: int) -> int:
    """A seed for one purpose (ORDER, AUGMENT) and occasion, statistically independent of the others."""
    return int(np.random.SeedSequence([seed, purpose, *more]).generate_state(1)[0])


class EpochSampler(DistributedSampler):
    """The training order: a shuffle drawn from (seed, epoch), this process's share of it, and the epoch
    passed on to a dataset that has `set_epoch` (`PairedDigits` draws fresh pairs), so that samples, order
    and a resumed run's epochs never depend on the past.

    Lightning calls `set_epoch` every epoch and, as this is a `DistributedSampler`, leaves it in place
    under DDP instead of wrapping it.
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class RandomDistortion(nn.Module):
    """Rotate, scale and shift each image of a (B, 1, 28, 28) normalised batch by its own random amount: an
    angle in +-`degrees`, a zoom in 1 +- `scale` and a shift in +-`translate` of the image size, in one
    `grid_sample`. Writers differ in slant and width too: `shear` slants the digit by up to that many
    pixels sideways per pixel of height, and `aspect` makes it up to 1 + `aspect` times wider or narrower
    (both 0, the default, draw nothing, and the other draws stay as they were). torchvision's transforms
    draw one distortion per call, which would move a whole batch alike.
    """

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: float = 0.1,
        shear: float = 0.0,
        aspect: float = 0.0,
    ) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.shear, self.aspect = shear, aspect

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augmented images; the random draws come from `generator` (a CPU one), or torch's global one."""
        shift = 2 * self.translate  # the grid spans [-1, 1]
        bounds = torch.tensor([math.radians(self.degrees), self.scale, shift, shift])
        draws = (torch.rand(len(images), 4, generator=generator) * 2 - 1) * bounds
        angle, zoom, shift_x, shift_y = draws.to(images.device).unbind(dim=1)
        cos, sin = angle.cos() / (1 + zoom), angle.sin() / (1 + zoom)
        theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
        if self.shear or self.aspect:  # each output point reads the input at theta @ (x / width + slant y, y)
            more = torch.rand(len(images), 2, generator=generator) * 2 - 1
            slant, stretch = (more * torch.tensor([self.shear, math.log1p(self.aspect)])).to(images.device).T
            zero, one = torch.zeros_like(slant), torch.ones_like(slant)
            writer = torch.stack([torch.stack([(-stretch).exp(), slant], 1), torch.stack([zero, one], 1)], 1)
            theta = torch.cat([theta[:, :, :2] @ writer, theta[:, :, 2:]], dim=2)
        background = -MNIST_MEAN / MNIST_STD  # what a blank pixel becomes once normalised
        return resampled(images - background, theta, images.shape[-1]) + background


class RandomDegradation(nn.Module):
    """What a digit suffers on its way from another writer's page, drawn for each image of a (B, 1, 28, 28)
    normalised batch. With probability `resolution`: a scan at low resolution, the 28x28 field shrunk by
    area to s x s (s drawn from `sizes`, both ends included: the 20-pixel digit becomes 20 s / 28 pixels)
    and enlarged again smoothly, as `mnist_adder.data.photos.to_mnist` prepares such a file. With
    probability `stroke`: a pen finer or broader than the writer's, each stroke worn away or grown by half a
    pixel a side. With probability `bitmap`, in place of the scan: stored as a form reader of the 1990s
    stored digits (`stored_as_bitmaps`), then prepared as `to_mnist` prepares such a file. A degraded image is
    rescaled so that its brightest ink is full, as `to_mnist` does.
    """

    def __init__(
        self, resolution: float = 0.5, sizes: Sequence[int] = (7, 14), stroke: float = 0.0, bitmap: float = 0
    ) -> None:
        super().__init__()
        if not all(0 <= share <= 1 for share in (resolution, stroke, bitmap)):
            raise UserError(f"data.degrade: resolution, stroke and bitmap are probabilities in [0, 1], got "
                            f"{resolution}, {stroke} and {bitmap}")  # fmt: skip
        if not 2 <= sizes[0] <= sizes[1] <= 28:
            raise UserError(f"data.degrade.sizes must be [smallest, largest] within 2..28, got {list(sizes)}")
        self.resolution, self.sizes, self.stroke, self.bitmap = resolution, tuple(sizes), stroke, bitmap

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Degraded images; the random draws come from `generator` (a CPU one), or torch's global one."""
        background = -MNIST_MEAN / MNIST_STD
        ink = ((images - background) * MNIST_STD).clamp(0, 1)
        draws = torch.rand(len(images), 5, generator=generator)
        smallest, largest = self.sizes
        sizes = smallest + (draws[:, 1] * (largest - smallest + 1)).long().clamp(max=largest - smallest)
        stored = draws[:, 4] < self.bitmap  # stored as bitmap counts, and not scanned
        sizes[(draws[:, 0] >= self.resolution) | stored] = 0  # 0: kept at full resolution
        stored = stored.to(images.device)
        broader = draws[:, 3] < 0.5
        worn = (draws[:, 2] < self.stroke).to(images.device)
        changed = (sizes > 0).to(images.device) | worn | stored
        for size in sizes.unique().tolist():
            if size:
                chosen = (sizes == size).to(images.device)
                small = F.interpolate(ink[chosen], size=(size, size), mode="area")
                ink[chosen] = F.interpolate(small, size=(28, 28), mode="bicubic", align_corners=False)
        if worn.any():
            fine = F.interpolate(ink[worn], scale_factor=2, mode="bilinear", align_corners=False)
            grown, shrunk = F.max_pool2d(fine, 3, 1, 1), -F.max_pool2d(-fine, 3, 1, 1)
            pen = torch.where(broader.to(images.device)[worn, None, None, None], grown, shrunk)
            ink[worn] = F.interpolate(pen, size=(28, 28), mode="area")
        if stored.any():
            ink[stored] = stored_as_bitmaps(ink[stored].clamp(0, 1))
        ink = ink.clamp(0, 1)
        ink = ink / ink.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-3)
        return torch.where(changed[:, None, None, None], ink / MNIST_STD + background, images)


def stored_as_bitmaps(ink: Tensor) -> Tensor:
    """(B, 1, 28, 28) ink in [0, 1] -> the same digits as UCI's form reader stored them and `to_mnist` reads
    them back (`mnist_adder.data.damage.bitmap_counts` does it to one image, as a file): the ink's box scaled
    to fill 32 pixels, centred in 32x32 and made black or white; each 4x4 block's count of ink kept, 8x8 in
    17 levels; then enlarged smoothly so that the box fills 20 pixels, with its centre of mass at the centre
    of the 28x28 field. An image with no ink stays blank."""
    rows, columns = (ink > 0.05).any(dim=-1).float(), (ink > 0.05).any(dim=-2).float()  # (B, 1, 28)

    def span(lines: Tensor) -> tuple[Tensor, Tensor]:  # the first and one past the last inked line
        first, last = lines.argmax(dim=-1), 28 - lines.flip(-1).argmax(dim=-1)
        return first.flatten().float(), last.flatten().float()

    (top, bottom), (left, right) = span(rows), span(columns)
    side = torch.maximum(bottom - top, right - left).clamp(min=1) / 28  # the box's longer side, as a share
    zero = torch.zeros_like(side)
    box = torch.stack([torch.stack([side, zero, (left + right) / 28 - 1], 1),
                       torch.stack([zero, side, (top + bottom) / 28 - 1], 1)], 1)  # fmt: skip
    field = resampled(ink, box, 32)
    counts = F.avg_pool2d((field >= 0.5).float(), 4)  # 8x8 in steps of 1/16
    digit = F.interpolate(counts, size=(20, 20), mode="bicubic", align_corners=False).clamp(0, 1)
    mass = digit.sum(dim=(-2, -1)).clamp(min=1e-6)
    steps = torch.arange(20, dtype=ink.dtype, device=ink.device) + 0.5
    center_y = (digit.sum(dim=-1) * steps).sum(dim=-1) / mass  # (B, 1), in the 20-pixel box
    center_x = (digit.sum(dim=-2) * steps).sum(dim=-1) / mass
    # The box at rows 4..23 of the field, moved by whole pixels to bring its centre of mass to 14.
    shift_y, shift_x = ((10 - center).round().clamp(-4, 4).flatten() for center in (center_y, center_x))
    one = torch.ones_like(side)
    move = torch.stack([torch.stack([one, zero, -2 * shift_x / 28], 1),
                        torch.stack([zero, one, -2 * shift_y / 28], 1)], 1)  # fmt: skip
    placed = F.pad(digit, (4, 4, 4, 4))
    return resampled(placed, move, 28)


def resampled(images: Tensor, theta: Tensor, size: int) -> Tensor:
    """(B, 1, H, W) images sampled (bilinear, zero outside) on a size x size grid that `theta`, (B, 2, 3),
    maps into them, as `F.affine_grid` does."""
    grid = F.affine_grid(theta, [len(images), 1, size, size], align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


class MNISTDataModule(L.LightningDataModule):
    """What every task's data module shares: `val_size` validation images split off the official 60k
    training images by `eval_seed` (the same for every run), the 10k test images, loaders that give each
    process its share, and augmentation of training images on their device.

    A task's subclass turns images and digits into its samples (`make_dataset`). Training order and
    augmentation are drawn from (`seed`, epoch) alone, so a run resumed at epoch k trains exactly as if it
    had never stopped. `augment` and `degrade` hold the `RandomDistortion` and `RandomDegradation`
    arguments, or None. `on_device` keeps every split on the accelerator (see `data_device`). A batch's
    first element is its images, (B, ..., 1, 28, 28): every image is augmented on its own.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        """`settings`: the subclass's arguments, every one given (see `DigitPlusNumberDataModule`)."""
        super().__init__()
        batch_size, num_workers, val_size, seed = (settings[name] for name in SHARED_CHECKED)
        if batch_size < 1:
            raise UserError(f"data.batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"data.num_workers must be 0 or more, got {num_workers}")
        if not 0 <= val_size < 60_000:
            raise UserError(f"data.val_size must be in 0..59999 (images of the training set), got {val_size}")
        if not 0 <= seed < 2**32:
            raise UserError(f"seed must be an integer in 0..{2**32 - 1}, got {seed}")
        writable_folder(Path(settings["data_dir"]), "data.data_dir")
        self.save_hyperparameters(settings)
        augment, degrade = settings["augment"], settings["degrade"]
        self.augment = RandomDistortion(**augment) if augment else None
        self.degrade = RandomDegradation(**degrade) if degrade else None
        self._augment_epoch, self._augment_generator = -1, None  # made per epoch; a Generator won't pickle
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def make_dataset(self, images: Tensor, digits: Tensor, split: str) -> Dataset:
        """The task's samples from (N, 28, 28) uint8 images and (N,) digits of a split: train, val, test."""
        raise NotImplementedError

    @property
    def batch_samples(self) -> int:
        """Samples per batch."""
        return self.hparams.batch_size

    def prepare_data(self) -> None:
        fetch_mnist(self.hparams.data_dir)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        device = self.data_device()
        if device.type == "cuda" and hp.num_workers > 0:
            raise UserError("data.on_device keeps the images on the GPU, where worker processes cannot cut "
                            "batches: set data.num_workers=0")  # fmt: skip
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, digits = load_mnist(hp.data_dir, train=True)
            order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(hp.eval_seed))
            val, train = order[: hp.val_size], order[hp.val_size :]
            images, digits = images.to(device), digits.to(device)
            self.train_set = self.make_dataset(images[train], digits[train], "train")
            self.val_set = self.make_dataset(images[val], digits[val], "val")
        if stage in (None, "test", "predict") and self.test_set is None:
            images, digits = load_mnist(hp.data_dir, train=False)
            self.test_set = self.make_dataset(images.to(device), digits.to(device), "test")

    def data_device(self) -> torch.device:
        """Where every split is kept: with `on_device`, the trainer's device (or CUDA's, with no trainer), so
        that batches are cut there and nothing is copied per step; else the CPU."""
        if not self.hparams.on_device:
            return torch.device("cpu")
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this one's rank): each loads its share of every split."""
        return (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)

    def _loader(self, dataset: Dataset, sampler: DistributedSampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_samples,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            collate_fn=keep_batch,
        )

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0  # a resumed run starts at its own epoch
        seed = derived_seed(self.hparams.seed, ORDER)
        return self._loader(self.train_set, EpochSampler(self.train_set, seed, epoch, *self._processes()))

    def _eval_loader(self, dataset: Dataset) -> DataLoader | list:
        if not len(dataset):  # val_size=0: no validation
            return []
        # Every sample exactly once across processes: DistributedSampler would pad with repeats.
        return self._loader(dataset, UnrepeatedDistributedSampler(dataset, *self._processes(), shuffle=False))

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.test_set)

    def on_after_batch_transfer(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> tuple[Tensor, ...]:
        augmenting = self.augment is not None or self.degrade is not None
        if augmenting and self.trainer is not None and self.trainer.training:
            epoch = self.trainer.current_epoch
            if epoch != self._augment_epoch:
                seed = derived_seed(self.hparams.seed, AUGMENT, epoch, self.trainer.global_rank)
                self._augment_epoch, self._augment_generator = epoch, torch.Generator().manual_seed(seed)
            images, *rest = batch
            augmented = images.flatten(0, -4)
            for augmentation in (self.augment, self.degrade):
                if augmentation is not None:
                    augmented = augmentation(augmented, self._augment_generator)
            batch = (augmented.view(images.shape), *rest)
        return batch


class DigitPlusNumberDataModule(MNISTDataModule):
    """Paired MNIST (`PairedDigits`): 55k training and 5k validation images, 10k test, each with a number.

    The validation and test pairs are fixed by `eval_seed`, so every run is scored on the same samples;
    training pairs are redrawn every epoch from (`seed`, epoch). `holdout_pairs` (see
    `mnist_adder.data.pairing.holdout_mask`) are (digit, number) pairs that training never shows; validation
    and test pair every digit with all ten numbers. `batch_size` counts samples (images).

    An argument left out takes its value from `data=digit_plus_number` (conf/data/digit_plus_number.yaml);
    `data_dir`, where MNIST is fetched once, defaults to the project's `data/` whatever the current folder.
    """

    def __init__(
        self,
        data_dir: str = DATA_DIR,
        batch_size: int = FROM_RECIPE,
        num_workers: int = FROM_RECIPE,
        val_size: int = FROM_RECIPE,
        seed: int = 0,
        eval_seed: int = FROM_RECIPE,
        augment: dict[str, float] | None = FROM_RECIPE,
        degrade: dict[str, Any] | None = FROM_RECIPE,
        holdout_pairs: str | list[list[int]] | None = FROM_RECIPE,
        on_device: bool = False,
    ) -> None:
        super().__init__(with_recipe("data/digit_plus_number", locals()))
        self.held_out = holdout_mask(self.hparams.holdout_pairs)

    def make_dataset(self, images: Tensor, digits: Tensor, split: str) -> PairedDigits:
        if split == "train":
            return PairedDigits(images, digits, seed=self.hparams.seed, held_out=self.held_out)
        return PairedDigits(images, digits, seed=self.hparams.eval_seed)


def validation_digits(data_dir: str | Path = DATA_DIR) -> tuple[Tensor, Tensor]:
    """The validation split that training holds out of MNIST's training images (`data.eval_seed` 0), for
    choosing and calibrating outside a run: (N, 28, 28) uint8 images, (N,) int64 digits."""
    datamodule = DigitPlusNumberDataModule(data_dir=data_dir)
    datamodule.prepare_data()
    datamodule.setup("validate")
    return datamodule.val_set.images, datamodule.val_set.digits
