"""Digits that no MNIST writer wrote: the ten digits lettered in the fonts installed on the computer, each
with three pens, as pictures a user might hand in. `python -m mnist_adder.robustness --split val` reads
them beside MNIST's validation digits, so that a training recipe meant to read other writers is chosen on
digits that are not MNIST's, while the other handwriting of the robustness report stays held out.

    from mnist_adder.data.lettering import FONT_SETS, installed_fonts, lettered
    pictures, digits = lettered(installed_fonts(FONT_SETS["handwriting fonts"]))

Fonts come from the system's font folders, for example Debian's packages (the set the project's figures
were measured with, and its count is printed beside them):

    apt-get install fonts-dkg-handwriting fonts-breip fonts-bwht fonts-femkeklaver fonts-humor-sans \\
        fonts-kristi fonts-rufscript fonts-comic-neue fonts-klee fonts-ecolier-court fonts-dancingscript \\
        fonts-kaushanscript fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-urw-base35
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
# Font families, by the start of their names: handwriting and scripts, and printed typefaces.
FONT_SETS = {
    "handwriting fonts": (
        "Because We", "Breip", "Comic Neue", "Dancing Script", "DkgHandwriting", "Ecolier", "Humor Sans",
        "Kaushan Script", "Klee One", "Kristi", "Rufscript", "femkeklaver", "Z003",
    ),
    "printed typefaces": (
        "DejaVu Sans", "DejaVu Serif", "Liberation", "FreeSans", "FreeSerif", "FreeMono", "Nimbus", "URW",
        "C059", "P052",
    ),
}  # fmt: skip
PENS = (0, 3, 6)  # extra stroke width in pixels, around glyphs 96 pixels tall
SIZE = 128  # pixels a side of each picture


def installed_fonts(families: tuple[str, ...]) -> list[Path]:
    """The font files (TrueType, OpenType, Type 1) whose family name starts with one of `families`, one
    per family and style, sorted."""
    found = {}
    for folder in FONT_FOLDERS:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.suffix.lower() not in (".ttf", ".otf", ".pfb"):
                continue
            try:
                name = ImageFont.truetype(str(path), 12).getname()
            except OSError:  # not a font FreeType reads
                continue
            if name[0] and name[0].startswith(families):
                found.setdefault(name, path)
    return sorted(found.values())


def letter(font: ImageFont.FreeTypeFont, digit: int, pen: int) -> Image.Image:
    """One digit, dark ink on white paper, centred in a `SIZE`-pixel square."""
    picture = Image.new("L", (SIZE, SIZE), 255)
    ImageDraw.Draw(picture).text(
        (SIZE / 2, SIZE / 2), str(digit), fill=0, font=font, anchor="mm", stroke_width=pen, stroke_fill=0
    )
    return picture


def lettered(fonts: list[Path]) -> tuple[list[Image.Image], Tensor]:
    """Each of `fonts` letters the ten digits with each of `PENS`: the pictures and their digits."""
    pictures, digits = [], []
    for path in fonts:
        font = ImageFont.truetype(str(path), 96)
        for pen in PENS:
            for digit in range(10):
                pictures.append(letter(font, digit, pen))
                digits.append(digit)
    return pictures, torch.tensor(digits)
