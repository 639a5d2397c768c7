"""Test a checkpoint on the official 10k test set, with the same metrics as training.

    python -m mnist_adder.eval ckpt_path=lightning_logs/model-adder/.../checkpoints/last.ckpt
    python -m mnist_adder.eval ckpt_path=... split=val test_time_shifts=1   # validation, with TTA
    python -m mnist_adder.eval ckpt_path=... num_digits=15   # MNIST addition: sums of 15-digit numbers

The checkpoint describes its model and its data (the data module's settings, held-out pairs included), so
no model or data override is needed; `test_time_shifts` replaces its test-time augmentation (see
`mnist_adder.models.nets.ShiftAverage`). An MNIST-addition net reads numbers of any length: `num_digits`
tests it on sums of numbers that long instead of its own. `split=val` scores the validation images
instead, which is where a choice between settings belongs. Results go to a new folder under
lightning_logs/eval/.
"""

from __future__ import annotations

import importlib

import hydra
from omegaconf import DictConfig

from mnist_adder import UserError, hydra_version_base
from mnist_adder.models.checkpoints import load_module
from mnist_adder.models.nets import ShiftAverage, check_shifts
from mnist_adder.runs import app


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` (on `cfg.split`) and return its metrics."""
    if cfg.split not in ("test", "val"):
        raise UserError(f"split must be test or val, got {cfg.split}")
    model = load_module(cfg.ckpt_path)
    if cfg.test_time_shifts is not None:
        shifters = [module for module in model.modules() if isinstance(module, ShiftAverage)]
        if not shifters:
            raise UserError(f"test_time_shifts: {type(model).__name__} has no test-time augmentation")
        for shifter in shifters:
            shifter.shifts = check_shifts(cfg.test_time_shifts)
    module, _, name = model.datamodule_target.rpartition(".")
    data_class = getattr(importlib.import_module(module), name)
    settings = {**model.datamodule_settings, "data_dir": cfg.paths.data_dir}
    if cfg.num_digits is not None:
        if type(cfg.num_digits) is not int or cfg.num_digits < 1:
            raise UserError(f"num_digits must be a positive integer, got {cfg.num_digits!r}")
        if "num_digits" not in settings:
            raise UserError(
                f"num_digits is for MNIST-addition checkpoints; {cfg.ckpt_path} reads an image and a number"
            )
        settings["num_digits"] = cfg.num_digits
    datamodule = data_class(**settings)
    if cfg.split == "val" and datamodule.hparams.val_size == 0:
        raise UserError(f"split=val: {cfg.ckpt_path} was trained with no validation images (data.val_size=0)")
    trainer = hydra.utils.instantiate(cfg.trainer, logger=app.make_loggers(cfg.logger))
    (trainer.test if cfg.split == "test" else trainer.validate)(model, datamodule=datamodule)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    checkpoint = [("checkpoint", str(cfg.ckpt_path))]  # the table names what it scored
    app.report(metrics, trainer.log_dir, checkpoint, stage=cfg.split, global_rank=trainer.global_rank)
    return metrics


@hydra.main(config_path="../conf", config_name="eval", **hydra_version_base())
def run(cfg: DictConfig) -> None:
    with app.user_errors():
        evaluate(cfg)


def main() -> None:
    app.setup()
    run()


if __name__ == "__main__":
    main()
