"""Lightning callbacks of this project, and the plugin that writes checkpoints whole."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from mnist_adder import written_whole
from mnist_adder.data.carry import digit_posteriors
from mnist_adder.data.mnist import DIGIT_CLASSES, SUM_CLASSES
from mnist_adder.runs.plugins import PRUNED_AT

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic (`written_whole`): each checkpoint is written to a hidden
    temporary file in its folder, then renamed over the old one. A run killed while saving leaves the
    previous checkpoint whole, never one cut short. (`trainer.plugins` in conf/trainer/default.yaml.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        with written_whole(Path(path)) as partial:
            super().save_checkpoint(checkpoint, partial, storage_options)


class FitTimer(L.Callback):
    """Measures `fit` from its start to its end, sanity check and validation included (not data loading),
    and logs it as `time/fit_seconds` to every logger. After `fit`, `seconds` holds it and `started` the
    `time.perf_counter()` at its start."""

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.started = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.started
        for logger in trainer.loggers:
            logger.log_metrics({"time/fit_seconds": self.seconds}, step=trainer.global_step)


class LiveProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, with the running mean of this epoch's training loss, live.

    The module logs its metrics once per epoch (a `self.log` per step cost 7 % of the training speed), so
    the bar would show the last epoch's loss. This reads the loss metric's running state instead, at each
    refresh only (`refresh_rate` steps): one device read per refresh, no sync between processes.
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the run folder names the run
        metrics = getattr(pl_module, "train_metrics", {})
        loss = metrics["loss"] if "loss" in metrics else None  # noqa: SIM401  a ModuleDict has no get()
        if trainer.training and loss is not None and loss.weight > 0:
            items["train/loss"] = f"{float(loss.mean_value / loss.weight):.3f}"
        return items


class ErrorPictures(L.Callback):
    """TensorBoard pictures at the end of validation and test: the confusion matrices of the answers' digits
    and sums (`{stage}/confusion_digit`, `{stage}/confusion_sum`) and the `worst` most confident wrong sums
    (`{stage}/worst_mistakes`), each image titled with its number, truth and answer.

    Reads the answers that `DigitPlusNumberModule`'s validation and test steps return: the consistent ones
    a person is shown (`mnist_adder.models.nets.AdderNet.answers`), each sum its digit + number.
    """

    def __init__(self, worst: int = 16) -> None:
        self.worst = worst

    def _start(self, pl_module: L.LightningModule) -> None:
        self.confusion = {
            "digit": MulticlassConfusionMatrix(DIGIT_CLASSES).to(pl_module.device),
            "sum": MulticlassConfusionMatrix(SUM_CLASSES).to(pl_module.device),
        }
        self.mistakes: list[tuple[float, Tensor, int, int, int, int]] = []

    def _update(self, outputs: dict[str, Tensor], batch: tuple[Tensor, ...]) -> None:
        image, number, digit, total = batch
        self.confusion["digit"].update(outputs["digit_pred"], digit)
        self.confusion["sum"].update(outputs["sum_pred"], total)
        wrong = (outputs["sum_pred"] != total).nonzero().flatten()
        losses = outputs["sum_loss"][wrong]
        for i in wrong[losses.argsort(descending=True)[: self.worst]].tolist():
            self.mistakes.append((
                float(outputs["sum_loss"][i]), image[i, 0].cpu(), int(number[i]), int(digit[i]),
                int(outputs["digit_pred"][i]), int(outputs["sum_pred"][i]),
            ))  # fmt: skip
        self.mistakes = sorted(self.mistakes, key=lambda mistake: -mistake[0])[: self.worst]

    def _log(self, trainer: L.Trainer, stage: str) -> None:
        if trainer.sanity_checking:
            return
        matrices = {name: matrix.compute() for name, matrix in self.confusion.items()}  # syncs processes
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not writers or trainer.global_rank != 0:
            return
        figures = {}
        for name, matrix in self.confusion.items():
            figures[f"{stage}/confusion_{name}"] = matrix.plot(matrices[name])[0]
        figures[f"{stage}/worst_mistakes"] = mistakes_figure(self.mistakes)
        for writer in writers:
            for tag, figure in figures.items():
                writer.add_figure(tag, figure, global_step=trainer.global_step, close=False)
        for figure in figures.values():
            plt.close(figure)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._update(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._update(outputs, batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, "test")


def mistakes_figure(mistakes: list[tuple[float, Tensor, int, int, int, int]]) -> plt.Figure:
    """A grid of (loss, image, number, digit, predicted digit, predicted sum) mistakes, worst first."""
    columns = 4
    rows = max(1, -(-len(mistakes) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (_, image, number, digit, digit_pred, sum_pred) in zip(axes.flat, mistakes, strict=False):
        ax.imshow(image.numpy(), cmap="gray")
        title = f"{digit} + {number} = {digit + number}\npredicted {digit_pred}, sum {sum_pred}"
        ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


class OptunaPruning(L.Callback):
    """Reports `monitor` to trial `trial` of an Optuna study after each validation, and stops the run before
    its last epoch when `pruner` (the study's, which its storage does not keep) says the trial has fallen
    behind; the sweeper (`mnist_adder.runs.plugins`) then records the trial as pruned. `train` adds it to each
    job of `hparams_search=optuna`."""

    def __init__(self, storage: str, study_name: str, trial: int, pruner: Any, monitor: str) -> None:
        self.storage, self.study_name, self.number, self.pruner = storage, study_name, trial, pruner
        self.monitor, self.trial = monitor, None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import optuna

        if trainer.is_global_zero:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=self.pruner)
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
            self.trial = optuna.Trial(study, trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if self.trial is not None:
            self.trial.report(float(trainer.callback_metrics[self.monitor]), step=trainer.current_epoch)
            epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else float("inf")
            last = trainer.current_epoch + 1 >= epochs  # nothing left to save: the trial runs whole
            prune = not last and self.trial.should_prune()
            if prune:
                self.trial.set_user_attr(PRUNED_AT, trainer.current_epoch)
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True


class CarrySignal(L.Callback):
    """Where an MNIST-addition net learns from: how much each sum moves the net towards the right digits,
    by the image's position in its number, logged every `every_n_steps` training steps as
    `carry_signal/positions_<band>`.

    The measure is P(true digit | the sum) - P(true digit): the probability that the net gives an image's
    hidden digit, after and before conditioning on the sum (`mnist_adder.data.carry.digit_posteriors`). The
    posterior is what training pulls the net towards (d loss / d logits = prior - posterior), so this is
    how much of that pull points at the truth: 0 where the sum tells nothing, negative where it misleads.
    The hidden labels are read only to score it, after the step; the loss never sees them. `bands` cut
    the positions, counted from the most significant: `[1, 2, 5, 20]` gives 1, 2, 3-5, 6-20 and 21-N.
    """

    def __init__(self, every_n_steps: int = 10, bands: list[int] | None = None) -> None:
        self.every_n_steps = every_n_steps
        self.bands = bands or [1, 2, 5, 20]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        step = trainer.global_step - 1  # the step just taken; its posteriors are from before the update
        if step % self.every_n_steps or not trainer.loggers:
            return
        _, digits, total = batch
        log_probs = outputs["log_probs"].float()  # (B, 2N, 10)
        posterior = torch.cat(digit_posteriors(*log_probs.chunk(2, dim=1), total), dim=1)
        gain = (posterior - log_probs.exp()).gather(2, digits[..., None])[..., 0]  # (B, 2N)
        by_position = gain.view(len(gain), 2, -1).mean(dim=(0, 1))  # (N,): a's and b's digits together
        num_digits = len(by_position)
        edges = [0, *(edge for edge in self.bands if edge < num_digits), num_digits]
        metrics = {
            f"carry_signal/positions_{start + 1}" + (f"-{stop}" if stop > start + 1 else ""):
                float(by_position[start:stop].mean())
            for start, stop in itertools.pairwise(edges)
        }  # fmt: skip
        for logger in trainer.loggers:  # every n steps, whatever the trainer's log_every_n_steps
            logger.log_metrics(metrics, step=step)


class RestartIfStuck(L.Callback):
    """Starts the net again from new random weights when, `after_epochs` epochs after its start, its
    training loss is still above `max_loss_per_digit` per digit of the numbers: at most `max_restarts`
    times, in the same run, on the same data and schedule (the learning rate goes on where it was).

    For long MNIST-addition numbers: from random weights only a sum's leading digits say anything
    (`CarrySignal`), and that with the carry into them unknown, so a run can settle on reading each digit
    one too high or one too low (1 seed of 3 at N = 100: a loss near 0.9 per digit, where runs that learn
    are near 0.1 by their third epoch). It reads only the training loss.
    """

    def __init__(self, after_epochs: int = 3, max_loss_per_digit: float = 0.5, max_restarts: int = 2) -> None:
        self.after_epochs, self.max_loss_per_digit = after_epochs, max_loss_per_digit
        self.max_restarts, self.started_at, self.restarts = max_restarts, 0, 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = trainer.current_epoch - self.started_at == self.after_epochs
        if not due or self.restarts >= self.max_restarts or "train/loss" not in trainer.callback_metrics:
            return
        num_digits = trainer.datamodule.hparams.num_digits
        loss_per_digit = float(trainer.callback_metrics["train/loss"]) / num_digits  # the last epoch's mean
        if loss_per_digit <= self.max_loss_per_digit:
            return
        for module in pl_module.net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in pl_module.net.state_dict().values():  # every process starts from rank 0's weights
                torch.distributed.broadcast(tensor, src=0)
        for optimizer in trainer.optimizers:
            optimizer.state.clear()
        self.restarts += 1
        self.started_at = trainer.current_epoch
        log.warning(
            "epoch %d: training loss %.2f per digit after %d epochs, above %.2f: the net starts again from "
            "new random weights (restart %d of at most %d)", trainer.current_epoch, loss_per_digit,
            self.after_epochs, self.max_loss_per_digit, self.restarts, self.max_restarts,
        )  # fmt: skip
        pl_module.log("restarts", float(self.restarts))

    def state_dict(self) -> dict[str, int]:
        return {"started_at": self.started_at, "restarts": self.restarts}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.started_at, self.restarts = state_dict["started_at"], state_dict["restarts"]
