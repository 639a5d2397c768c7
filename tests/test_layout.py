"""The house rules, checked from the source: the commands stand on the library and never on each other,
importing a module changes nothing in the process, and the README and its layout section stay true."""

import ast
import re
import subprocess
import sys

import pytest

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.runs import app

PACKAGE = PROJECT_ROOT / "mnist_adder"
# A module at the package top is a command (python -m mnist_adder.<name>); the library is in sub-packages.
COMMANDS = {f"mnist_adder.{path.stem}" for path in PACKAGE.glob("*.py") if path.name != "__init__.py"} | {
    f"benchmarks.{name}" for name in ("run", "scale_out", "startup", "pruning", "gpu", "gpu_stage")
}
LIBRARY = ("data", "models", "runs")
SOURCES = [
    path
    for folder in ("mnist_adder", "benchmarks")
    for path in (PROJECT_ROOT / folder).rglob("*.py")
]


def module_name(path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path) -> set[str]:
    """The project modules that `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name.startswith(("mnist_adder", "benchmarks"))}


def test_the_list_of_commands_is_real():
    assert {"mnist_adder.train", "mnist_adder.eval", "benchmarks.run"} <= COMMANDS
    assert {module_name(path) for path in SOURCES} >= COMMANDS


def test_no_module_imports_a_command():
    offenders = {
        f"{module_name(path)} imports {name}"
        for path in SOURCES
        for name in imported(path)
        if name in COMMANDS and name != module_name(path)
    }
    assert not offenders


def test_the_package_top_holds_the_commands_and_the_library_is_in_its_sub_packages():
    sub_packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert sub_packages == set(LIBRARY)
    for path in PACKAGE.glob("*.py"):
        if path.name != "__init__.py":
            source = path.read_text()
            assert "def main(" in source and 'if __name__ == "__main__":' in source, path.name
    for package in LIBRARY:
        for path in (PACKAGE / package).rglob("*.py"):
            assert 'if __name__ == "__main__":' not in path.read_text(), f"{package}/{path.name} is a command"


def test_the_console_scripts_are_the_commands_at_the_package_top():
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    targets = re.findall(r'= "([\w.]+):main"', scripts)
    assert targets and set(targets) <= COMMANDS


def test_data_is_below_models_and_runs_and_those_two_never_import_each_other():
    allowed = {"data": {"data"}, "models": {"data", "models"}, "runs": {"data", "runs"}}
    offenders = {
        f"{module_name(path)} imports {name}"
        for package, may_use in allowed.items()
        for path in (PACKAGE / package).rglob("*.py")
        for name in imported(path)
        if name.count(".") >= 1 and name.split(".")[1] in LIBRARY and name.split(".")[1] not in may_use
    }
    assert not offenders


FORMER_FRONT_DOOR = "mnist_adder" + ".cli"  # spelled apart, so that this file does not hold it


def test_the_former_front_door_is_named_nowhere():
    found = [
        str(path.relative_to(PROJECT_ROOT))
        for path in tracked_text_files()
        if FORMER_FRONT_DOOR in path.read_text(errors="ignore").replace("/", ".")
    ]
    assert not found


def test_an_import_that_breaks_the_rule_is_found(tmp_path):
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from mnist_adder import train\n")
    assert "mnist_adder.train" in imported(fake)


CHANGES = """
import logging, warnings, sys
from omegaconf import OmegaConf
from lightning.pytorch.strategies.launchers import subprocess_script
filters, command = list(warnings.filters), subprocess_script._hydra_subprocess_cmd
loggers = {name: list(logging.getLogger(name).filters) for name in logging.root.manager.loggerDict}
import {modules}
ours = ("project_root", "if_gpu", "run_name", "run_dir")
print(sorted(name for name in ours if OmegaConf.has_resolver(name)))
print(warnings.filters == filters, subprocess_script._hydra_subprocess_cmd is command)
print(all(list(logging.getLogger(name).filters) == kept for name, kept in loggers.items()))
from hydra.core.config_store import ConfigStore
from hydra._internal.execution_policy import _get_active_execution_whitelist as whitelist
print("optuna_study.yaml" in ConfigStore.instance().repo["hydra"]["sweeper"], whitelist())
"""


def changes_made_by_importing(*modules: str) -> list[str]:
    code = CHANGES.replace("{modules}", ", ".join(modules))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")[:4]


def test_importing_any_module_changes_nothing_in_the_process():
    modules = sorted(module_name(path) for path in SOURCES)
    assert changes_made_by_importing(*modules) == ["[]", "True True", "True", "False None"]


def test_setup_is_what_changes_the_process():
    assert changes_made_by_importing("mnist_adder.runs.app; mnist_adder.runs.app.setup()") == [
        "['if_gpu', 'project_root', 'run_dir', 'run_name']",
        "False False",
        "False",
        f"True {tuple(app.TRUSTED_TARGETS)}",
    ]


README = (PROJECT_ROOT / "README.md").read_text()


def test_the_readme_is_a_front_door():
    assert len(README.splitlines()) <= 200


def tracked_text_files() -> list:
    listed = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    files = listed.stdout.split()
    paths = [PROJECT_ROOT / name for name in files if (PROJECT_ROOT / name).is_file()]
    return [path for path in paths if path.suffix in {".md", ".py", ".yaml", ".toml", ".ipynb", ".txt", ""}]


ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:work|home|root|Users|mnt|srv)/\w")
THIS_MACHINE = re.compile(r"\b(?:this|the previous|that) (?:session's )?machine\b|\bthis session\b", re.I)


def test_no_file_holds_an_absolute_path_or_speaks_of_this_machine():
    this_file = PROJECT_ROOT / "tests" / "test_layout.py"
    found = [
        f"{path.relative_to(PROJECT_ROOT)}: {match.group()}"
        for path in tracked_text_files()
        if path != this_file
        for pattern in (ABSOLUTE_PATH, THIS_MACHINE)
        for match in pattern.finditer(path.read_text(errors="ignore"))
    ]
    assert not found


def test_the_checks_above_would_find_a_slip():
    assert ABSOLUTE_PATH.search("see /work/main/README.md") and ABSOLUTE_PATH.search("`/home/me/data`")
    assert not ABSOLUTE_PATH.search("lightning_logs/work/x and ${oc.env:TMPDIR,/tmp}")
    assert THIS_MACHINE.search("measured on this machine") and THIS_MACHINE.search("The previous machine")


def layout_section() -> str:
    return README.split("## Layout", 1)[1].split("\n## ", 1)[0]


def test_the_layout_names_every_module_and_config_group_and_nothing_else():
    named = set(re.findall(r"`([\w/.]+)`", layout_section()))
    modules = {
        str(path.relative_to(PROJECT_ROOT))
        for path in (PROJECT_ROOT / "mnist_adder").rglob("*.py")
        if path.name != "__init__.py"
    }
    groups = {
        str(path.relative_to(PROJECT_ROOT)) + "/"
        for path in (PROJECT_ROOT / "conf").rglob("*")
        if path.is_dir()
    }
    named_modules = {name for name in named if name.startswith("mnist_adder/")}
    named_groups = {name for name in named if name.startswith("conf/") and name.endswith("/")}
    benchmarks = {
        path.name for path in (PROJECT_ROOT / "benchmarks").glob("*.py") if "def main(" in path.read_text()
    }
    assert named_modules == modules
    assert named_groups == groups
    assert {name for name in named if "/" not in name and name.endswith(".py")} == benchmarks


def test_a_choice_whose_extra_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(app, "EXTRAS", [("logger=mlflow", "no_such_module_here", "mlflow")])
    app.check_extras(["model=dual", "logger=csv"])
    expected = 'logger=mlflow needs the mlflow extra: pip install -e ".[mlflow]"'
    with pytest.raises(UserError, match=re.escape(expected)):
        app.check_extras(["logger=mlflow"])
