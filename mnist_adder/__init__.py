"""mnist-adder: read an MNIST digit, add a number 0..9 to it, with Lightning and Hydra."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the folder holding conf/, data/ and lightning_logs/
DATA_DIR = str(PROJECT_ROOT / "data")  # where MNIST is fetched to, whatever the current folder


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


@contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A hidden temporary file in `path`'s folder to write instead of `path`, renamed over it (`os.replace`)
    when the block ends: a write that fails or is interrupted leaves what was at `path` whole, and no
    temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".partial",
                                     delete=False) as file:  # fmt: skip
        partial = Path(file.name)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class FromRecipe:
    """The default of an argument whose value is kept in a recipe of conf/ (see `with_recipe`)."""

    def __repr__(self) -> str:
        return "FROM_RECIPE"


FROM_RECIPE = FromRecipe()


def with_recipe(option: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A constructor's `arguments` (its `locals()`), those left at `FROM_RECIPE` taken from the recipe
    `conf/<option>.yaml`, e.g. "model/dual": the YAML is the one place where the defaults are kept.

    The recipe's plain values are the defaults; what it interpolates (`${paths.data_dir}`, `${seed}`)
    wires it into a run, and is left to the constructor's own defaults. The recipe is composed (35-70 ms
    on 2 CPU cores, Hydra imported) only when an argument is left out: a command or a checkpoint gives them
    all.
    """
    arguments = {name: value for name, value in arguments.items() if name not in ("self", "__class__")}
    if any(value is FROM_RECIPE for value in arguments.values()):
        defaults = recipe(option)
        arguments = {name: defaults[name] if value is FROM_RECIPE else value
                     for name, value in arguments.items()}
    return arguments


def hydra_version_base() -> dict[str, str]:
    """The `version_base` argument for `hydra.main` and `initialize`: "1.3" on Hydra 1.3, where leaving it
    out keeps Hydra 1.1's defaults and warns; none on Hydra 1.4, which deprecates it."""
    from hydra import __version__

    return {"version_base": "1.3"} if __version__.startswith("1.3.") else {}


def recipe(option: str) -> dict[str, Any]:
    """conf/<option>.yaml composed with its defaults list, as plain values, without its interpolated keys and
    Hydra's (`_target_`, ...). It works inside a Hydra app too: the app's own Hydra is put back after."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    outer = GlobalHydra.instance().hydra  # a running app's, or None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(PROJECT_ROOT / "conf"), **hydra_version_base()):
            config = compose(option).get(option.split("/")[0])
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
    kept = [key for key in config if not key.startswith("_") and not OmegaConf.is_interpolation(config, key)]
    return {key: OmegaConf.to_container(config[key], resolve=True) if OmegaConf.is_config(config[key])
            else config[key] for key in kept}  # fmt: skip
