"""Photos and drawings of a digit, prepared the way MNIST's digits were made, for a trained net to read.

    from mnist_adder.data.photos import read_image, to_mnist
    image = to_mnist(read_image("photo_of_a_7.jpg"))   # (1, 28, 28) float32, normalised

Dark ink on a light background (a photo, a scan) is inverted to light on dark, the ink is cropped to its
bounding box, scaled to fit 20x20 and placed in a 28x28 field with its centre of mass at the centre.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from mnist_adder import UserError
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD

INK_THRESHOLD = 0.25  # a pixel darker than the background by this much (of full range) is ink


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
