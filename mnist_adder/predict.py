"""Read digits from your own images and add numbers to them.

    mnist-adder-predict photo_of_a_7.jpg 5 scan_of_a_2.png 9
    python -m mnist_adder.predict --checkpoint lightning_logs/.../checkpoints/epoch14.ckpt digit.png 3 --json

An image is prepared the way MNIST's digits were: dark ink on a light background (a photo, a scan) is
inverted to light on dark, the ink is cropped to its bounding box, scaled to fit 20x20 and placed in a
28x28 field with its centre of mass at the centre.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.mnist import MNIST_MEAN, MNIST_STD, NUM_DIGITS
from mnist_adder.module import MNISTAdderModule, load_checkpoint

INK_THRESHOLD = 0.25  # a pixel darker than the background by this much (of full range) is ink


def newest_checkpoint(log_dir: Path = PROJECT_ROOT / "lightning_logs") -> Path:
    """The newest best checkpoint (not a `last.ckpt`) under log_dir."""
    candidates = [path for path in log_dir.rglob("checkpoints/*.ckpt") if not path.name.startswith("last")]
    if not candidates:
        raise UserError(
            f"no checkpoint under {log_dir}: train one with `python -m mnist_adder.train`, "
            "or give --checkpoint PATH"
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


def read_image(path: str) -> Tensor:
    """Any PNG, JPEG or BMP -> (H, W) float32 in [0, 1], ink bright on a dark background."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"image {path} is not a file: give a PNG, JPEG or BMP of one digit")
    if file.stat().st_size == 0:
        raise UserError(f"image {path} is empty: give a PNG, JPEG or BMP of one digit")
    try:
        with Image.open(file) as image:
            if image.format not in ("PNG", "JPEG", "BMP"):
                raise UserError(f"image {path} is {image.format}: give a PNG, JPEG or BMP")
            return ink_on_dark(image)
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"image {path} is not a readable image ({error}): give a PNG, JPEG or BMP") from None


def ink_on_dark(image: Image.Image) -> Tensor:
    """Any PIL image -> (H, W) float32 in [0, 1], ink bright on a dark background.

    Transparent pixels become white paper; palette and colour images become grey; dark ink on light
    paper (told by the border) is inverted.
    """
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, "white")
    gray = Image.alpha_composite(paper, rgba).convert("L")
    pixels = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8)
    pixels = pixels.view(gray.height, gray.width).float() / 255
    border = torch.cat([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 1 - pixels if border.median() > 0.5 else pixels  # light paper: invert


def to_mnist(pixels: Tensor, name: str = "image") -> Tensor:
    """(H, W) in [0, 1], ink bright -> (1, 28, 28) normalised, as MNIST was made."""
    pixels = (pixels - pixels.min()).clamp(min=0)
    ink = pixels > INK_THRESHOLD
    if not ink.any():
        raise UserError(
            f"{name} has no ink: give an image of one dark digit on light paper, or light on dark"
        )
    rows, cols = ink.any(dim=1).nonzero(), ink.any(dim=0).nonzero()
    digit = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = 20 / max(digit.shape)
    height, width = (max(1, round(side * scale)) for side in digit.shape)
    digit = F.interpolate(digit[None, None], size=(height, width), mode="area")[0, 0]
    digit = digit / digit.max()
    # Centre of mass at the centre of the 28x28 field, as far as the field allows.
    mass = digit.sum()
    center_y = (digit.sum(dim=1) * torch.arange(height)).sum() / mass
    center_x = (digit.sum(dim=0) * torch.arange(width)).sum() / mass
    top = min(max(round(14 - float(center_y) - 0.5), 0), 28 - height)
    left = min(max(round(14 - float(center_x) - 0.5), 0), 28 - width)
    field = torch.zeros(28, 28)
    field[top : top + height, left : left + width] = digit
    return ((field - MNIST_MEAN) / MNIST_STD)[None]


def parse_number(text: str) -> int:
    if not (text.isdigit() and int(text) < NUM_DIGITS):
        raise UserError(f"number {text!r} is not an integer in 0..9")
    return int(text)


def predict(model: MNISTAdderModule, images: Tensor, numbers: Tensor) -> list[dict]:
    """Digits, sums, their probabilities and the top 3 digits for (B, 1, 28, 28) images and (B,) numbers."""
    digit_probs, sum_probs = model.probabilities(images, numbers)
    results = []
    for digit_p, sum_p, number in zip(digit_probs, sum_probs, numbers.tolist(), strict=True):
        top = digit_p.topk(3)
        total = int(sum_p.argmax())
        results.append(
            {
                "number": number,
                "digit": int(top.indices[0]),
                "digit_prob": float(top.values[0]),
                "top3": [[int(d), float(p)] for d, p in zip(top.indices, top.values, strict=True)],
                "sum": total,
                "sum_prob": float(sum_p[total]),
            }
        )
    return results


def predict_files(pairs: list[str], checkpoint: str | None = None) -> list[dict]:
    """Predictions for [IMAGE, NUMBER, IMAGE, NUMBER, ...]; raises UserError on any bad input."""
    if len(pairs) % 2:
        raise UserError(f"got {len(pairs)} arguments: give pairs of IMAGE NUMBER, e.g. `digit.png 5`")
    paths, texts = pairs[0::2], pairs[1::2]
    numbers = torch.tensor([parse_number(text) for text in texts])
    images = torch.stack([to_mnist(read_image(path), name=f"image {path}") for path in paths])
    model = load_checkpoint(str(checkpoint or newest_checkpoint())).eval()
    results = predict(model, images, numbers)
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
        top3 = ", ".join(f"{digit} ({p:.1%})" for digit, p in r["top3"])
        print(
            f"{r['image']} + {r['number']}: digit {r['digit']} ({r['digit_prob']:.1%}), "
            f"sum {r['sum']} ({r['sum_prob']:.1%}); top 3 digits: {top3}"
        )


if __name__ == "__main__":
    main()
