"""Photos and drawings of a digit, prepared the way MNIST's digits were made, for a trained net to read.

    from mnist_adder.data.photos import read_image, to_mnist
    image = to_mnist(read_image("photo_of_a_7.jpg"))   # (1, 28, 28) float32, normalised

Dark ink on a light background (a photo, a scan) is inverted to light on dark, the ink is cropped to its
bounding box, scaled to fit 20x20 and placed in a 28x28 field with its centre of mass at the centre.
Before that, what happened to the file is undone as far as it can be: uneven light is flattened (a plane
fit to the paper is subtracted), a blocky enlargement (nearest neighbour) is made smooth again, and a
stroke thinner than nearly all of MNIST's is thickened. Each case, and its accuracy on MNIST's test digits
put through it, is in tests/test_photos.py and results/robustness.md.
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
PAPER_MARGIN = 0.1  # a pixel this much above the fitted paper is left out of the next fit: it is ink
# Stroke width as 2 x ink area / ink perimeter, in pixels of the 28x28 field, measured at 4x on 5,000 of
# MNIST's training digits: median 1.96; 10 % are thinner than 1.44.
MNIST_STROKE_WIDTH, THINNEST_STROKE = 1.96, 1.44
SMALLEST_SCAN = 6  # pixels on a digit's long side: a blocky enlargement of fewer is left blocky


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
    pixels = flatten_light(pixels)
    ink = pixels > INK_THRESHOLD
    if not ink.any():
        raise UserError(
            f"{name} has no ink: give an image of one dark digit on light paper, or light on dark"
        )
    rows, cols = ink.any(dim=1).nonzero(), ink.any(dim=0).nonzero()
    digit = unblock(pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    scale = 20 / max(digit.shape)
    height, width = (max(1, round(side * scale)) for side in digit.shape)
    fine = F.interpolate(digit[None, None], size=(4 * height, 4 * width), mode="area")  # 4x, to thicken
    digit = F.interpolate(thicken(fine / fine.max()), size=(height, width), mode="area")[0, 0]
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


def flatten_light(pixels: Tensor, fits: int = 3) -> Tensor:
    """(H, W) ink bright -> the same, less the paper's light: a plane a + b y + c x fit by least squares to
    the pixels that are not ink (each fit leaves out what lies `PAPER_MARGIN` above the last one), so that
    a page lit from one side has dark paper everywhere. Even paper gives a flat plane: a shift only."""
    step = max(1, round((pixels.numel() / 20_000) ** 0.5))  # fit on about 20,000 pixels
    sample = pixels[::step, ::step].flatten()
    ys, xs = torch.meshgrid(*(torch.linspace(0, 1, n) for n in pixels[::step, ::step].shape), indexing="ij")
    design = torch.stack([torch.ones_like(ys), ys, xs], dim=-1).flatten(0, 1)
    paper = torch.ones_like(sample, dtype=torch.bool)
    for _ in range(fits):
        plane = torch.linalg.lstsq(design[paper], sample[paper, None]).solution[:, 0]
        paper = sample <= design @ plane + PAPER_MARGIN
    ys, xs = torch.meshgrid(*(torch.linspace(0, 1, n) for n in pixels.shape), indexing="ij")
    return (pixels - (plane[0] + plane[1] * ys + plane[2] * xs)).clamp(min=0)


def unblock(digit: Tensor, tolerance: float = 2 / 255) -> Tensor:
    """Undo a blocky enlargement (nearest neighbour) of the (H, W) crop: where its rows and columns come in
    runs of k >= 2 equal ones (the median run), shrink it k times by area, back to the picture it was made
    from, and enlarge that to (H, W) smoothly (bicubic). A crop that would shrink below `SMALLEST_SCAN`
    pixels a side, or whose median run is 1 (a photo, a drawing, MNIST itself), is left alone."""
    runs = torch.cat([run_lengths(lines, tolerance) for lines in (digit, digit.T)])
    block = float(runs.float().median())
    native = [round(side / block) for side in digit.shape]
    if block < 2 or max(native) < SMALLEST_SCAN:
        return digit
    small = F.interpolate(digit[None, None], size=native, mode="area")
    return F.interpolate(small, size=digit.shape, mode="bicubic", align_corners=False)[0, 0].clamp(0, 1)


def run_lengths(lines: Tensor, tolerance: float) -> Tensor:
    """(N, M) -> the lengths of the runs of equal lines (within `tolerance`), in order."""
    starts = ((lines[1:] - lines[:-1]).abs().amax(dim=1) > tolerance).nonzero()[:, 0] + 1
    return torch.diff(starts, prepend=torch.tensor([0]), append=torch.tensor([len(lines)]))


def thicken(fine: Tensor) -> Tensor:
    """(1, 1, 4h, 4w) ink in [0, 1], a digit at 4 times its (h, w) in the 20x20 box -> the same, its strokes
    grown to `MNIST_STROKE_WIDTH` if they are thinner than `THINNEST_STROKE` (a fine pen). Thick strokes
    are left alone: thinning them cost accuracy on validation."""
    ink = (fine > 0.5).float()
    perimeter = (ink + F.max_pool2d(-ink, 3, 1, 1)).sum()  # ink pixels with a background neighbour
    width = float(2 * ink.sum() / perimeter.clamp(min=1)) / 4
    if width >= THINNEST_STROKE:
        return fine
    for _ in range(round((MNIST_STROKE_WIDTH - width) * 4 / 2)):  # each 3x3 dilation adds a pixel a side
        fine = F.max_pool2d(fine, 3, 1, 1)
    return fine
