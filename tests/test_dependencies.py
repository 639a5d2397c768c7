"""The pins: pyproject.toml's ranges, and requirements-lock.txt, the exact versions CI installs with."""

import pytest
from packaging.requirements import Requirement

from mnist_adder import PROJECT_ROOT

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML")

PROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
LOCK = dict(
    line.split("==") for line in (PROJECT_ROOT / "requirements-lock.txt").read_text().splitlines()
    if line and not line.startswith("#")
)  # fmt: skip


def requirements() -> list[Requirement]:
    listed = PROJECT["dependencies"] + sum(PROJECT["optional-dependencies"].values(), [])
    return [Requirement(line) for line in listed if not line.startswith("mnist-adder")]


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_lock_names_every_requirement_at_a_version_its_range_allows():
    lock = {normal(name): locked for name, locked in LOCK.items()}
    for requirement in requirements():
        assert normal(requirement.name) in lock, f"{requirement.name} is not in requirements-lock.txt"
        assert requirement.specifier.contains(lock[normal(requirement.name)], prereleases=True), requirement
