"""Read digits from your own images and add numbers to them.

    mnist-adder-predict photo_of_a_7.jpg 5 scan_of_a_2.png 9
    python -m mnist_adder.predict --checkpoint lightning_logs/.../epoch14.ckpt digit.png 3 --json

An image is prepared the way MNIST's digits were (`mnist_adder.data.photos`). Without --checkpoint, the newest
best checkpoint under lightning_logs/ answers. Neither Lightning nor Hydra is imported: it answers in
about the time of `import torch`.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch import Tensor

from mnist_adder import UserError
from mnist_adder.data.mnist import DIGIT_CLASSES
from mnist_adder.data.photos import read_image, to_mnist
from mnist_adder.models.checkpoints import load_net, newest_checkpoint
from mnist_adder.models.nets import NOT_SURE_BELOW, AdderNet


def parse_number(text: str) -> int:
    if not (text.isdigit() and int(text) < DIGIT_CLASSES):
        raise UserError(f"number {text!r} is not an integer in 0..9")
    return int(text)


def predict(net: AdderNet, images: Tensor, numbers: Tensor) -> list[dict]:
    """The answers for (B, 1, 28, 28) images and (B,) numbers: each digit, its sum digit + number, the
    answer's calibrated probability, whether it is `sure` (at least `NOT_SURE_BELOW`), and the two
    likeliest `readings` (`AdderNet.probabilities`)."""
    digit_probs, _ = net.probabilities(images, numbers)
    results = []
    for probs, number in zip(digit_probs, numbers.tolist(), strict=True):
        top = probs.topk(2)
        readings = [
            {"digit": int(digit), "sum": int(digit) + number, "probability": float(p)}
            for digit, p in zip(top.indices, top.values, strict=True)
        ]
        sure = readings[0]["probability"] >= NOT_SURE_BELOW
        results.append({"number": number, **readings[0], "sure": sure, "readings": readings})
    return results


def predict_files(pairs: list[str], checkpoint: str | None = None) -> list[dict]:
    """Predictions for [IMAGE, NUMBER, IMAGE, NUMBER, ...]; raises UserError on any bad input."""
    if len(pairs) % 2:
        raise UserError(f"got {len(pairs)} arguments: give pairs of IMAGE NUMBER, e.g. `digit.png 5`")
    paths, texts = pairs[0::2], pairs[1::2]
    numbers = torch.tensor([parse_number(text) for text in texts])
    images = torch.stack([to_mnist(read_image(path), name=f"image {path}") for path in paths])
    results = predict(load_net(checkpoint or newest_checkpoint()), images, numbers)
    for path, result in zip(paths, results, strict=True):
        result["image"] = path
    return results


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise UserError(f"{message} (see --help)")


def main(argv: list[str] | None = None) -> None:
    parser = Parser(
        prog="mnist-adder-predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pairs", nargs="+", metavar="IMAGE NUMBER", help="an image file and a number in 0..9")
    parser.add_argument(
        "--checkpoint", help="a .ckpt file; default: the newest best one under lightning_logs/"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    try:
        args = parser.parse_args(argv)
        results = predict_files(args.pairs, args.checkpoint)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        first, second = (
            f"digit {x['digit']}, sum {x['sum']} ({x['probability']:.1%})"
            for x in r["readings"]
        )
        print(f"{r['image']} + {r['number']}: {first if r['sure'] else f'not sure: {first}, or {second}'}")


if __name__ == "__main__":
    main()
