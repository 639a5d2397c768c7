"""Train, then test the best checkpoint on the official 10k test set.

    python -m mnist_adder.train model=dual                      # digit and sum supervised
    python -m mnist_adder.train model=adder trainer=cpu          # sum only
    python -m mnist_adder.train -m model=dual,adder seed=1,2     # a sweep, one TensorBoard run per job

Every run writes its TensorBoard events, checkpoints and Hydra config to one folder under
lightning_logs/, named after its overrides.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from mnist_adder import UserError
from mnist_adder.callbacks import FitTimer

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)

# The in-memory dataset hands out whole batches; worker processes would only compete for the 2 cores.
warnings.filterwarnings("ignore", ".*does not have many workers.*")


# What a run is judged by: shown beside its settings in TensorBoard's HPARAMS tab.
FINAL_METRICS = ("val/sum_acc_best", "test/digit_acc", "test/sum_acc")


def check_ckpt_path(ckpt_path: str | None) -> None:
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path {ckpt_path} is not a file: give a .ckpt file, 'last' or null")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model of `cfg`, test its best checkpoint, and return the final metrics."""
    check_ckpt_path(cfg.ckpt_path)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = [hydra.utils.instantiate(callback) for callback in cfg.callbacks.values() if callback]
    logger = hydra.utils.instantiate(cfg.logger)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}

    if cfg.test:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if best:
            # The checkpoint's weights, as validated. trainer.test(ckpt_path=best) would let a weight
            # averaging callback (experiment=best) load the raw weights saved beside the averaged ones.
            model = type(model).load_from_checkpoint(best, map_location="cpu")
        else:
            log.warning("no best checkpoint was saved; testing the final weights")
        trainer.test(model, datamodule=datamodule)
        metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})
    timer = next((callback for callback in callbacks if isinstance(callback, FitTimer)), None)
    if timer is not None:
        metrics["fit_seconds"] = timer.seconds
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    log_hparams(trainer, cfg, metrics)
    report(metrics, log_dir=trainer.log_dir)
    return metrics


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """Fill TensorBoard's HPARAMS tab: this run's settings beside its final metrics, to compare runs."""
    final = {f"hparams/{name}": metrics[name] for name in FINAL_METRICS if name in metrics}
    settings = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "data", "trainer")}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams({"seed": cfg.seed, **settings}, metrics=final)


@rank_zero_only
def report(metrics: dict[str, float], log_dir: str | None) -> None:
    """Log the final table, and keep the metrics in log_dir/metrics.json for `mnist_adder.results`."""
    if log_dir:
        (Path(log_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))

    def percent(name: str) -> str:
        return f"{100 * metrics[name]:.2f} %" if name in metrics else "-"

    rows = [
        ("test digit acc", percent("test/digit_acc")),
        ("test sum acc", percent("test/sum_acc")),
        ("best val sum acc", percent("val/sum_acc_best")),
        ("parameters", f"{metrics['parameters']:,}"),
        ("training time", f"{metrics['fit_seconds']:.0f} s" if "fit_seconds" in metrics else "-"),
        ("log dir", str(log_dir)),
    ]
    log.info("\n" + "\n".join(f"{name:>18}  {value}" for name, value in rows))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
