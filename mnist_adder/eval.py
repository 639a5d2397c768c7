"""Test a checkpoint on the official 10k test set, with the same metrics as training.

    python -m mnist_adder.eval ckpt_path=lightning_logs/model=adder/.../checkpoints/last.ckpt
    python -m mnist_adder.eval ckpt_path=... split=val test_time_shifts=1   # validation, with TTA

The checkpoint describes its own model, so no model override is needed; `test_time_shifts` replaces its
test-time augmentation (see `MNISTAdderModule`). `split=val` scores the validation images instead, which
is where a choice between settings belongs. Results go to a new folder under lightning_logs/eval/.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnist_adder import UserError
from mnist_adder.module import check_data, check_test_time_shifts, load_checkpoint
from mnist_adder.train import report, user_errors


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint `cfg.ckpt_path` (on `cfg.split`) and return its metrics."""
    if cfg.split not in ("test", "val"):
        raise UserError(f"split must be test or val, got {cfg.split}")
    model = load_checkpoint(cfg.ckpt_path)
    check_data(model, cfg.data._target_)
    if cfg.test_time_shifts is not None:
        if "test_time_shifts" not in model.hparams:
            raise UserError(f"test_time_shifts: {type(model).__name__} has no test-time augmentation")
        model.hparams.test_time_shifts = check_test_time_shifts(cfg.test_time_shifts)
    # The pairs the model was trained without: testing is the same, and Lightning wants the two to agree.
    held_out = {"holdout_pairs": model.hparams.holdout_pairs} if "holdout_pairs" in model.hparams else {}
    datamodule = hydra.utils.instantiate(cfg.data, **held_out)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=hydra.utils.instantiate(cfg.logger))
    (trainer.test if cfg.split == "test" else trainer.validate)(model, datamodule=datamodule)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    report(metrics, log_dir=trainer.log_dir, stage=cfg.split)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors():
        evaluate(cfg)


if __name__ == "__main__":
    main()
