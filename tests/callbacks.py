"""Callbacks that break a training run on purpose, for the reliability tests."""

import os
import signal

import lightning as L
import torch


class Interrupt(L.Callback):
    """Sends this process `signal_name` (SIGTERM, SIGKILL, SIGUSR1) at training batch `batch` of epoch
    `epoch`, unless the run resumed from a checkpoint; with `seed`, only in the run of that seed (one job of
    a sweep)."""

    def __init__(self, epoch: int, batch: int, signal_name: str, seed: int | None = None) -> None:
        self.epoch, self.batch, self.signal, self.seed = epoch, batch, getattr(signal, signal_name), seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        seeded = self.seed is None or os.environ.get("PL_GLOBAL_SEED") == str(self.seed)  # seed_everything
        now = trainer.current_epoch == self.epoch and batch_idx == self.batch
        if now and seeded and trainer.ckpt_path is None:
            os.kill(os.getpid(), self.signal)


class PoisonWeights(L.Callback):
    """Turns the first weight into NaN at training batch `batch` of epoch `epoch`, as a diverging run."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
