"""What happens to a digit's picture before it reaches the project, as functions from an MNIST digit to the
picture a user might hand in: enlarged with blocky pixels or smoothly, scanned at 8x8, stored as a form
reader stores it (8x8 counts of a 32x32 bitmap, the way the other handwriting of the robustness report was
made), photographed large, written with a fine or a broad pen, blurred and saved as a poor JPEG, lit from
one side, or lost in a wide margin. `mnist_adder.data.photos.to_mnist` should read each as MNIST's own
digit: tests/test_photos.py and `python -m mnist_adder.robustness` measure how well it does.

    from mnist_adder.data.damage import DAMAGE
    picture = DAMAGE["8x8 blocky"](digit)   # (28, 28) uint8, ink bright -> a PIL image, dark ink on paper
"""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import Tensor

BICUBIC, NEAREST, BOX = Image.Resampling.BICUBIC, Image.Resampling.NEAREST, Image.Resampling.BOX


def on_paper(digit: Tensor) -> Image.Image:
    """(H, W) uint8, ink bright -> a greyscale picture of dark ink on white paper."""
    return Image.fromarray((255 - digit).numpy())


def pixels_of(image: Image.Image) -> Tensor:
    """A greyscale picture -> (H, W) uint8."""
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(image.height, image.width)


def resized(image: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    return image.resize((size, size), resample)


def saved_as_jpeg(image: Image.Image, quality: int) -> Image.Image:
    file = io.BytesIO()
    image.save(file, "JPEG", quality=quality)
    return Image.open(io.BytesIO(file.getvalue())).convert("L")


def lit_from_one_side(image: Image.Image, darkest: float = 0.45) -> Image.Image:
    """The page darkens from right to left, to `darkest` of its light at the left edge."""
    light = torch.linspace(darkest, 1, image.width)
    return Image.fromarray((pixels_of(image).float() * light).to(torch.uint8).numpy())


def bitmap_counts(digit: Tensor) -> Image.Image:
    """The way a form reader of the 1990s stored a digit (UCI's optical recognition of handwritten digits):
    the ink's box scaled to fill 32 pixels of height (or of width, if wider) and centred in 32x32, made
    black or white, and each 4x4 block's count of black pixels kept: 8x8 in 17 levels."""
    rows, columns = (digit > 0).nonzero().unbind(1)
    box = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = box.shape
    scale = 32 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    bitmap = pixels_of(Image.fromarray(box.numpy()).resize(size, BICUBIC)) >= 128
    field = torch.zeros(32, 32)
    top, left = (32 - size[1]) // 2, (32 - size[0]) // 2
    field[top : top + size[1], left : left + size[0]] = bitmap.float()
    counts = field.view(8, 4, 8, 4).sum(dim=(1, 3))
    return on_paper((counts * 255 / 16).round().to(torch.uint8))


def large_photo(digit: Tensor) -> Image.Image:
    """The digit at 20 times its size (560 px, smooth), 200 px of paper round it, saved as a JPEG."""
    large = pixels_of(resized(Image.fromarray(digit.numpy()), 560, BICUBIC))
    return saved_as_jpeg(on_paper(F.pad(large, (200,) * 4)), 70)


DAMAGE: dict[str, Callable[[Tensor], Image.Image]] = {
    "clean": on_paper,
    "8x8 blocky": lambda digit: resized(resized(on_paper(digit), 8, BOX), 128, NEAREST),
    "8x8 smooth": lambda digit: resized(resized(on_paper(digit), 8, BOX), 128, BICUBIC),
    "8x8 bitmap counts, blocky": lambda digit: resized(bitmap_counts(digit), 128, NEAREST),
    "8x8 bitmap counts, smooth": lambda digit: resized(bitmap_counts(digit), 128, BICUBIC),
    "4x blocky": lambda digit: resized(on_paper(digit), 112, NEAREST),
    "large photo": large_photo,
    "fine pen": lambda digit: resized(on_paper(digit), 112, BICUBIC).filter(ImageFilter.MaxFilter(7)),
    "broad pen": lambda digit: resized(on_paper(digit), 112, BICUBIC).filter(ImageFilter.MinFilter(9)),
    "blur and JPEG": lambda digit: saved_as_jpeg(
        resized(on_paper(digit), 112, BICUBIC).filter(ImageFilter.GaussianBlur(4)), 20
    ),
    "uneven light": lambda digit: lit_from_one_side(resized(on_paper(digit), 112, BICUBIC)),
    "wide margins": lambda digit: on_paper(F.pad(digit, (150, 30, 40, 160))),
}
