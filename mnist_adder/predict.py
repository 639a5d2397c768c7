"""Read digits from your own images and add numbers to them.

    mnist-adder-predict photo_of_a_7.jpg 5 scan_of_a_2.png 9
    python -m mnist_adder.predict --checkpoint lightning_logs/.../epoch14.ckpt digit.png 3 --json
    mnist-adder-predict --model model.onnx digit.png 3      # exported: onnxruntime alone, no torch
    mnist-adder-predict --checkpoint A.ckpt --checkpoint B.ckpt digit.png 3   # several nets, averaged

An image is prepared the way MNIST's digits were (`mnist_adder.data.photos`). Without --checkpoint or
--model, the newest best checkpoint trained under lightning_logs/ answers, and before any, the shipped
model: lightning_logs/reference/averaged.ckpt, six nets averaged, each reading every image as given and
with its strokes thinned (`default_model`). Several --checkpoint answer as one model, each head's
probabilities averaged over the nets (`AveragedNets`), which on other writers' digits reads better and is
less often sure of a wrong answer than one net (results/README.md); `python -m mnist_adder.average` joins
them into one file. Neither Lightning nor Hydra is imported, and with --model (a file from `python -m
mnist_adder.export`) not torch either: numpy, Pillow and onnxruntime are all it needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import numpy as np

from mnist_adder import UserError
from mnist_adder.data.mnist import DIGIT_CLASSES
from mnist_adder.data.photos import read_image, to_mnist

if TYPE_CHECKING:
    from torch import Tensor

    from mnist_adder.models.nets import AdderNet


def parse_number(text: str) -> int:
    if not (text.isdigit() and int(text) < DIGIT_CLASSES):
        raise UserError(f"number {text!r} is not an integer in 0..9")
    return int(text)


def answers(digit_probs: np.ndarray, numbers: list[int], not_sure_below: float) -> list[dict]:
    """The answers of (B, 10) probabilities of "digit d, sum d + number" for B numbers: each digit, its sum
    digit + number, the answer's probability, whether it is `sure` (at least `not_sure_below`), and the
    two likeliest `readings`."""
    results = []
    for probs, number in zip(digit_probs, numbers, strict=True):
        readings = [
            {"digit": int(digit), "sum": int(digit) + number, "probability": float(probs[digit])}
            for digit in np.argsort(-probs, kind="stable")[:2]
        ]
        sure = readings[0]["probability"] >= not_sure_below
        results.append({"number": number, **readings[0], "sure": sure, "readings": readings})
    return results


def predict(net: AdderNet, images: Tensor, numbers: Tensor) -> list[dict]:
    """`answers` for (B, 1, 28, 28) images and (B,) numbers, from the net's calibrated probabilities
    (`AdderNet.probabilities`; several nets averaged are one, `AveragedNets`), sure from `NOT_SURE_BELOW`
    on."""
    from mnist_adder.models.nets import NOT_SURE_BELOW

    digit_probs, _ = net.probabilities(images, numbers)
    return answers(digit_probs.cpu().numpy(), numbers.tolist(), NOT_SURE_BELOW)


def predict_files(
    pairs: list[str], checkpoint: str | list[str] | None = None, model: str | None = None
) -> list[dict]:
    """Predictions for [IMAGE, NUMBER, IMAGE, NUMBER, ...], from a checkpoint (or several, averaged) or an
    exported .onnx `model`; raises UserError on any bad input."""
    if len(pairs) % 2:
        raise UserError(f"got {len(pairs)} arguments: give pairs of IMAGE NUMBER, e.g. `digit.png 5`")
    if checkpoint and model:
        raise UserError("give --checkpoint (a .ckpt) or --model (an exported .onnx), not both")
    paths, numbers = pairs[0::2], [parse_number(text) for text in pairs[1::2]]
    if model:
        from mnist_adder.models.exported import ExportedModel

        exported = ExportedModel(model)
        normalisation = exported.normalisation  # the model's own, from its metadata
        images = np.stack([to_mnist(read_image(path), f"image {path}", **normalisation) for path in paths])
        probs = exported.run(images, np.array(numbers))["answer_probs"]
        results = answers(probs, numbers, exported.metadata["not_sure_below"])
    else:
        import torch

        from mnist_adder.models.checkpoints import default_model, load_nets

        images = np.stack([to_mnist(read_image(path), name=f"image {path}") for path in paths])
        checkpoints = [checkpoint] if isinstance(checkpoint, str) else checkpoint or [default_model()]
        results = predict(load_nets(checkpoints), torch.from_numpy(images), torch.tensor(numbers))
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
        "--checkpoint",
        action="append",
        help="a .ckpt file, given again for each further net to average; "
        "default: the newest best one trained under lightning_logs/, or else the shipped model",
    )
    parser.add_argument("--model", help="an .onnx file from python -m mnist_adder.export, instead")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    try:
        args = parser.parse_args(argv)
        results = predict_files(args.pairs, args.checkpoint, args.model)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        first, second = (
            f"digit {x['digit']}, sum {x['sum']} ({x['probability']:.1%})" for x in r["readings"]
        )
        print(f"{r['image']} + {r['number']}: {first if r['sure'] else f'not sure: {first}, or {second}'}")


if __name__ == "__main__":
    main()
