"""Stage what the GPU check needs on a machine that can fetch nothing: run here, then send the folder.

    python -m benchmarks.gpu_stage     # fills gpu_stage/ (git-ignored): wheels for Python 3.12, MNIST

The GPU machine's image has torch, torchvision, lightning, torchmetrics and tensorboard, but not Hydra:
this downloads the wheels of hydra-core and omegaconf (which carries its own antlr4 since 2.4), at
the versions installed here (the ones the tests ran with), and gzips the four MNIST files. It checks
that the folder and the working tree together stay under the 64 MiB that travel. Then
`python benchmarks/gpu.py` runs there.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.data.mnist import MNIST_SHA256, fetch_mnist

STAGE = PROJECT_ROOT / "gpu_stage"
WHEELS = ("hydra-core", "omegaconf")
LIMIT_BYTES = 64 * 2**20  # what travels with the working tree


def size(paths: list[Path]) -> int:
    return sum(path.stat().st_size for path in paths if path.is_file())


def stage(folder: Path) -> dict:
    wheels, mnist = folder / "wheels", folder / "mnist"
    for path in (wheels, mnist):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    for name in WHEELS:  # pip wheel: a wheel, built if a package were published as source only
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels)]
        subprocess.run([*pip, f"{name}=={version(name)}"], check=True)
    raw = fetch_mnist(PROJECT_ROOT / "data")
    for name in MNIST_SHA256:
        with open(raw / name, "rb") as source, gzip.open(mnist / f"{name}.gz", "wb") as target:
            shutil.copyfileobj(source, target)
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout
    staged = size(list(folder.rglob("*")))
    tree = size([PROJECT_ROOT / name for name in tracked.split()])
    if staged + tree > LIMIT_BYTES:
        raise UserError(f"{folder} ({staged / 2**20:.1f} MiB) and the working tree ({tree / 2**20:.1f} MiB) "
                        f"exceed the {LIMIT_BYTES / 2**20:.0f} MiB that travel")  # fmt: skip
    return {"wheels": sorted(path.name for path in wheels.iterdir()), "staged_mib": staged / 2**20,
            "tree_mib": tree / 2**20}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=STAGE, help="the folder to fill (default gpu_stage/)")
    args = parser.parse_args(argv)
    try:
        staged = stage(args.out)
    except UserError as error:
        sys.exit(f"error: {error}")
    print(f"staged {', '.join(staged['wheels'])} and MNIST in {args.out}: {staged['staged_mib']:.1f} MiB, "
          f"with the working tree {staged['staged_mib'] + staged['tree_mib']:.1f} MiB of 64")  # fmt: skip
    return staged


if __name__ == "__main__":
    main()
