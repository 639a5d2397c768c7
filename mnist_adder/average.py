"""Join several trained nets into one model file: each head's probabilities averaged over the nets.

    python -m mnist_adder.average A.ckpt B.ckpt C.ckpt --out averaged.ckpt
    mnist-adder-predict --checkpoint averaged.ckpt digit.png 3
    python -m mnist_adder.average A.ckpt B.ckpt --out fit.ckpt --temperature fit   # fit on validation
    python -m mnist_adder.average A.ckpt B.ckpt --out thin.ckpt --thinned   # each image read twice

On digits no MNIST writer wrote, a few nets averaged read better than one and are less often sure of a
wrong answer (results/README.md, "Several nets averaged"). The file holds the nets' weights, their
settings, temperatures and runs, and nothing of training: predict, the demo, robustness, export and the
model card read it as one model (`AveragedNets`); eval and train take one net's checkpoint. The answer's
temperature is the mean of the nets' own. `--temperature fit` fits one on MNIST's validation digits
instead: it made the average surer, and more often sure of a mistake, on the lettered digits that recipes
are chosen on (results/README.md). `--thinned` has each net read every image twice, as given and with its
strokes thinned (`nets.thinned`), at twice the arithmetic: on those lettered digits it read better and was
less often sure of a mistake, and the shipped model is written so. It never overwrites a file.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from mnist_adder import PROJECT_ROOT
from mnist_adder.data.datamodule import validation_digits
from mnist_adder.data.mnist import normalise
from mnist_adder.models.checkpoints import write_averaged
from mnist_adder.models.nets import AdderNet, fit_temperature
from mnist_adder.models.scoring import score
from mnist_adder.runs import app


def fit_on_validation(net: AdderNet) -> float:
    """The temperature that makes `net`'s answers on MNIST's validation digits most likely."""
    images, digits = validation_digits()
    return fit_temperature(score(net, normalise(images), digits).log_probs, digits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_adder.average", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("checkpoints", nargs="+", metavar="CKPT", help="one net's .ckpt file, for each net")
    parser.add_argument("--out", type=Path, required=True, help="the file to write (a new one)")
    parser.add_argument(
        "--temperature", choices=["mean", "fit"], default="mean",
        help="the mean of the nets' own (default), or one fit on MNIST's validation digits",
    )  # fmt: skip
    parser.add_argument(
        "--thinned", action="store_true",
        help="each net also reads every image with its strokes thinned, the answers averaged",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with app.user_errors():
        fit = fit_on_validation if args.temperature == "fit" else None
        views = ("as given", "thinned") if args.thinned else ("as given",)
        averaged = write_averaged(args.checkpoints, args.out, fit, views)
    nets = f"{len(averaged.nets)} net{'s' * (len(averaged.nets) > 1)}"
    read = " and ".join(averaged.views)
    print(f"wrote {args.out}: {nets}, each image read {read}, temperature {averaged.temperature:.3f}")
    digit = os.path.relpath(PROJECT_ROOT / "notebooks" / "seven.png")
    print(f"answer with: mnist-adder-predict --checkpoint {shlex.join([str(args.out), digit])} 3")


if __name__ == "__main__":
    main()
