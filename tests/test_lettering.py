"""The lettered digits that recipes meant for other writers are chosen on (`mnist_adder.data.lettering`)."""

import torch
from PIL import ImageFont

import mnist_adder.data.lettering as lettering
from mnist_adder.data.damage import pixels_of
from mnist_adder.models.scoring import prepared


def a_font_folder(tmp_path):
    """A folder holding Pillow's own font (Aileron), written out as a file, and a file that is no font."""
    (tmp_path / "Aileron-Regular.ttf").write_bytes(ImageFont.load_default(12).path.getvalue())
    (tmp_path / "notes.ttf").write_text("not a font")
    return tmp_path


def test_fonts_are_found_by_family_and_each_letters_ten_digits_with_each_pen(tmp_path, monkeypatch):
    monkeypatch.setattr(lettering, "FONT_FOLDERS", (a_font_folder(tmp_path), tmp_path / "absent"))
    assert lettering.installed_fonts(("Liberation",)) == []
    fonts = lettering.installed_fonts(("Aileron",))
    assert [font.name for font in fonts] == ["Aileron-Regular.ttf"]
    pictures, digits = lettering.lettered(fonts)
    assert digits.tolist() == list(range(10)) * len(lettering.PENS)
    ink = [int((pixels_of(picture) < 128).sum()) for picture in pictures]
    assert all(count > 0 for count in ink)
    assert ink[10] > ink[0] and ink[20] > ink[10]  # a broader pen lays down more ink
    images, blank = prepared(pictures)
    assert images.shape == (len(pictures), 1, 28, 28) and blank == 0


def test_the_validation_report_adds_each_font_set_as_files_and_as_stored_bitmaps(tmp_path, monkeypatch):
    from mnist_adder import robustness

    monkeypatch.setattr(lettering, "FONT_FOLDERS", (a_font_folder(tmp_path),))
    monkeypatch.setitem(lettering.FONT_SETS, "test fonts", ("Aileron",))
    sets = robustness.lettered_sets()
    assert list(sets) == [
        "test fonts (1), lettered, as files",
        "test fonts (1), lettered, 8x8 bitmap counts, blocky",
    ]
    (files, digits), (stored, same) = sets.values()
    assert torch.equal(digits, same) and len(files) == len(stored) == 10 * len(lettering.PENS)
    assert {picture.size for picture in stored} == {(128, 128)}
    # the stored ones hold at most 8x8 distinct blocks
    assert len(set(pixels_of(stored[0]).flatten().tolist())) <= 17
