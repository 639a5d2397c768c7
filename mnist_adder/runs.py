"""Where a run's files go: folder names a user can paste, one folder for all processes of a run, and
finishing what was cut short.

    lightning_logs/model-dual__seed-3/2026-11-22_10-00-00/           train model=dual seed=3
    lightning_logs/multirun/2026-11-22_10-00-00/model-adder__seed-1/  a job of train -m model=adder seed=1

A folder name holds only letters, digits and `_ . - +`, so every path a run prints can be given back to
any entry point (`ckpt_path=...`, `hydra.sweep.dir=...`) unquoted. `ckpt_path=last` finishes what a run or
a sweep left: a finished job is reported, not retrained; a stopped one resumes from its `last.ckpt` in
its own folder; a sweep job that never began starts there.

Processes that start Hydra on their own (torchrun, one command per node) agree on one run folder: global
rank 0 names it, and the others read it from the TCP store at MASTER_ADDR:MASTER_PORT that DDP uses anyway.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from mnist_adder import UserError

log = logging.getLogger(__name__)

# Unquoted in Hydra's override grammar, and plain in a shell, a URL or TensorBoard's run filter.
UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")
MAX_NAME_BYTES = 200  # a file name has at most 255 bytes


def run_name(override_dirname: str) -> str:
    """A folder name for a run's overrides, as Hydra joins them (`model-dual__seed-3`, see train.yaml).

    Anything but letters, digits and `_ . + -` becomes a `.` (`[[3,4]]` -> `3.4`, `model/sum_head` ->
    `model.sum_head`); no overrides is `defaults`; a name too long for a file is cut and ends in a hash.
    """
    name = "__".join(
        "-".join(UNSAFE.sub(".", part).strip(".") for part in item.split("-", 1))
        for item in override_dirname.split("__")
    ).strip("_")
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:180]}...{digest}"
    return name or "defaults"


def run_dir(ckpt_path: str | None, runs: str, stamp: str) -> str:
    """The folder of a single run: the run folder it resumes from, else a new one, runs/stamp (or
    stamp_1, ...). All processes of a run started apart (torchrun, one command per node) get the one that
    global rank 0 chose.

    `runs` holds the runs with this run's overrides. ckpt_path "last" resumes the newest of them with a
    checkpoints/last.ckpt; a checkpoint inside a run folder resumes that run.
    """
    rank, store = launch_rank(), None
    if rank is not None:
        store = rendezvous_store(rank)
        if rank > 0:
            return store.get(RUN_DIR_KEY).decode()
    folder = _choose_run_dir(ckpt_path, Path(runs), stamp)
    if store is not None:
        store.set(RUN_DIR_KEY, str(folder))
    return str(folder)


def _choose_run_dir(ckpt_path: str | None, runs: Path, stamp: str) -> Path:
    if ckpt_path == "last":
        lasts = list(runs.glob("*/checkpoints/last.ckpt"))
        if lasts:
            return max(lasts, key=lambda path: path.stat().st_mtime).parents[1]
    elif ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        folder = Path(ckpt_path).resolve().parents[1]
        if (folder / ".hydra").is_dir():
            return folder
    folder, version = runs / stamp, 0
    while folder.exists():  # another run with the same overrides started in the same second
        version += 1
        folder = runs / f"{stamp}_{version}"
    return folder


RUN_DIR_KEY = f"mnist_adder/run_dir/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"
RENDEZVOUS_TIMEOUT = timedelta(minutes=30)  # torch.distributed's own default for a process group
_stores: list = []  # rank 0's store server lives as long as the process; DDP later joins it


def launch_rank() -> int | None:
    """This process's global rank if it is one of several that each started Hydra themselves, else None.

    That is a torchrun worker (RANK, WORLD_SIZE > 1), or a node started with Lightning's own variables
    (MASTER_ADDR, MASTER_PORT, NODE_RANK) whose first process Lightning has not started yet. Processes
    that Lightning starts for the other devices of a node get the run folder on their command line.
    """
    env = os.environ
    if "TORCHELASTIC_RUN_ID" in env and int(env.get("WORLD_SIZE", 1)) > 1:
        return int(env["RANK"])
    if {"MASTER_ADDR", "MASTER_PORT", "NODE_RANK"} <= env.keys() and "LOCAL_RANK" not in env:
        return int(env["NODE_RANK"])  # 0 only for the first process of the first node
    return None


def rendezvous_store(rank: int):
    """A client of the TCP store at MASTER_ADDR:MASTER_PORT; rank 0 hosts it, unless torchrun's agent does.

    Rank 0's server is multi-tenant: `torch.distributed.init_process_group` later reuses it, exactly as it
    would have started it.
    """
    from torch.distributed import TCPStore

    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    hosts = rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    try:
        store = TCPStore(host, port, is_master=hosts, timeout=RENDEZVOUS_TIMEOUT, wait_for_workers=False,
                         multi_tenant=hosts)  # fmt: skip
    except Exception as error:  # a refused bind or a timeout, each in its own words
        raise UserError(
            f"rank {rank} could not reach the run's TCP store at {host}:{port} "
            f"({str(error).splitlines()[0]}): start rank 0 with the same MASTER_ADDR and MASTER_PORT"
        ) from None
    if hosts:
        _stores.append(store)
    return store


def is_main_process() -> bool:
    """Whether this process is global rank 0 of its run, as far as its environment tells before Lightning."""
    env = os.environ
    for variable in ("RANK", "SLURM_PROCID"):
        if variable in env:
            return int(env[variable]) == 0
    return int(env.get("NODE_RANK", 0)) == 0 and int(env.get("LOCAL_RANK", 0)) == 0


def finished_metrics(output_dir: str | Path, ckpt_path: str | None) -> dict[str, float] | None:
    """The metrics of a run that already finished in `output_dir`, if ckpt_path asks to finish it: "last",
    or a checkpoint of its own.

    Raises `UserError` if `output_dir` already holds a run and ckpt_path does not say to continue it: a
    sweep rerun into its own folder (`hydra.sweep.dir=...`) never overwrites a job.
    """
    folder = Path(output_dir)
    metrics = folder / "metrics.json"
    own = ckpt_path is not None and Path(ckpt_path).resolve().parent == (folder / "checkpoints").resolve()
    if ckpt_path == "last" or own:
        return json.loads(metrics.read_text()) if metrics.is_file() else None
    if ckpt_path is None and is_main_process() and (metrics.is_file() or (folder / "checkpoints").is_dir()):
        raise UserError(
            f"{folder} already holds a run: add ckpt_path=last to finish it there, or give another "
            "hydra.sweep.dir"
        )
    return None


@contextmanager
def one_job() -> Iterator[None]:
    """Leave no DDP state behind a job, so that the next job of a sweep, in this process, starts its own.

    Lightning keeps the process group and the variables it set for its launcher (MASTER_PORT, LOCAL_RANK,
    ...) after `fit` and `test`; the next job would reuse a group whose other processes have exited.
    """
    saved = {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    try:
        yield
    finally:
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def share_cores() -> None:
    """Give this job its share of the machine's cores when the sweep's launcher runs `n_jobs` jobs at once
    here (`hydra/launcher=joblib`), so that they do not fight over them."""
    import torch
    from hydra.core.hydra_config import HydraConfig

    n_jobs = HydraConfig.get().launcher.get("n_jobs") if HydraConfig.initialized() else None
    if n_jobs:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        at_once = min(cores, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)  # joblib: -1 is one per core
        torch.set_num_threads(max(1, cores // at_once))
        threads = torch.get_num_threads()
        log.info("%d jobs at once on %d cores: %d torch threads each", at_once, cores, threads)


LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that Lightning's DDP launcher runs for another device of this node: this job alone.

    Lightning's own (`_hydra_subprocess_cmd`) repeats the whole command line, so under `-m` every extra
    process would launch the sweep again. This one gives the job's own overrides and folder instead.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hydra_cfg = HydraConfig.get()
    spec = __main__.__spec__  # under a submitit job, __main__ is submitit's
    module = spec.name if spec is not None and spec.name.startswith("mnist_adder.") else "mnist_adder.train"
    command = [sys.executable, "-m", module, *hydra_cfg.overrides.task]
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]
    return command, get_original_cwd()
