"""What the commands share, set up explicitly: the Hydra commands (train, eval) call `setup()` in their
`main` before Hydra reads a config, as the benchmarks, the notebook and the tests do; commands run inside
`user_errors()`, and train and eval end with `report()`.

Importing this module (or any other) changes nothing in the process: `setup()` registers the resolvers the
configs use, hooks Lightning's DDP launcher and silences the third-party notices below.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import signal
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra.utils
import omegaconf
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from mnist_adder import PROJECT_ROOT, UserError, writable_folder
from mnist_adder.runs import folders, plugins
from mnist_adder.runs.launching import job_command

log = logging.getLogger(__name__)

# (message regex, module regex) of warnings that are about a library's internals, not about this project.
SILENCED_WARNINGS = [
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing here calls it.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # The in-memory dataset hands out whole batches; worker processes would only compete for the cores.
    (r".*does not have many workers", r"lightning\.pytorch\..*"),
]
# Log lines that advertise another product.
SILENCED_LOG_PREFIXES = {"lightning.pytorch.utilities.rank_zero": ("💡 Tip:",)}


def if_gpu(accelerator: str, on_gpu: Any, otherwise: Any) -> Any:
    """`on_gpu` if `trainer.accelerator` puts the run on CUDA GPUs, else `otherwise`: the one place that
    decides what pays only there (SyncBatchNorm, bf16), as `${if_gpu:${trainer.accelerator},a,b}`."""
    import torch

    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return on_gpu if gpu else otherwise


# What a config's `_target_` may name: Hydra 1.4 warns about any target outside a list like this one (and
# 1.5 will refuse it): the project, the libraries its configs build from, and the reliability tests' faults.
TRUSTED_TARGETS = ["mnist_adder.*", "lightning.pytorch.*", "torch.optim.*", "optuna.samplers.*",
                   "optuna.pruners.*", "tests.callbacks.*"]  # fmt: skip
_trusting: ContextVar[bool] = ContextVar("trusting", default=False)


# Command-line choices that need an optional extra: (override prefix, module it brings, extra).
EXTRAS = [
    ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper", "sweeps"),
    ("hydra/launcher=joblib", "hydra_plugins.hydra_joblib_launcher", "cluster"),
    ("hydra/launcher=submitit", "hydra_plugins.hydra_submitit_launcher", "cluster"),
    ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "cluster"),
    ("logger=mlflow", "mlflow", "mlflow"),
    ("logger=wandb", "wandb", "wandb"),
    ("logger=many", "wandb", "wandb"),
]


def check_extras(arguments: list[str]) -> None:
    """Raise `UserError` naming the extra to install if an argument chooses what a missing extra brings."""
    for argument in arguments:
        for prefix, module, extra in EXTRAS:
            if argument.startswith(prefix) and importlib.util.find_spec(module) is None:
                raise UserError(f'{argument} needs the {extra} extra: pip install -e ".[{extra}]"')


def make_loggers(config: DictConfig | None) -> Any:
    """The loggers a `logger` config asks for: one (it has a `_target_`), or one for each entry of a group
    of them (`logger=many`; an entry set to null is left out)."""
    if config is None or "_target_" in config:
        return instantiate(config)
    return [instantiate(entry) for entry in config.values() if entry is not None]


class DropPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def setup() -> None:
    """Prepare this process for a command; safe to call more than once.

    - the resolvers of conf/: `project_root`, `if_gpu`, `run_name` and `run_dir` (cached: Hydra resolves
      the run folder more than once, and must get the same answer after creating it), and on Hydra 1.3
      Hydra 1.4's `hydra_override_dirname`;
    - this project's Hydra plugins (`plugins.register()`), and the trusted targets above as the process's
      execution whitelist (what a config may instantiate);
    - Lightning's DDP launcher starts a node's other processes with `launching.job_command`: this job
      alone, where Lightning's own command would launch a whole sweep again;
    - the notices above, silenced by message and module.
    """
    from lightning.pytorch.strategies.launchers import subprocess_script

    # OmegaConf 2.4 (Hydra 1.4) calls it register_resolver; 2.3 (Hydra 1.3) register_new_resolver.
    older = omegaconf.__version__ < "2.4"
    register = OmegaConf.register_new_resolver if older else OmegaConf.register_resolver
    register("project_root", lambda: str(PROJECT_ROOT), replace=True)
    register("if_gpu", if_gpu, replace=True)
    register("run_name", folders.run_name, replace=True)
    register("run_dir", folders.run_dir, use_cache=True, replace=True)
    if older:  # Hydra 1.4's resolver of the overrides as a folder name; on 1.3 the same is a job setting
        register("hydra_override_dirname", lambda: HydraConfig.get().job.override_dirname, replace=True)
    plugins.register()
    if not _trusting.get() and hasattr(hydra.utils, "execution_whitelist"):  # Hydra 1.4; 1.3 has none
        hydra.utils.execution_whitelist(TRUSTED_TARGETS).__enter__()  # for this process, as the resolvers are
        _trusting.set(True)
    subprocess_script._hydra_subprocess_cmd = job_command
    for message, module in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name, prefixes in SILENCED_LOG_PREFIXES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropPrefixes) for f in logger.filters):
            logger.addFilter(DropPrefixes(prefixes))


class JobSetup(Callback):
    """A Hydra callback (conf/train.yaml) that sets up the processes a launcher runs jobs in.

    The joblib and submitit launchers send each job the Hydra callbacks, pickled; Hydra names the job's
    folder with this project's resolvers before any callback hook runs, so this one calls `setup()` as it
    is unpickled there. Before a run or sweep starts, it checks that paths.log_dir is a writable folder.
    """

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        setup()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            writable_folder(Path(config.paths.log_dir), "paths.log_dir")

    on_multirun_start = on_run_start


def user_error_types() -> tuple[type[BaseException], ...]:
    """What the user got wrong: ours, Lightning's (e.g. trainer.max_epochs=-3), OmegaConf's (a ??? value)."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    return UserError, MisconfigurationException, MissingMandatoryValue


@contextmanager
def user_errors() -> Iterator[None]:
    """Report what the user got wrong in one line on stderr and exit 2; a bug keeps its traceback.

    That is one of `user_error_types()`, also when Hydra's instantiate wraps it. A run folder that holds
    nothing but Hydra's start-up files is removed: a refused run leaves nothing behind.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException:  # Lightning stops at the next batch, and would exit with 0
        print("error: stopped by SIGTERM; to resume, rerun the command with ckpt_path=last", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, user_error_types()):
            cause = cause.__cause__
        if cause is None:
            raise
        if HydraConfig.initialized():
            run = HydraConfig.get()
            folder, startup_files = Path(run.runtime.output_dir), {".hydra", f"{run.job.name}.log"}
            if folder.is_dir() and {path.name for path in folder.iterdir()} <= startup_files:
                shutil.rmtree(folder)
                if not any(folder.parent.iterdir()):  # the folder of runs with these overrides
                    folder.parent.rmdir()
        print(f"error: {str(cause).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


def report(
    metrics: dict[str, float],
    log_dir: str | None,
    commands: list[tuple[str, str]] | None = None,
    stage: str = "test",
    global_rank: int = 0,
) -> None:
    """Log the final table, with `commands` (what to do next) under it, and keep the metrics in
    log_dir/metrics.json for `mnist_adder.results`. `stage` is the split scored last: test, or val for
    `mnist_adder.eval split=val`. Beside metrics.json, run.json says when, on what hardware, at which
    commit and with which overrides. Only global rank 0 reports."""
    if global_rank != 0:
        return
    if log_dir:
        from mnist_adder.runs.provenance import commit, hardware

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        date = datetime.now().isoformat(timespec="seconds")
        run = {"date": date, "hardware": hardware(), "commit": commit(), "overrides": overrides}
        (Path(log_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (Path(log_dir) / "run.json").write_text(json.dumps(run, indent=2))

    def percent(name: str) -> str:
        return f"{100 * metrics[name]:.2f} %" if name in metrics else "-"

    answer_rows = [
        (f"{stage} answer acc", "answer_acc"),
        ("heads disagree", "contradictions"),
        ("re-paired sum acc", "repaired_sum_acc"),  # MNIST addition: 100 pairings' mean
    ]
    rows = [
        (f"{stage} digit acc", percent(f"{stage}/digit_acc")),
        (f"{stage} sum acc", percent(f"{stage}/sum_acc")),
        # The answer people are shown (a digit and a sum that add up), and how often the two heads disagree;
        # MNIST addition's test images paired afresh.
        *[(name, percent(f"{stage}/{key}")) for name, key in answer_rows if f"{stage}/{key}" in metrics],
        *([("best val sum acc", percent("val/sum_acc_best"))] if stage == "test" else []),
        ("parameters", f"{metrics['parameters']:,}"),
        ("training time", f"{metrics['fit_seconds']:.0f} s" if "fit_seconds" in metrics else "-"),
        ("log dir", str(log_dir)),
        *(commands or []),
    ]
    log.info("\n" + "\n".join(f"{name:>18}  {value}" for name, value in rows))
