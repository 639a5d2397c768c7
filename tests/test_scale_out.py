"""Beyond one process, run here with CPU processes standing in for GPUs and nodes (marked `mnist`).

Every command is the guide's (docs/scale-out.md), with CPU settings and a short
`debug=limit` recipe added; each process is a real `python -m mnist_adder.train` or `torchrun`.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize

from mnist_adder import PROJECT_ROOT, hydra_version_base
from mnist_adder.runs.tables import runs_by
from tests.conftest import free_port

pytestmark = pytest.mark.mnist

SHORT = ["debug=limit", "trainer.max_epochs=1", "callbacks.error_pictures=null"]
ALL_TEST = "trainer.limit_test_batches=null"  # debug=limit tests a slice


def start(command: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """Start a command whose output goes to a file: processes that wait for each other never block on a
    full pipe that nobody reads."""
    output = tempfile.TemporaryFile("w+")  # noqa: SIM115  closed with the process
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, stdout=output,
                               stderr=subprocess.STDOUT, text=True, **kwargs)  # fmt: skip
    process.output = output
    return process


def finish(*processes: subprocess.Popen, timeout: float = 600) -> list[str]:
    """Wait for each process; each must exit with 0. Returns their outputs."""
    outputs = []
    for process in processes:
        process.wait(timeout=timeout)
        process.output.seek(0)
        outputs.append(process.output.read())
        assert process.returncode == 0, outputs[-1][-3000:]
    return outputs


def train(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "mnist_adder.train", *overrides]


def metrics_of(folder) -> dict[str, float]:
    return json.loads((folder / "metrics.json").read_text())


def assert_tests_like_one_process(folder, log_dir) -> None:
    """All 10,000 test samples counted once, and the metrics of `mnist_adder.eval` on the best checkpoint,
    given unquoted as the path it is."""
    ddp = metrics_of(folder)
    assert ddp["test/samples"] == 10_000
    (checkpoint,) = (folder / "checkpoints").glob("epoch*.ckpt")
    eval_dir = log_dir / "single"
    finish(
        start(
            [sys.executable, "-m", "mnist_adder.eval", f"ckpt_path={checkpoint}",
             f"paths.log_dir={eval_dir}"]
        )
    )
    (single,) = [json.loads(path.read_text()) for path in eval_dir.glob("eval/*/metrics.json")]
    for name in ("test/samples", "test/digit_acc", "test/sum_acc"):
        assert ddp[name] == single[name]


def run_folders(log_dir) -> list:
    return sorted(path.parent for path in log_dir.rglob(".hydra"))


GUIDE = (PROJECT_ROOT / "docs" / "scale-out.md").read_text()


def readme_nodes(first_words: str, port: int, *overrides: str) -> list[tuple[list[str], dict[str, str]]]:
    """The guide's lines that start with `first_words`, one per node, as (command, environment), with this
    test's port and `overrides` added; `python` and `torchrun` are this interpreter's."""
    nodes = []
    for line in (line for line in GUIDE.splitlines() if line.startswith(first_words)):
        words, env = shlex.split(line), {}
        while "=" in words[0] and words[0].split("=")[0].isupper():
            name, value = words.pop(0).split("=", 1)
            env[name] = str(port) if name == "MASTER_PORT" else value
        program = {"python": [sys.executable], "torchrun": [sys.executable, "-m", "torch.distributed.run"]}
        words = [f"--master-port={port}" if word.startswith("--master-port=") else word for word in words]
        nodes.append(([*program[words[0]], *words[1:], *overrides], env))
    assert len(nodes) == 2, f"the guide has no two lines starting with {first_words!r}"
    return nodes


@pytest.mark.parametrize("first_words", ["MASTER_ADDR=127.0.0.1", "torchrun --nnodes=2"])
def test_two_nodes_on_localhost_share_one_run_folder_and_test_like_one_process(tmp_path, first_words):
    """The guide's two "nodes" of one CPU process each, started apart, with no hydra.run.dir: one folder."""
    nodes = readme_nodes(first_words, free_port(), f"paths.log_dir={tmp_path}", *SHORT, ALL_TEST)
    # The second node first: it waits for the first to name the folder.
    finish(*[start(command, env) for command, env in reversed(nodes)])
    (folder,) = run_folders(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [folder.parent.name]  # and nothing else
    assert_tests_like_one_process(folder, tmp_path / "eval")


def test_ddp_inside_a_sweep_runs_each_job_once_in_one_sweep_folder(tmp_path):
    sweep = train("-m", f"paths.log_dir={tmp_path}", "trainer=ddp_sim", "seed=1,2", *SHORT, ALL_TEST)
    (output,) = finish(start(sweep))
    assert output.count("Launching 2 jobs locally") == 1
    (sweep,) = (tmp_path / "multirun").iterdir()
    jobs = sorted(path for path in sweep.iterdir() if path.is_dir())
    assert [job.name for job in jobs] == [
        f"callbacks.error_pictures-null__debug-limit__seed-{seed}__trainer.limit_test_batches-null"
        "__trainer.max_epochs-1__trainer-ddp_sim"
        for seed in (1, 2)
    ]
    assert [metrics_of(job)["test/samples"] for job in jobs] == [10_000, 10_000]
    assert {log.parent for log in tmp_path.rglob("train_ddp_process_1.log")} == set(jobs)


def jobs_by_seed(sweep: Path) -> dict[int, Path]:
    """The job folders of a sweep over `seed`, found by their overrides (a long name is cut to a hash)."""
    return {int(seed): run for seed, run in runs_by(sweep, "seed").items()}


def test_a_sweep_killed_mid_job_is_finished_in_its_own_folder(tmp_path):
    sweep_command = ["-m", f"paths.log_dir={tmp_path}", "seed=1,2,3", *SHORT, "trainer.max_epochs=2",
                     "trainer.deterministic=true"]  # fmt: skip
    kill = [  # the sweep's process dies in the second epoch of job 2, one checkpoint in
        "+callbacks.kill._target_=tests.callbacks.Interrupt", "+callbacks.kill.epoch=1",
        "+callbacks.kill.batch=5", "+callbacks.kill.signal_name=SIGKILL", "+callbacks.kill.job='seed=2'",
    ]  # fmt: skip
    sweep = start(train(*sweep_command, *kill))
    sweep.wait(timeout=600)
    assert sweep.returncode == -signal.SIGKILL
    (folder,) = (tmp_path / "multirun").iterdir()
    job = jobs_by_seed(folder)
    assert set(job) == {1, 2}
    assert (job[1] / "metrics.json").is_file() and not (job[2] / "metrics.json").exists()
    first = (job[1] / "metrics.json").stat().st_mtime_ns

    # docs/scale-out.md: the same command, with the sweep's folder and ckpt_path=last
    (output,) = finish(start(train(*sweep_command, *kill, f"hydra.sweep.dir={folder}", "ckpt_path=last")))
    assert (job[1] / "metrics.json").stat().st_mtime_ns == first  # finished: not trained again
    assert output.count("finished before; its metrics stand") == 1
    assert output.count("Restored all states from the checkpoint") == 1  # job 2, from its last.ckpt
    assert f"{job[2]}/checkpoints/last.ckpt" in output
    assert jobs_by_seed(folder) == {**job, 3: jobs_by_seed(folder)[3]}  # the same folders, and job 3's
    assert all((path / "metrics.json").is_file() for path in jobs_by_seed(folder).values())
    assert list((tmp_path / "multirun").iterdir()) == [folder]


def test_a_slurm_local_sweep_requeues_a_preempted_job_and_it_resumes_in_its_folder(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")
    preempt = [  # submitit's pre-emption signal, once, in the second epoch of each job
        "+callbacks.preempt._target_=tests.callbacks.Interrupt", "+callbacks.preempt.epoch=1",
        "+callbacks.preempt.batch=5", "+callbacks.preempt.signal_name=SIGUSR2",
    ]  # fmt: skip
    command = train("-m", "hydra/launcher=slurm_local", f"paths.log_dir={tmp_path}", "seed=1,2", *SHORT,
                    "trainer.max_epochs=2", *preempt)  # fmt: skip
    finish(start(command))
    (sweep,) = (tmp_path / "multirun").iterdir()
    jobs = sorted(path for path in sweep.iterdir() if path.is_dir() and path.name != ".submitit")
    assert len(jobs) == 2 and all((job / "metrics.json").is_file() for job in jobs)
    submissions = [folder for folder in (sweep / ".submitit").iterdir() if folder.name.isdigit()]  # job ids
    assert len(submissions) == 2
    for submission in submissions:  # each job: pre-empted, requeued, resumed from its last.ckpt
        logs = "".join(path.read_text() for path in submission.glob("*_log.*"))
        assert "this job is preempted" in logs and "Requeued job" in logs
        assert "Restored all states from the checkpoint" in logs and "/checkpoints/last.ckpt" in logs


def test_the_slurm_launcher_reads_its_resources_from_the_trainer_config():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                 "hydra.launcher.partition=gpu"]  # fmt: skip
    with initialize(config_path="../conf", **hydra_version_base()):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.partition) == (4, 2, "gpu")
    assert launcher.gpus_per_node == (4 if cfg.trainer.sync_batchnorm else None)  # no GPU here: None


def test_two_optuna_workers_share_one_study(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the sweeps extra")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    # docs/scale-out.md: the study is made once before the workers start (two first writes of a new
    # database collide)
    optuna_cli = str(Path(sys.executable).with_name("optuna"))
    finish(start([optuna_cli, "create-study", "--study-name", "mnist_adder", "--storage", storage,
                  "--direction", "maximize"]))  # fmt: skip
    workers = [
        start(train("-m", "hparams_search=optuna", f"hydra.sweeper.storage={storage}",
                    "hydra.sweeper.study_name=mnist_adder", f"paths.log_dir={tmp_path}",
                    "hydra.sweeper.n_trials=4", f"hydra.sweeper.sampler.seed={worker}",
                    f"hydra.sweep.dir={tmp_path}/worker{worker}", "trainer.max_epochs=1",
                    "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "test=false"))
        for worker in (1, 2)
    ]  # fmt: skip
    finish(*workers)
    import optuna

    trials = optuna.load_study(study_name="mnist_adder", storage=storage).trials
    assert len(trials) in (4, 5)  # 4 owed; a worker may ask for one while the other's last one runs
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))  # each trial once
    assert all(trial.state.name == "COMPLETE" for trial in trials)
    assert len({tuple(sorted(trial.params.items())) for trial in trials}) == len(trials)
    best = max(trial.value for trial in trials)
    last = max((tmp_path / f"worker{w}" / "optimization_results.yaml" for w in (1, 2)), key=os.path.getmtime)
    assert yaml.safe_load(last.read_text())["best_value"] == best  # the later worker saw all four
