"""Every `python -m ...` command in the README's and the guides' code blocks still parses.

Hydra commands are composed with the real config (sweeps at their first value, placeholders such as
`trainer.num_nodes=N` filled in); the other entry points must exist and accept their arguments.
"""

import importlib
import re
import shlex
import subprocess
import sys

import pytest
from hydra import compose, initialize
from hydra.core.override_parser.overrides_parser import OverridesParser

from mnist_adder import PROJECT_ROOT, hydra_version_base

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
README = "\n".join(page.read_text() for page in PAGES)
PREDICT = "mnist-adder-predict"
PLACEHOLDERS = {"N": "2", "G": "2", "i": "0", "P": "gpu"}  # trainer.num_nodes=N, ..., --node-rank=i


def readme_commands() -> list[list[str]]:
    """The words of every command in the README's bash blocks, from `python -m` or `torchrun` on."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                starts = [i for i, word in enumerate(words) if word in ("python", "torchrun", PREDICT)]
                if starts:
                    words = words[starts[0] :]
                    if words[0] == "python" and words[1].endswith(".py"):  # a script: its module
                        words = ["python", "-m", words[1].removesuffix(".py").replace("/", "."), *words[2:]]
                    if words[0] == "torchrun":  # its own options, then -m MODULE
                        words = ["python", *words[words.index("-m") :]]
                    if words[0] == PREDICT:  # the script of mnist_adder.predict
                        words = ["python", "-m", "mnist_adder.predict", *words[1:]]
                    commands.append(words)
    return commands


COMMANDS = readme_commands()
HYDRA_APPS = {"mnist_adder.train": "train", "mnist_adder.eval": "eval", "mnist_adder.export": "export"}


def one_run(arguments: list[str]) -> list[str]:
    """A sweep's first job: -m dropped, each sweep at its first value, placeholders filled in."""
    arguments = [word for word in arguments if word not in ("-m", "--multirun")]
    arguments = [re.sub(r"=(N|G|i|P)$", lambda m: "=" + PLACEHOLDERS[m.group(1)], word) for word in arguments]
    runs = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            first = next(iter(override.sweep_iterator()))
            runs.append(f"{override.get_key_element()}={first}")
        else:
            runs.append(override.input_line)
    return runs


def test_a_command_that_no_longer_parses_fails():
    with (
        pytest.raises(Exception, match="max_epoch"),
        initialize(config_path="../conf", **hydra_version_base()),
    ):
        compose(
            "train", overrides=one_run(["-m", "trainer.max_epoch=3", "seed=1,2"]), return_hydra_config=True
        )


def test_the_readme_has_commands_of_every_entry_point():
    modules = {words[2] for words in COMMANDS if words[:2] == ["python", "-m"]}
    entry_points = {f"mnist_adder.{name}" for name in ("train", "eval", "predict", "results")}
    assert entry_points <= modules


@pytest.mark.parametrize("words", [w for w in COMMANDS if w[2] in HYDRA_APPS], ids=" ".join)
def test_a_readme_hydra_command_composes(words):
    with initialize(config_path="../conf", **hydra_version_base()):
        compose(HYDRA_APPS[words[2]], overrides=one_run(words[3:]), return_hydra_config=True)


@pytest.mark.parametrize("words", [w for w in COMMANDS if w[2] not in HYDRA_APPS], ids=" ".join)
def test_a_readme_command_names_a_module_that_runs(words):
    module = importlib.import_module(words[2])
    assert callable(getattr(module, "main", None)), f"{words[2]} has no main()"


# The guides' commands that write a report.
STUDIES = ("mnist_adder.robustness", "mnist_adder.plots", "mnist_adder.card")


@pytest.mark.mnist
@pytest.mark.parametrize("words", [w for w in COMMANDS if w[2] in STUDIES], ids=" ".join)
def test_a_guides_report_command_runs_as_pasted(words, tmp_path):
    (tmp_path / "lightning_logs").symlink_to(PROJECT_ROOT / "lightning_logs")  # its paths, from the project
    result = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    written = re.findall(r"^wrote (.+)$", result.stdout, re.M)
    assert written and all((tmp_path / path).is_file() for path in written)
