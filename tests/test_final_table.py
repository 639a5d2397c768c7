"""The commands a run prints when it ends work as pasted, unquoted (marked `mnist`: a short real run)."""

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from mnist_adder import PROJECT_ROOT

pytestmark = pytest.mark.mnist


def run(words: list[str]) -> subprocess.CompletedProcess:
    program = {
        "python": [sys.executable],
        "mnist-adder-predict": [shutil.which("mnist-adder-predict") or sys.executable, *(
            [] if shutil.which("mnist-adder-predict") else ["-m", "mnist_adder.predict"])],
        "tensorboard": [sys.executable, "-m", "tensorboard.main"],
    }[words[0]]  # fmt: skip
    return subprocess.run(
        [*program, *words[1:]], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600
    )


def test_the_final_table_prints_commands_that_work_as_pasted(tmp_path):
    overrides = [
        f"paths.log_dir={tmp_path}",
        "debug=limit",
        "trainer.max_epochs=1",
        "data.holdout_pairs=[[3,4]]",
    ]
    trained = run(["python", "-m", "mnist_adder.train", *overrides])
    assert trained.returncode == 0, trained.stderr[-3000:]
    table = trained.stdout + trained.stderr
    commands = dict(re.findall(r"^ +(evaluate|predict|curves|resume)  (.+)$", table, flags=re.MULTILINE))
    assert set(commands) == {"evaluate", "predict", "curves", "resume"}

    evaluated = run(shlex.split(commands["evaluate"]))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test sum acc" in evaluated.stderr + evaluated.stdout
    assert list(tmp_path.glob("eval/*/metrics.json"))  # under the run's own paths.log_dir

    predicted = run([*shlex.split(commands["predict"]), "--json"])
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert '"sum"' in predicted.stdout

    curves = run([*shlex.split(commands["curves"]), "--inspect"])  # TensorBoard reads the run, then exits
    assert curves.returncode == 0 and "val/sum_acc" in curves.stdout + curves.stderr

    resumed = run(shlex.split(commands["resume"]))  # a finished run: reported, not trained again
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "finished before; its metrics stand" in resumed.stdout + resumed.stderr
    runs = [path for path in tmp_path.glob("*/*/.hydra") if not path.is_relative_to(tmp_path / "eval")]
    assert len(runs) == 1  # no new run folder
