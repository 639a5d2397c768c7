"""Train, then test the best checkpoint on the official 10k test set.

    python -m mnist_adder.train model=dual                         # digit and sum supervised
    python -m mnist_adder.train model=adder trainer=cpu         # sum only
    python -m mnist_adder.train -m model=dual,adder seed=1,2    # a sweep, one TensorBoard run per job

Every run writes its TensorBoard events, checkpoints and Hydra config to one folder under
lightning_logs/, named after its overrides and start time, never one that exists. To resume:

    python -m mnist_adder.train model=dual ckpt_path=last   # the newest run with these overrides
    python -m mnist_adder.train ckpt_path=lightning_logs/.../checkpoints/last.ckpt

continues in the folder of the run it resumes.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from mnist_adder import PROJECT_ROOT, UserError, hydra_version_base
from mnist_adder.models.checkpoints import load_module, read_checkpoint
from mnist_adder.models.module import DigitPlusNumberModule, check_data
from mnist_adder.runs import app, folders, launching
from mnist_adder.runs.callbacks import FitTimer, OptunaPruning

log = logging.getLogger(__name__)

SAMPLE_DIGIT = PROJECT_ROOT / "notebooks" / "seven.png"  # an MNIST test image, to try predict on


# What a run is judged by: shown beside its settings in TensorBoard's HPARAMS tab.
FINAL_METRICS = ("val/sum_acc_best", "test/digit_acc", "test/sum_acc")


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
    if (finished := folders.finished_metrics(cfg.paths.output_dir, cfg.ckpt_path)) is not None:
        log.info("%s finished before; its metrics stand", cfg.paths.output_dir)
        return finished
    entered = time.perf_counter()
    sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    launching.share_cores()
    ckpt_path = folders.checkpoint_to_resume(cfg.ckpt_path, cfg.paths.output_dir, sweep=sweep)
    # Each part checks its settings as it is made: a mistake stops the run before it writes anything.
    datamodule = hydra.utils.instantiate(cfg.data)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before the model draws its weights
    model = hydra.utils.instantiate(cfg.model)
    check_data(model, cfg.data._target_)
    if isinstance(model, DigitPlusNumberModule):
        model.read_teachers()
    if ckpt_path:
        check_resumable(ckpt_path, model)
    callbacks = [hydra.utils.instantiate(callback) for callback in cfg.callbacks.values() if callback]
    if sweep and cfg.optuna_trial is not None:  # a trial of hparams_search=optuna: its pruner may stop it
        sweeper = HydraConfig.get().sweeper  # the study is in its storage; the pruner is not: made here too
        pruner = hydra.utils.instantiate(sweeper.pruner)
        callbacks.append(OptunaPruning(sweeper.storage, sweeper.study_name, cfg.optuna_trial, pruner,
                                       cfg.optimized_metric))  # fmt: skip
    logger = app.make_loggers(cfg.logger)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    if cfg.test:
        tested = time.perf_counter()
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            # The checkpoint's weights, as validated. trainer.test(ckpt_path=best) would let a weight
            # averaging callback (experiment=best) load the raw weights saved beside the averaged ones.
            model = load_module(best)
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
    commands = next_steps(cfg, best if cfg.test else "", model)
    app.report(metrics, cfg.paths.output_dir, commands, global_rank=trainer.global_rank)
    return metrics


def next_steps(cfg: DictConfig, best: str, model: L.LightningModule | None = None) -> list[tuple[str, str]]:
    """Ready-to-paste commands for what a user does with a finished run, with its real paths.

    `predict` (an image and a number) and `export` are offered for a `DigitPlusNumberModule`. Evaluation
    needs no data settings: the checkpoint holds them.
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
    sweeping = ("ckpt_path=", "hydra.", "hparams_search=", "optuna_trial=")  # the job alone resumes
    again = [shlex.quote(o) for o in overrides if not o.startswith(sweeping)]
    paths = [o for o in again if o.startswith("paths.")]  # where this run keeps its data and logs
    commands = []
    if best:
        evaluate = ["python -m mnist_adder.eval", f"ckpt_path={here(Path(best))}", *paths]
        commands.append(("evaluate", " ".join(evaluate)))
        if isinstance(model, DigitPlusNumberModule):
            predict = f"mnist-adder-predict --checkpoint {here(Path(best))} {here(SAMPLE_DIGIT)} 5"
            commands.append(("predict", predict))
            export = ["python -m mnist_adder.export", f"ckpt_path={here(Path(best))}", *paths]
            commands.append(("export", " ".join(export)))
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


PLACES = ("data_dir", "default_root_dir")  # where a run's files are: not a setting to compare


def without_plumbing(settings: Any, nested: bool = False) -> Any:
    """`settings` without Hydra's `_target_`, `_partial_` and `_convert_` keys, and without the folders
    the run reads and writes (`PLACES`), for TensorBoard's HPARAMS: what is compared between runs.

    A nested `_target_` says which part was chosen (the backbone, the optimiser): it stays, as `class`.
    """
    if not isinstance(settings, dict):
        return settings
    kept = {key: without_plumbing(value, True) for key, value in settings.items()
            if not key.startswith("_") and key not in PLACES}  # fmt: skip
    if nested and "_target_" in settings:
        kept = {"class": str(settings["_target_"]).rsplit(".", 1)[-1], **kept}
    return kept


@hydra.main(config_path="../conf", config_name="train", **hydra_version_base())
def run(cfg: DictConfig) -> float | None:
    """The Hydra task: one run, or one job of a sweep, whose optimised metric a sweeper reads."""
    with app.user_errors(), launching.one_job():
        return train(cfg).get(cfg.optimized_metric)


def main() -> None:
    app.setup()
    with app.user_errors():
        app.check_extras(sys.argv[1:])
        searches = [argument for argument in sys.argv[1:] if argument.startswith("hparams_search=")]
        if searches and not {"-m", "--multirun"} & set(sys.argv[1:]):
            raise UserError(f"{searches[0]} is a sweep: add -m, as in python -m mnist_adder.train -m "
                            f"{searches[0]}")  # fmt: skip
    run()


if __name__ == "__main__":
    main()
