"""Train, then test the best checkpoint on the official 10k test set.

    python -m mnist_adder.train model=dual                      # digit and sum supervised
    python -m mnist_adder.train model=adder trainer=cpu          # sum only
    python -m mnist_adder.train -m model=dual,adder seed=1,2     # a sweep, one TensorBoard run per job

Every run writes its TensorBoard events, checkpoints and Hydra config to one folder under
lightning_logs/, named after its overrides and start time, never one that exists. To resume:

    python -m mnist_adder.train model=dual ckpt_path=last   # the newest run with these overrides
    python -m mnist_adder.train ckpt_path=lightning_logs/.../checkpoints/last.ckpt

continues in the folder of the run it resumes.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies.launchers import subprocess_script
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from mnist_adder import PROJECT_ROOT, UserError, console, runs, writable_folder
from mnist_adder.callbacks import FitTimer
from mnist_adder.module import MNISTAdderModule, check_data, read_checkpoint

log = logging.getLogger(__name__)

SAMPLE_DIGIT = PROJECT_ROOT / "notebooks" / "seven.png"  # an MNIST test image, to try predict on
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


def if_gpu(accelerator: str, on_gpu: Any, otherwise: Any) -> Any:
    """`on_gpu` if `trainer.accelerator` puts the run on CUDA GPUs, else `otherwise`: the one place that
    decides what pays only there (SyncBatchNorm, bf16), as `${if_gpu:${trainer.accelerator},a,b}`."""
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return on_gpu if gpu else otherwise


OmegaConf.register_new_resolver("if_gpu", if_gpu, replace=True)
OmegaConf.register_new_resolver("run_name", runs.run_name, replace=True)
# Cached: Hydra resolves the run folder more than once, and must get the same answer after creating it.
OmegaConf.register_new_resolver("run_dir", runs.run_dir, use_cache=True, replace=True)
# Lightning's DDP launcher starts a node's other processes with this function's command: this job alone.
subprocess_script._hydra_subprocess_cmd = runs.job_command

console.quiet()


# What a run is judged by: shown beside its settings in TensorBoard's HPARAMS tab.
FINAL_METRICS = ("val/sum_acc_best", "test/digit_acc", "test/sum_acc")


class LogDirCheck(Callback):
    """A Hydra callback: before Hydra makes a run folder, paths.log_dir must be a folder we can write."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            writable_folder(Path(config.paths.log_dir), "paths.log_dir")

    on_multirun_start = on_run_start


def resume_path(ckpt_path: str | None, output_dir: str, sweep: bool = False) -> str | None:
    """The checkpoint to resume from: ckpt_path, with "last" made a path. Raises UserError if none, unless
    this is a `sweep` job that never began (it starts afresh)."""
    if ckpt_path == "last":
        last = Path(output_dir) / "checkpoints" / "last.ckpt"
        if sweep and not last.is_file():
            return None
        if not last.is_file():
            raise UserError(
                f"ckpt_path=last: no run under {Path(output_dir).parent} has a checkpoints/last.ckpt; "
                "give a .ckpt file, or train with the same overrides first"
            )
        return str(last)
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path {ckpt_path} is not a file: give a .ckpt file, 'last' or null")
    return ckpt_path


def check_resumable(ckpt_path: str, model: L.LightningModule) -> None:
    """Fail in one line, before training, if `ckpt_path` holds weights of another net than `model`."""

    def shapes(state: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
        return {(name, tuple(value.shape)) for name, value in state.items()}

    saved = read_checkpoint(ckpt_path)["state_dict"]
    if differ := sorted({name for name, _ in shapes(saved) ^ shapes(model.state_dict())}):
        raise UserError(
            f"ckpt_path {ckpt_path} holds another net than this config's ({len(differ)} weights differ, "
            f"e.g. {differ[0]}): resume with the overrides that trained it"
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model of `cfg`, test its best checkpoint, and return the final metrics.

    With `ckpt_path=last`, a run that already finished in its folder is not trained again: its metrics are
    returned as they were.
    """
    if (finished := runs.finished_metrics(cfg.paths.output_dir, cfg.ckpt_path)) is not None:
        log.info("%s finished before; its metrics stand", cfg.paths.output_dir)
        return finished
    entered = time.perf_counter()
    sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    runs.share_cores()
    ckpt_path = resume_path(cfg.ckpt_path, cfg.paths.output_dir, sweep=sweep)
    # Each part checks its settings as it is made: a mistake stops the run before it writes anything.
    datamodule = hydra.utils.instantiate(cfg.data)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before the model draws its weights
    model = hydra.utils.instantiate(cfg.model)
    check_data(model, cfg.data._target_)
    if ckpt_path:
        check_resumable(ckpt_path, model)
    callbacks = [hydra.utils.instantiate(callback) for callback in cfg.callbacks.values() if callback]
    logger = hydra.utils.instantiate(cfg.logger)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    if cfg.test:
        tested = time.perf_counter()
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            # The checkpoint's weights, as validated. trainer.test(ckpt_path=best) would let a weight
            # averaging callback (experiment=best) load the raw weights saved beside the averaged ones.
            model = type(model).load_from_checkpoint(best, map_location="cpu")
        else:
            log.warning("no best checkpoint was saved; testing the final weights")
        trainer.test(model, datamodule=datamodule)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
        metrics["test_seconds"] = time.perf_counter() - tested  # the best checkpoint loaded and tested
    timer = next((callback for callback in callbacks if isinstance(callback, FitTimer)), None)
    if timer is not None and timer.seconds is not None:  # None if fit ran in spawned processes
        metrics["setup_seconds"] = timer.started - entered  # data, model and trainer made and set up
        metrics["fit_seconds"] = timer.seconds
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    metrics["run_seconds"] = time.perf_counter() - entered  # all of train(): what is not start-up
    log_hparams(trainer, cfg, metrics)
    report(metrics, log_dir=cfg.paths.output_dir, commands=next_steps(cfg, best if cfg.test else "", model))
    return metrics


def next_steps(cfg: DictConfig, best: str, model: L.LightningModule | None = None) -> list[tuple[str, str]]:
    """Ready-to-paste commands for what a user does with a finished run, with its real paths.

    `predict` (an image and a number) is offered for an `MNISTAdderModule`; evaluation is told the data
    the model reads when it is not the default (data=mnist_addition and the run's data.* overrides).
    """

    def here(path: Path) -> str:  # relative to where the user is, if the run is below it
        return (
            str(path.resolve().relative_to(Path.cwd()))
            if path.resolve().is_relative_to(Path.cwd())
            else str(path)
        )

    folder = Path(cfg.paths.output_dir)
    last = folder / "checkpoints" / "last.ckpt"
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    again = [shlex.quote(o) for o in overrides if not o.startswith(("ckpt_path=", "hydra."))]
    paths = [o for o in again if o.startswith("paths.")]  # where this run keeps its data and logs
    data = getattr(model, "data_config", "mnist")  # eval reads conf/data/mnist.yaml unless told
    data_args = [] if data == "mnist" else [f"data={data}", *(o for o in again if o.startswith("data."))]
    commands = []
    if best:
        evaluate = ["python -m mnist_adder.eval", f"ckpt_path={here(Path(best))}", *data_args, *paths]
        commands.append(("evaluate", " ".join(evaluate)))
        if isinstance(model, MNISTAdderModule):
            predict = f"mnist-adder-predict --checkpoint {here(Path(best))} {here(SAMPLE_DIGIT)} 5"
            commands.append(("predict", predict))
    commands.append(("curves", f"tensorboard --logdir {here(folder)}"))
    if last.is_file():
        resume = ["python -m mnist_adder.train", *again, f"ckpt_path={here(last)}"]
        commands.append(("resume", " ".join(resume)))
    return commands


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Fill TensorBoard's HPARAMS tab: this run's settings beside its final metrics, to compare runs."""
    final = {f"hparams/{name}": metrics[name] for name in FINAL_METRICS if name in metrics}
    settings = {key: without_plumbing(OmegaConf.to_container(cfg[key], resolve=True))
                for key in ("model", "data", "trainer")}  # fmt: skip
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams({"seed": cfg.seed, **settings}, metrics=final)


def without_plumbing(settings: Any, nested: bool = False) -> Any:
    """`settings` without Hydra's `_target_`, `_partial_` and `_convert_` keys, for TensorBoard's HPARAMS.

    A nested `_target_` says which part was chosen (the backbone, the optimiser): it stays, as `class`.
    """
    if not isinstance(settings, dict):
        return settings
    kept = {key: without_plumbing(value, True) for key, value in settings.items() if not key.startswith("_")}
    if nested and "_target_" in settings:
        kept = {"class": str(settings["_target_"]).rsplit(".", 1)[-1], **kept}
    return kept


@rank_zero_only
def report(
    metrics: dict[str, float],
    log_dir: str | None,
    commands: list[tuple[str, str]] | None = None,
    stage: str = "test",
) -> None:
    """Log the final table, with `commands` (what to do next) under it, and keep the metrics in
    log_dir/metrics.json for `mnist_adder.results`. `stage` is the split scored last: test, or val for
    `mnist_adder.eval split=val`."""
    if log_dir:
        (Path(log_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))

    def percent(name: str) -> str:
        return f"{100 * metrics[name]:.2f} %" if name in metrics else "-"

    rows = [
        (f"{stage} digit acc", percent(f"{stage}/digit_acc")),
        (f"{stage} sum acc", percent(f"{stage}/sum_acc")),
        *([("best val sum acc", percent("val/sum_acc_best"))] if stage == "test" else []),
        ("parameters", f"{metrics['parameters']:,}"),
        ("training time", f"{metrics['fit_seconds']:.0f} s" if "fit_seconds" in metrics else "-"),
        ("log dir", str(log_dir)),
        *(commands or []),
    ]
    log.info("\n" + "\n".join(f"{name:>18}  {value}" for name, value in rows))


# What the user got wrong: ours, Lightning's (e.g. trainer.max_epochs=-3) and OmegaConf's (a ??? value).
USER_ERRORS = (UserError, MisconfigurationException, MissingMandatoryValue)


@contextmanager
def user_errors() -> Iterator[None]:
    """Report what the user got wrong in one line on stderr and exit 2; a bug keeps its traceback.

    That is one of `USER_ERRORS`, also when Hydra's instantiate wraps it. A run folder that holds nothing
    but Hydra's start-up files is removed: a refused run leaves nothing behind.
    """
    try:
        yield
    except SIGTERMException:  # Lightning stops at the next batch, and would exit with 0
        print("error: stopped by SIGTERM; to resume, rerun the command with ckpt_path=last", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except Exception as error:
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, USER_ERRORS):
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with user_errors(), runs.one_job():
        return train(cfg).get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
