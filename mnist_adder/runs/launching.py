"""Launching a run's processes: DDP over the devices of a node, torchrun, several nodes, and a sweep's
jobs sharing the cores, with the hooks Lightning's launcher needs to run Hydra's jobs.

Processes that start Hydra on their own (torchrun, one command per node) agree on one run folder: global
rank 0 names it, and the others read it from the TCP store at MASTER_ADDR:MASTER_PORT that DDP uses anyway
(`agree_on`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

from mnist_adder import UserError

log = logging.getLogger(__name__)

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


def agree_on(choose: Callable[[], str]) -> str:
    """`choose()` in global rank 0 of processes started apart (torchrun, one command per node), shared
    with the others through the TCP store; `choose()` alone for any other process."""
    rank = launch_rank()
    if rank is None:
        return choose()
    store = rendezvous_store(rank)
    if rank > 0:
        return store.get(RUN_DIR_KEY).decode()
    value = choose()
    store.set(RUN_DIR_KEY, value)
    return value


def is_main_process() -> bool:
    """Whether this process is global rank 0 of its run, as far as its environment tells before Lightning."""
    env = os.environ
    for variable in ("RANK", "SLURM_PROCID"):
        if variable in env:
            return int(env[variable]) == 0
    return int(env.get("NODE_RANK", 0)) == 0 and int(env.get("LOCAL_RANK", 0)) == 0


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
    module = (
        spec.name if spec is not None and spec.name.startswith("mnist_adder.") else "mnist_adder.train"
    )
    command = [sys.executable, "-m", module, *hydra_cfg.overrides.task]
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',
        f"hydra.job.name=train_ddp_process_{local_rank}",
        "hydra.output_subdir=null",
        "hydra.mode=RUN",
    ]
    return command, get_original_cwd()
