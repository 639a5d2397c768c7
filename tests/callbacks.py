"""Callbacks that break a training run on purpose, for the reliability tests."""

import os
import signal

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig


class Interrupt(L.Callback):
    """Sends this process `signal_name` (SIGTERM, SIGKILL, SIGUSR1) at training batch `batch` of epoch
    `epoch`, unless the run resumed from a checkpoint; with `job` (e.g. "seed=2"), only in the job of a sweep
    whose overrides hold it."""

    def __init__(self, epoch: int, batch: int, signal_name: str, job: str | None = None) -> None:
        self.epoch, self.batch, self.signal, self.job = epoch, batch, getattr(signal, signal_name), job

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = trainer.current_epoch == self.epoch and batch_idx == self.batch and trainer.ckpt_path is None
        if now and (self.job is None or self.job in HydraConfig.get().overrides.task):
            os.kill(os.getpid(), self.signal)


class PoisonWeights(L.Callback):
    """Turns the first weight into NaN at training batch `batch` of epoch `epoch`, as a diverging run."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
