"""Photos and drawings of a digit, prepared the way MNIST's digits were made, for a trained net to read.

    from mnist_adder.data.photos import read_image, to_mnist
    image = to_mnist(read_image("photo_of_a_7.jpg"))   # (1, 28, 28) float32 numpy array, normalised

Dark ink on a light background (a photo, a scan) is inverted to light on dark, the ink is cropped to its
bounding box, scaled to fit 20x20 and placed in a 28x28 field with its centre of mass at the centre.
Before that, what happened to the file is undone as far as it can be: uneven light is flattened (a plane
fit to the paper is subtracted), a blocky enlargement (nearest neighbour) is made smooth again, and a
stroke thinner than nearly all of MNIST's is thickened. Each case, and its accuracy on MNIST's test digits
put through it, is in tests/test_photos.py and results/robustness.md.

It needs numpy and Pillow only, not torch, so that an exported model answers with onnxruntime alone
(`mnist_adder.models.exported`). Its two resamplings are torch's own, written out in numpy:
`area_resize` is `F.interpolate(mode="area")` and `bicubic_resize` is `mode="bicubic"`; Pillow's filters
of those names weigh the pixels differently, and the figures above were measured with torch's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist_adder import UserError
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD

INK_THRESHOLD = 0.25  # a pixel darker than the background by this much (of full range) is ink
PAPER_MARGIN = 0.1  # a pixel this much above the fitted paper is left out of the next fit: it is ink
# Stroke width as 2 x ink area / ink perimeter, in pixels of the 28x28 field, measured at 4x on 5,000 of
# MNIST's training digits: median 1.96; 10 % are thinner than 1.44.
MNIST_STROKE_WIDTH, THINNEST_STROKE = 1.96, 1.44
SMALLEST_SCAN = 6  # pixels on a digit's long side: a blocky enlargement of fewer is left blocky
HALF_PIXEL_TIE = 1e-4  # of a pixel: a centre of mass this near halfway between two places takes the later


def read_image(path: str) -> np.ndarray:
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


def ink_on_dark(image: Image.Image) -> np.ndarray:
    """Any PIL image -> (H, W) float32 in [0, 1], ink bright on a dark background.

    Transparent pixels become white paper; palette and colour images become grey; dark ink on light
    paper (told by the border) is inverted.
    """
    rgba = image.convert("RGBA")
    paper = Image.new("RGBA", rgba.size, "white")
    pixels = np.asarray(Image.alpha_composite(paper, rgba).convert("L"), dtype=np.float32) / 255
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 1 - pixels if lower_median(border) > 0.5 else pixels  # light paper: invert


def to_mnist(
    pixels: np.ndarray, name: str = "image", mean: float = MNIST_MEAN, std: float = MNIST_STD
) -> np.ndarray:
    """(H, W) in [0, 1], ink bright (an array, or a CPU tensor) -> (1, 28, 28) float32, normalised by
    `mean` and `std` (MNIST's, which every net here reads), as MNIST was made."""
    pixels = flatten_light(np.asarray(pixels, dtype=np.float32))
    ink = pixels > INK_THRESHOLD
    if not ink.any():
        raise UserError(
            f"{name} has no ink: give an image of one dark digit on light paper, or light on dark"
        )
    rows, cols = ink.any(axis=1).nonzero()[0], ink.any(axis=0).nonzero()[0]
    digit = unblock(pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    scale = 20 / max(digit.shape)
    height, width = (max(1, round(side * scale)) for side in digit.shape)
    fine = area_resize(digit, (4 * height, 4 * width))  # 4x, to thicken
    digit = area_resize(thicken(fine / fine.max()), (height, width))
    digit = digit / digit.max()
    # Centre of mass at the centre of the 28x28 field, as far as the field allows.
    mass = digit.sum()
    center_y = (digit.sum(axis=1) * np.arange(height)).sum() / mass
    center_x = (digit.sum(axis=0) * np.arange(width)).sum() / mass
    top, left = field_offset(float(center_y), height), field_offset(float(center_x), width)
    field = np.zeros((28, 28), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return ((field - np.float32(mean)) / np.float32(std))[None]


def field_offset(center: float, side: int) -> int:
    """Where a digit `side` pixels long starts in the 28-pixel field so that its centre of mass, `center`
    pixels from its start, falls nearest the field's middle, as far as the field allows. A symmetric
    digit's centre lies on the middle of one of its pixels, halfway between two places, where the last bits
    of the arithmetic differ from one CPU to another: within `HALF_PIXEL_TIE` of such a tie the digit takes
    the lower or right place, the same on every CPU."""
    return min(max(math.floor(14 - center + HALF_PIXEL_TIE), 0), 28 - side)


def flatten_light(pixels: np.ndarray, fits: int = 3) -> np.ndarray:
    """(H, W) ink bright -> the same, less the paper's light: a plane a + b y + c x fit by least squares to
    the pixels that are not ink (each fit leaves out what lies `PAPER_MARGIN` above the last one), so that
    a page lit from one side has dark paper everywhere. Even paper gives a flat plane: a shift only."""
    step = max(1, round((pixels.size / 20_000) ** 0.5))  # fit on about 20,000 pixels
    sample = pixels[::step, ::step].ravel()
    ys, xs = np.meshgrid(*(np.linspace(0, 1, n, dtype=np.float32) for n in pixels[::step, ::step].shape),
                         indexing="ij")  # fmt: skip
    design = np.stack([np.ones_like(ys), ys, xs], axis=-1).reshape(-1, 3)
    paper = np.ones_like(sample, dtype=bool)
    for _ in range(fits):
        plane = np.linalg.lstsq(design[paper], sample[paper], rcond=None)[0].astype(np.float32)
        paper = sample <= design @ plane + PAPER_MARGIN
    ys, xs = np.meshgrid(*(np.linspace(0, 1, n, dtype=np.float32) for n in pixels.shape), indexing="ij")
    return np.maximum(pixels - (plane[0] + plane[1] * ys + plane[2] * xs), 0)


def unblock(digit: np.ndarray, tolerance: float = 2 / 255) -> np.ndarray:
    """Undo a blocky enlargement (nearest neighbour) of the (H, W) crop: where its rows and columns come in
    runs of k >= 2 equal ones (the median run), shrink it k times by area, back to the picture it was made
    from, and enlarge that to (H, W) smoothly (bicubic). A crop that would shrink below `SMALLEST_SCAN`
    pixels a side, or whose median run is 1 (a photo, a drawing, MNIST itself), is left alone."""
    runs = np.concatenate([run_lengths(lines, tolerance) for lines in (digit, digit.T)])
    block = float(lower_median(runs))
    native = [round(side / block) for side in digit.shape]
    if block < 2 or max(native) < SMALLEST_SCAN:
        return digit
    return np.clip(bicubic_resize(area_resize(digit, native), digit.shape), 0, 1)


def run_lengths(lines: np.ndarray, tolerance: float) -> np.ndarray:
    """(N, M) -> the lengths of the runs of equal lines (within `tolerance`), in order."""
    starts = (np.abs(lines[1:] - lines[:-1]).max(axis=1) > tolerance).nonzero()[0] + 1
    return np.diff(starts, prepend=0, append=len(lines))


def thicken(fine: np.ndarray) -> np.ndarray:
    """(4h, 4w) ink in [0, 1], a digit at 4 times its (h, w) in the 20x20 box -> the same, its strokes
    grown to `MNIST_STROKE_WIDTH` if they are thinner than `THINNEST_STROKE` (a fine pen). Thick strokes
    are left alone: thinning them cost accuracy on validation."""
    ink = (fine > 0.5).astype(np.float32)
    perimeter = (ink - min_pool3(ink)).sum()  # ink pixels with a background neighbour
    width = float(2 * ink.sum() / max(perimeter, 1)) / 4
    if width >= THINNEST_STROKE:
        return fine
    for _ in range(round((MNIST_STROKE_WIDTH - width) * 4 / 2)):  # each 3x3 dilation adds a pixel a side
        fine = max_pool3(fine)
    return fine


def lower_median(values: np.ndarray) -> np.floating:
    """The lower of the two middle values of an even count, as `torch.median` takes it."""
    return np.sort(values, axis=None)[(values.size - 1) // 2]


def max_pool3(image: np.ndarray) -> np.ndarray:
    """(H, W) -> the maximum over each pixel's 3x3 neighbourhood (`F.max_pool2d(x, 3, 1, 1)`)."""
    padded = np.pad(image, 1, constant_values=-np.inf)
    return np.lib.stride_tricks.sliding_window_view(padded, (3, 3)).max(axis=(-2, -1))


def min_pool3(image: np.ndarray) -> np.ndarray:
    return -max_pool3(-image)


def area_resize(image: np.ndarray, size: tuple[int, int] | list[int]) -> np.ndarray:
    """(h, w) -> (H, W), each output pixel the mean of the input pixels its bin covers:
    `F.interpolate(mode="area")`, i.e. adaptive average pooling."""
    return area_weights(size[0], image.shape[0]) @ image @ area_weights(size[1], image.shape[1]).T


def area_weights(out: int, size: int) -> np.ndarray:
    """(out, size): row i averages the input's [floor(i size / out), ceil((i + 1) size / out))."""
    weights = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        weights[i, start:end] = 1 / (end - start)
    return weights


def bicubic_resize(image: np.ndarray, size: tuple[int, int] | list[int]) -> np.ndarray:
    """(h, w) -> (H, W) by cubic convolution: `F.interpolate(mode="bicubic", align_corners=False)`."""
    return bicubic_weights(size[0], image.shape[0]) @ image @ bicubic_weights(size[1], image.shape[1]).T


def bicubic_weights(out: int, size: int, a: float = -0.75) -> np.ndarray:
    """(out, size): output i reads the 4 inputs around (i + 0.5) size / out - 0.5, with Keys' cubic kernel
    (a = -0.75, as torch), the edge pixel repeated beyond the edge."""
    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a if x < 2 else 0.0

    weights = np.zeros((out, size), dtype=np.float32)
    for i in range(out):
        source = (i + 0.5) * size / out - 0.5
        first = math.floor(source)
        for tap in range(first - 1, first + 3):
            weights[i, min(max(tap, 0), size - 1)] += kernel(source - tap)
    return weights
