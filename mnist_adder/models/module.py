"""The LightningModules' shared part, and the image + number task's module: two cross-entropy losses,
per-head accuracy, optimiser and schedule from config.

A checkpoint describes itself: every argument is a plain value (the backbone, sum head, optimiser and
scheduler are Hydra `_target_` dicts), unless a built net was passed (see `DigitPlusNumberModule`). To use
a trained model with no Lightning at all, see `mnist_adder.models.checkpoints.load_net`; to get this
module back, in a plain Python shell:

    from mnist_adder.models.module import DigitPlusNumberModule
    model = DigitPlusNumberModule.load_from_checkpoint("lightning_logs/.../checkpoints/last.ckpt")
    digit, total = model.net.predict(images, numbers)
"""

from __future__ import annotations

from typing import Any

import hydra.utils
import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric, SumMetric

from mnist_adder import FROM_RECIPE, UserError, with_recipe
from mnist_adder.data.mnist import IMAGE_SHAPE
from mnist_adder.data.pairing import NumberBatch, holdout_mask
from mnist_adder.models.distillation import Teachers, distillation_loss
from mnist_adder.models.nets import adder_net, calibration_error, fit_temperature


def check_data(model: TaskModule, data_target: str) -> None:
    """Fail in one line if `model` cannot read the batches of the data module `data_target` makes."""
    if data_target != model.datamodule_target:
        raise UserError(
            f"{type(model).__name__} reads the data of data={model.data_config}, not {data_target}: add "
            f"data={model.data_config}"
        )


def stage_metrics(losses: list[str], accuracies: list[str], evaluation: bool) -> nn.ModuleDict:
    """One stage's epoch means of the named losses and accuracies; an evaluation also counts its samples.

    Accuracy is the mean of exact hits, not a per-class metric: a sum-only net can read an impossible
    digit (sum - number outside 0..9), which must count as a miss, not be clamped into range.
    """
    metrics = {name: MeanMetric() for name in losses + accuracies}
    return nn.ModuleDict(metrics | ({"samples": SumMetric()} if evaluation else {}))


class TaskModule(L.LightningModule):
    """What every task's LightningModule shares: the optimiser and schedule from config, one `model_step`
    for train, validation and test, metrics logged once per epoch, the best validation sum accuracy (kept
    across a resume), the stop on a NaN loss, `torch.compile`, and a checkpoint that names its class.

    A task's module sets `self.net` and `{train,val,test}_metrics` (see `stage_metrics`), and defines
    `model_step(batch, stage)`, which updates the stage's metrics and returns at least the loss.
    Its hparams hold `optimizer`, `scheduler` and `compile` (see `DigitPlusNumberModule`).
    """

    # The data it reads: the datamodule's class (eval builds it from a checkpoint) and its config in
    # conf/data/ (train checks that they agree).
    datamodule_target = "mnist_adder.data.datamodule.DigitPlusNumberDataModule"
    data_config = "digit_plus_number"

    def __init__(self) -> None:
        super().__init__()
        self.val_sum_acc_best = MaxMetric()
        self.resumed_val_sum_acc_best: float | None = None  # from the checkpoint a run resumes
        self.datamodule_settings: dict[str, Any] = {}  # from the checkpoint it was loaded from
        self.first_bad_loss: Tensor | None = None  # see check_finite
        self.device_step: Tensor | None = None
        self.compiled = False

    def model_step(self, batch: tuple[Tensor, ...], stage: str) -> dict[str, Tensor]:
        raise NotImplementedError

    def log_metrics(self, stage: str) -> None:
        """Log the stage's metric objects, at an epoch's end: Lightning computes, syncs and resets them."""
        shown = ("loss",) if stage == "train" else ("digit_acc", "sum_acc")
        for name, metric in getattr(self, f"{stage}_metrics").items():
            self.log(f"{stage}/{name}", metric, prog_bar=name in shown)

    def setup(self, stage: str) -> None:
        if self.hparams.get("compile") and not self.compiled:
            self.net.compile()  # in place: the state dict keeps its keys
            self.compiled = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_sum_acc_best"] = float(self.val_sum_acc_best.max_value)  # the same on every rank
        checkpoint["module_class"] = f"{type(self).__module__}.{type(self).__qualname__}"  # load_checkpoint

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.resumed_val_sum_acc_best = checkpoint.get("val_sum_acc_best")
        # The data module's settings it was trained with: eval rebuilds its data from them.
        self.datamodule_settings = checkpoint.get("datamodule_hyper_parameters", {})

    def on_train_start(self) -> None:
        self.val_sum_acc_best.reset()  # forget the sanity check's values, but not a resumed run's best
        if self.resumed_val_sum_acc_best is not None:
            self.val_sum_acc_best.update(torch.tensor(self.resumed_val_sum_acc_best))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        step = self.model_step(batch, "train")
        self.check_finite(step["loss"], batch_idx)
        return step

    def check_finite(self, loss: Tensor, batch_idx: int) -> None:
        """Stop training, in one line, once the loss has been NaN or infinite.

        The first bad loss and its step are kept on the device, and read (one host-device sync) only every
        `log_every_n_steps` steps and at an epoch's last batch: before validation and any checkpoint, so
        the checkpoints saved before it stay intact.
        """
        if self.first_bad_loss is None:  # once per fit: this step's number, copied to the device once
            self.first_bad_loss = torch.full((2,), -1.0, device=loss.device)  # step, loss; -1: none yet
            self.device_step = torch.tensor(float(self.global_step), device=loss.device)
        loss = loss.detach().float()
        bad = ~torch.isfinite(loss) & (self.first_bad_loss[0] < 0)
        found = torch.stack([self.device_step, loss])
        self.first_bad_loss = torch.where(bad, found, self.first_bad_loss)
        self.device_step = self.device_step + 1  # counted on the device: no copy from the host per step
        every = self.trainer.log_every_n_steps
        if (batch_idx + 1) % every and batch_idx + 1 < self.trainer.num_training_batches:
            return
        step, value = self.first_bad_loss.tolist()
        if step >= 0:
            raise UserError(
                f"the training loss is {value} at epoch {self.current_epoch}, step {int(step)}: training "
                "stopped, the checkpoints saved before it are intact (a lower model.optimizer.lr may help)"
            )

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        return self.model_step(batch, "val")

    def on_train_epoch_end(self) -> None:
        self.log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_metrics("val")
        self.val_sum_acc_best(self.val_metrics["sum_acc"].compute())
        self.log("val/sum_acc_best", self.val_sum_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        return self.model_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metrics("test")

    def configure_optimizers(self) -> Any:
        # Only torch's optimisers and schedules, whether or not a command has set Hydra 1.4's allow-list
        # (Hydra 1.3 has none).
        allow_list = hasattr(hydra.utils, "execution_whitelist")
        trusted = {"_execution_whitelist_": "torch.optim.*"} if allow_list else {}
        optimizer = instantiate(
            self.hparams.optimizer or {"_target_": "torch.optim.AdamW", "_partial_": True}, **trusted
        )
        optimizer = optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler, **trusted)(
            optimizer, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DigitPlusNumberModule(TaskModule):
    """Trains an `AdderNet` on (image, number) -> (digit, sum).

    An argument left out takes its value from `model=dual` (conf/model/dual.yaml and its parts), so
    `DigitPlusNumberModule()` is the dual net that `python -m mnist_adder.train model=dual` trains.

    Args:
        backbone: the digit backbone: a built `nn.Module` that maps (B, 1, 28, 28) images to (B, 10)
            logits, or a Hydra spec such as `{"_target_": "mnist_adder.models.nets.CompactCNN"}`.
        sum_head: the sum head, likewise: a built net or a spec such as
            `{"_target_": "mnist_adder.models.nets.ExactSumHead"}`.
        digit_loss_weight, sum_loss_weight: loss = weighted sum of the two cross-entropies.
            `digit_loss_weight=0` trains on sums alone (`model=adder`): digit labels are never read in
            training, and the predicted digit is read from the predicted sum (sum - number).
        optimizer: a Hydra spec with `_partial_: true`, completed with the parameters.
        scheduler: a Hydra spec with `_partial_: true`, completed with the optimiser and
            `total_steps`, and stepped every batch (OneCycleLR); or None for a constant rate.
        holdout_pairs: the (digit, number) pairs held out of training (`data.holdout_pairs`, see
            `mnist_adder.data.pairing.holdout_mask`). If any, validation and test also log each accuracy
            over seen and over unseen pairs apart: `test/sum_acc_seen`, `test/sum_acc_unseen`, ...
        compile: compile the net with `torch.compile` when fitting or testing starts (the weights' names
            in a checkpoint stay the same).
        test_time_shifts: test-time augmentation (`mnist_adder.models.nets.ShiftAverage`). 0: none. k > 0:
            out of training (validation, test, eval, predict) the backbone also reads each image moved k
            pixels left, right, up and down, averaged. Meant for the exact sum head.
        distillation: None, or `{"teachers": [checkpoints], "weight": w, "temperature": T}`: in
            training the digit head also learns the teachers' mean digit probabilities at temperature T,
            the loss gaining w times `mnist_adder.models.distillation.distillation_loss`. A teacher is a
            checkpoint's path or a pattern (`*`, `?`) standing for every checkpoint it matches: an
            ensemble. They are read when fitting starts, and the checkpoint names their files but holds
            none of their weights: it loads without them.

    A checkpoint stores the specs, so it loads by itself. A built net is not stored as a hyper-parameter,
    only its weights: load such a checkpoint with the same net again, as Lightning's backbone example does,
    `DigitPlusNumberModule.load_from_checkpoint(path, backbone=MyNet())`.
    """

    def __init__(
        self,
        backbone: dict[str, Any] | nn.Module = FROM_RECIPE,
        sum_head: dict[str, Any] | nn.Module = FROM_RECIPE,
        digit_loss_weight: float = FROM_RECIPE,
        sum_loss_weight: float = FROM_RECIPE,
        optimizer: dict[str, Any] | None = FROM_RECIPE,
        scheduler: dict[str, Any] | None = FROM_RECIPE,
        holdout_pairs: str | list[list[int]] | None = "none",
        compile: bool = FROM_RECIPE,
        test_time_shifts: int = FROM_RECIPE,
        distillation: dict[str, Any] | None = FROM_RECIPE,
    ) -> None:
        super().__init__()
        settings = with_recipe("model/dual", locals())
        built = {name: net for name, net in settings.items() if isinstance(net, nn.Module)}
        self.save_hyperparameters({name: value for name, value in settings.items() if name not in built})
        self.net = adder_net(**settings)
        self.register_buffer("held_out", holdout_mask(holdout_pairs), persistent=False)
        losses = ["loss", "sum_loss"] + (["digit_loss"] if self.supervises_digit else [])
        self.teachers: Teachers | None = None  # read from hparams.distillation when fitting starts
        train_losses = losses + (["distill_loss"] if distillation else [])
        accuracies = ["digit_acc", "sum_acc"]
        # With held-out pairs, evaluation also scores seen and unseen pairs apart.
        parts = ["", "_seen", "_unseen"] if self.held_out.any() else [""]
        # Evaluation also scores the answer people see (`AdderNet.answers`), and how often the heads disagree.
        evaluated = [f"{name}{part}" for name in accuracies for part in parts]
        evaluated += ["answer_acc", "contradictions"]
        self.train_metrics = stage_metrics(train_losses, accuracies, evaluation=False)
        self.val_metrics = stage_metrics(losses, evaluated, evaluation=True)
        self.test_metrics = stage_metrics(losses, evaluated, evaluation=True)
        # What the model summary runs once, to show every layer's shapes and multiply-adds.
        self.example_input_array = (torch.zeros(1, *IMAGE_SHAPE), torch.zeros(1, dtype=torch.long))
        # Validation's and test's answers: log-probabilities at temperature 1, true digits (`calibrate`).
        self.answers_seen: list[tuple[Tensor, Tensor]] = []

    @property
    def supervises_digit(self) -> bool:
        return self.hparams.digit_loss_weight > 0

    def forward(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1, 28, 28) float32 images and (B,) int64 numbers -> (B, 10) digit and (B, 19) sum logits."""
        return self.net(image, number)

    def model_step(self, batch: NumberBatch, stage: str) -> dict[str, Tensor]:
        """Loss of one batch, metrics updated; returns the loss and, out of training, the answers
        (`AdderNet.answers`) and the sum loss per sample.

        The metrics are logged once per epoch (`log_metrics`): a `self.log` call costs about 0.7 ms in
        Lightning 2.6, which at five per step made training 7 % slower than a bare loop.
        """
        image, number, digit, total = batch
        digit_logits, sum_logits = self(image, number)
        sum_losses = F.cross_entropy(sum_logits, total, reduction="none")
        losses = {"sum_loss": sum_losses.mean()}
        loss = self.hparams.sum_loss_weight * losses["sum_loss"]
        if self.supervises_digit:
            losses["digit_loss"] = F.cross_entropy(digit_logits, digit)
            loss = loss + self.hparams.digit_loss_weight * losses["digit_loss"]
        if stage == "train" and self.teachers is not None:
            target = self.teachers.probabilities(image)
            losses["distill_loss"] = distillation_loss(digit_logits, target, self.teachers.temperature)
            loss = loss + self.hparams.distillation["weight"] * losses["distill_loss"]
        losses["loss"] = loss

        metrics = getattr(self, f"{stage}_metrics")
        for name, value in losses.items():
            metrics[name].update(value.detach(), weight=len(image))
        if "samples" in metrics:
            metrics["samples"].update(len(image))
        logits = (digit_logits.detach(), sum_logits.detach(), number)
        head_digit, head_total = self.net.head_answers(*logits)
        unseen = self.held_out[digit, number].float()
        for head, hit in (("digit", head_digit == digit), ("sum", head_total == total)):
            metrics[f"{head}_acc"].update(hit.float())
            if f"{head}_acc_seen" in metrics:
                metrics[f"{head}_acc_seen"].update(hit.float(), weight=1 - unseen)
                metrics[f"{head}_acc_unseen"].update(hit.float(), weight=unseen)
        if stage == "train":
            return {"loss": loss}
        digit_pred, total_pred = self.net.answers(*logits)
        self.answers_seen.append((self.net.answer_log_probs(*logits, temperature=1.0), digit))
        metrics["answer_acc"].update((digit_pred == digit).float())
        metrics["contradictions"].update(self.net.heads_disagree(*logits).float())
        predictions = {"digit_pred": digit_pred, "sum_pred": total_pred, "sum_loss": sum_losses.detach()}
        return {"loss": loss, **predictions}

    def read_teachers(self) -> None:
        """Read the teachers of `hparams.distillation`, if any and not read yet: training calls it before
        it writes anything, so that a wrong path stops it in one line."""
        if self.hparams.distillation and self.teachers is None:
            settings = self.hparams.distillation
            if missing := sorted({"teachers", "weight", "temperature"} - set(settings)):
                raise UserError(f"model.distillation needs teachers, weight and temperature; no {missing}")
            self.teachers = Teachers(settings["teachers"], settings["temperature"])
            settings["teachers"] = self.teachers.paths  # the files, not a pattern: the checkpoint says which

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            self.read_teachers()

    def on_fit_start(self) -> None:
        if self.teachers is not None:
            self.teachers.to(self.device)

    def calibrate(self, stage: str, fit: bool) -> None:
        """Log the expected calibration error (`calibration_error`) of the answers' probabilities seen in
        this stage, at temperature 1 (`{stage}/ece`) and at the net's (`{stage}/ece_calibrated`). `fit`:
        first fit the net's temperature on them (validation, but not Lightning's sanity check of a few
        batches; the checkpoint saved next keeps it)."""
        if not self.answers_seen:
            return
        log_probs, digit = (torch.cat(part) for part in zip(*self.answers_seen, strict=True))
        self.answers_seen = []
        if self.trainer.world_size > 1:  # every process fits on all of them, and so agrees
            log_probs, digit = (self.all_gather(part).flatten(0, 1) for part in (log_probs, digit))
        if fit and not self.trainer.sanity_checking:
            self.net.temperature = fit_temperature(log_probs, digit)
        for name, temperature in (("ece", 1.0), ("ece_calibrated", self.net.temperature)):
            self.log(f"{stage}/{name}", calibration_error((log_probs / temperature).softmax(dim=1), digit))
        self.log(f"{stage}/temperature", self.net.temperature)

    def on_validation_epoch_start(self) -> None:
        self.answers_seen = []

    def on_validation_epoch_end(self) -> None:
        self.calibrate("val", fit=True)
        super().on_validation_epoch_end()

    def on_test_epoch_start(self) -> None:
        self.answers_seen = []

    def on_test_epoch_end(self) -> None:
        self.calibrate("test", fit=False)
        super().on_test_epoch_end()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["temperature"] = self.net.temperature

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.net.temperature = float(checkpoint.get("temperature", 1.0))
