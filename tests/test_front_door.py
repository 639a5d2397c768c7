"""The project's front door as a user meets it: the commands typed in a shell, each in its own process,
with no test helper in between, on real MNIST (short runs: debug=limit trains 20 batches an epoch)."""

import re
import shlex
import subprocess
import sys

import pytest

from mnist_adder import PROJECT_ROOT

pytestmark = pytest.mark.mnist

SHORT = ["debug=limit", "trainer.max_epochs=1"]


def shell(command: list[str], cwd=PROJECT_ROOT) -> str:
    """Run a command as typed; its exit code must be 0. Returns what it printed, stdout and stderr."""
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def assert_a_finished_run(folder) -> None:
    assert (folder / ".hydra" / "config.yaml").is_file() and (folder / "metrics.json").is_file()
    assert list(folder.glob("events.out.tfevents.*")), f"no TensorBoard events in {folder}"
    assert (folder / "checkpoints" / "last.ckpt").is_file()


def test_train_then_eval_the_printed_checkpoint(tmp_path):
    printed = shell(["python", "-m", "mnist_adder.train", "model=dual", *SHORT, f"paths.log_dir={tmp_path}"])
    (run,) = [path.parent for path in tmp_path.rglob(".hydra")]
    assert_a_finished_run(run)
    assert re.search(r"test sum acc  \d+\.\d\d %", printed)
    (evaluate,) = re.findall(r"evaluate  (python -m mnist_adder\.eval .*)", printed)  # as printed
    checkpoint = re.search(r"ckpt_path=(\S+)", evaluate).group(1)
    assert (PROJECT_ROOT / checkpoint).is_file()  # the best checkpoint, by its path from the project
    scored = shell(shlex.split(evaluate))
    assert re.search(r"test sum acc  \d+\.\d\d %", scored)
    assert re.search(rf"checkpoint  {re.escape(checkpoint)}$", scored, re.M)  # the table names it
    (export,) = re.findall(r"export  (python -m mnist_adder\.export .*)", printed)
    exported = shell(shlex.split(export))  # into the same log folder, with its model card
    (answer,) = re.findall(r"answer with: (mnist-adder-predict .*)", exported)
    assert "digit " in shell(shlex.split(answer))


def test_a_sweep_over_both_variants_and_two_seeds_is_four_jobs_in_one_folder(tmp_path):
    command = ["python", "-m", "mnist_adder.train", "-m", "model=dual,adder", "seed=1,2"]
    shell([*command, *SHORT, f"paths.log_dir={tmp_path}"])
    (sweep,) = (tmp_path / "multirun").iterdir()
    jobs = sorted(path.parent.name for path in sweep.rglob(".hydra") if path.parent != sweep)
    names = [f"debug-limit__model-{model}__seed-{seed}" for model in ("adder", "dual") for seed in (1, 2)]
    expected = [f"{name}__trainer.max_epochs-1" for name in names]  # a folder names every override
    assert jobs == expected
    for job in jobs:
        assert_a_finished_run(sweep / job)


def test_the_library_script_of_the_guide_trains_and_tests_with_no_hydra_warning(tmp_path):
    guide = (PROJECT_ROOT / "docs" / "use-a-model.md").read_text()
    script = guide.split("### Train with the library alone", 1)[1].split("```python\n", 1)[1].split("```")[0]
    assert len(script.strip().splitlines()) <= 10
    (tmp_path / "script.py").write_text(script)
    result = subprocess.run(  # from another folder: MNIST is still the project's data/
        [sys.executable, "script.py"], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(re.search(r"test/sum_acc[\s│|]*([\d.]+)", result.stdout).group(1))
    assert accuracy > 0.98  # three epochs of model=dual
    assert "hydra" not in result.stderr.lower()
    assert not (tmp_path / "data").exists()
