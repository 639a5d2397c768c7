"""mnist-adder: read an MNIST digit, add a number 0..9 to it, with Lightning and Hydra."""

import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the folder holding conf/, data/ and lightning_logs/


class UserError(Exception):
    """A problem with what the user asked for: reported as one line, with no traceback."""


def writable_folder(folder: Path, setting: str) -> None:
    """Make `folder` if need be; raise `UserError` naming the `setting` that gave it if it is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        reason = "a file" if folder.is_file() else error.strerror or type(error).__name__
        problem = f"{setting} {folder} is not a writable folder ({reason})"
        raise UserError(f"{problem}: set {setting} to one") from None
