"""Optuna searches (`hparams_search=optuna`, the `sweeps` extra): the pruner, a dead sweep resumed on its
study, and the study read in optuna-dashboard."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from mnist_adder.runs.tables import runs_by
from tests.conftest import free_port
from tests.test_scale_out import finish, start, train

optuna = pytest.importorskip("optuna", reason="needs the sweeps extra")

TINY = ["trainer.max_epochs=3", "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2",
        "test=false", "callbacks.error_pictures=null"]  # fmt: skip


def search(log_dir: Path, *overrides: str) -> list[str]:
    return train("-m", "hparams_search=optuna", f"paths.log_dir={log_dir}", *TINY, *overrides)


def the_study(log_dir: Path) -> optuna.Study:
    (summary,) = optuna.get_all_study_summaries(storage=f"sqlite:///{log_dir}/optuna.db")
    return optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{log_dir}/optuna.db")


def trial_folders(log_dir: Path) -> dict[int, Path]:
    """Each job's folder, by the trial its overrides name."""
    return {int(trial): run for trial, run in runs_by(log_dir, "optuna_trial").items()}


@pytest.mark.mnist
def test_a_trial_that_falls_behind_is_pruned_and_stops_early(tmp_path):
    # A threshold no accuracy reaches: the pruner stops every trial once its warm-up epoch is over.
    prune_all = ["hydra/sweeper/pruner=threshold", "hydra.sweeper.pruner.lower=1.1"]
    # A sweep folder named to the microsecond: the study, named after it, is the one its trials find only
    # if the sweeper and the launcher read the same time (they once did not, on a new second).
    to_the_microsecond = "hydra.sweep.dir=${paths.log_dir}/multirun/${now:%H-%M-%S-%f}"
    (output,) = finish(start(search(tmp_path, "hydra.sweeper.n_trials=2", *prune_all, to_the_microsecond)))
    trials = the_study(tmp_path).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert [trial.user_attrs["pruned_at_epoch"] for trial in trials] == [1, 1]
    assert [sorted(trial.intermediate_values) for trial in trials] == [[0, 1], [0, 1]]  # 2 of 3 epochs
    for folder in trial_folders(tmp_path).values():  # its last checkpoint: after epoch 1 of 0..2
        assert torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1
    assert output.count("pruned after epoch 1") == 2 and "no trial completed" in output


@pytest.mark.mnist
def test_a_dead_sweep_resumed_on_its_study_runs_only_the_trials_still_owed(tmp_path):
    kill = [  # the sweep's process dies in the second epoch of trial 1
        "+callbacks.kill._target_=tests.callbacks.Interrupt", "+callbacks.kill.epoch=1",
        "+callbacks.kill.batch=1", "+callbacks.kill.signal_name=SIGKILL",
        "+callbacks.kill.job='optuna_trial=1'",
    ]  # fmt: skip
    command = search(tmp_path, "hydra.sweeper.n_trials=3", *kill)
    sweep = start(command)
    sweep.wait(timeout=600)
    sweep.output.seek(0)
    printed = sweep.output.read()[-3000:]  # what the sweep said, if it died some other way
    (folder,) = (tmp_path / "multirun").iterdir()
    before = {trial: path / "metrics.json" for trial, path in trial_folders(tmp_path).items()}
    assert set(before) == {0, 1}, f"exit code {sweep.returncode}: {printed}"
    assert before[0].is_file() and not before[1].exists()
    stamp = before[0].stat().st_mtime_ns

    (output,) = finish(start([*command, f"hydra.sweep.dir={folder}"]))  # the docs' resume command
    assert "1 of 3 trials finished" in output
    study = the_study(tmp_path)
    states = {trial.number: trial.state.name for trial in study.trials}
    assert states == {0: "COMPLETE", 1: "RUNNING", 2: "COMPLETE", 3: "COMPLETE"}  # 1 died with its sweep
    after = trial_folders(tmp_path)
    assert {trial: path / "metrics.json" for trial, path in after.items() if trial < 2} == before
    assert before[0].stat().st_mtime_ns == stamp and not before[1].exists()  # neither written again
    assert all((after[trial] / "metrics.json").is_file() for trial in (2, 3))
    assert len(set(after.values())) == 4 and list((tmp_path / "multirun").iterdir()) == [folder]


def test_optuna_dashboard_serves_a_study_on_localhost(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="mnist_adder", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    server = subprocess.Popen([str(dashboard), storage, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    (summary,) = json.load(response)["study_summaries"]
                break
            except (TimeoutError, ConnectionError, urllib.error.URLError):
                assert server.poll() is None and time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(0.5)
        assert summary["study_name"] == "mnist_adder"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}") as response:
            served = json.load(response)
        assert [trial["values"] for trial in served["trials"]] == [trial.values for trial in study.trials]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.mnist
def test_the_pruning_benchmark_runs_in_quick_mode():
    from benchmarks import pruning

    results = pruning.main(["--quick"])
    assert [(row["state"], row["epochs"]) for row in results["trials"]] == [("pruned", 2)] * 3
    assert results["whole_fit_seconds"] > results["fit_seconds"] > 0
