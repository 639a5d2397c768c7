"""The MNIST-addition module: sum-only training of a digit reader, composed from the real config."""

import math
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_adder.data.carry import add, digits_of
from mnist_adder.eval import evaluate
from mnist_adder.models.addition import MNISTAdditionModule, imbalance, repaired_sum_acc
from mnist_adder.models.checkpoints import load_module
from mnist_adder.runs.callbacks import CarrySignal
from mnist_adder.train import next_steps, train
from tests.conftest import compose_eval, compose_train

BACKBONE = {"_target_": "mnist_adder.models.nets.CompactCNN", "width": 8}


def test_training_never_reads_digit_labels():
    module = MNISTAdditionModule(BACKBONE)
    images, total = torch.randn(4, 4, 1, 28, 28), digits_of(torch.tensor([3, 150, 99, 0]), 3)
    losses = [
        module.model_step((images, digits, total), "train")["loss"]
        for digits in (torch.zeros(4, 4, dtype=torch.long), torch.ones(4, 4, dtype=torch.long))
    ]
    assert losses[0] == losses[1]


def test_imbalance_measures_how_far_the_readings_together_are_from_every_digit_alike():
    assert imbalance(torch.full((2, 6, 10), 0.1).log()) == pytest.approx(0, abs=1e-6)
    assert imbalance(torch.eye(10)[[3, 3, 3]].log()) == pytest.approx(math.log(10))  # all read as 3
    # The one-off basin at N = 100: a 0 read as 1, a 9 as 8, every digit between as either neighbour.
    # Together those readings say 1 and 8 too often and 0 and 9 too rarely.
    one_off = torch.stack([(torch.eye(10).roll(-1, 1)[d] + torch.eye(10).roll(1, 1)[d]) for d in range(10)])
    one_off[0], one_off[9] = 2 * torch.eye(10)[1], 2 * torch.eye(10)[8]
    assert imbalance((one_off / 2).log()) == pytest.approx(2 * (0.05 * math.log(0.5) + 0.15 * math.log(1.5)))


def test_the_balance_penalty_is_added_in_training_only_and_the_logged_loss_is_the_sums():
    images, total = torch.randn(4, 4, 1, 28, 28), digits_of(torch.tensor([3, 150, 99, 0]), 3)
    digits = torch.zeros(4, 4, dtype=torch.long)
    plain, balanced = MNISTAdditionModule(BACKBONE), MNISTAdditionModule(BACKBONE, balance=0.5)
    balanced.load_state_dict(plain.state_dict())
    log_probs = plain(images).log_softmax(dim=-1)
    for stage, penalty in (("train", 0.5 * 4 * imbalance(log_probs)), ("test", 0)):
        expected = plain.model_step((images, digits, total), stage)["loss"] + penalty
        assert balanced.model_step((images, digits, total), stage)["loss"].item() == pytest.approx(
            expected.item()
        )
    assert balanced.train_metrics["loss"].compute() == plain.train_metrics["loss"].compute()


def test_predicted_sum_is_the_sum_of_the_most_likely_digits():
    module = MNISTAdditionModule(BACKBONE)
    images = torch.randn(2, 4, 1, 28, 28)
    digits = module(images).argmax(dim=-1)
    expected = digits[:, 0] * 10 + digits[:, 1] + digits[:, 2] * 10 + digits[:, 3]
    step = module.model_step((images, digits, digits_of(expected, 3)), "test")
    assert torch.equal(step["sum_pred"], add(digits[:, :2], digits[:, 2:]))
    assert torch.equal(step["sum_pred"], digits_of(expected, 3))
    assert module.test_metrics["sum_acc"].compute() == 1 and module.test_metrics["digit_acc"].compute() == 1


def test_every_repairing_finds_the_one_misread_digit_in_exactly_one_sum():
    digits = torch.arange(40) % 10
    assert torch.equal(repaired_sum_acc(digits, digits, num_digits=2), torch.ones(100))
    misread = digits.clone()
    misread[7] = 3  # a 7 read as 3: whichever sum it lands in is 4 (or 40) short
    for num_digits, sums in ((1, 20), (2, 10), (5, 4)):
        accuracies = repaired_sum_acc(misread, digits, num_digits, repairings=30)
        assert torch.allclose(accuracies, torch.full((30,), 1 - 1 / sums))
    # Two misread digits land in the same sum in some pairings and in two sums in others.
    misread[8] = 0
    accuracies = repaired_sum_acc(misread, digits, num_digits=1)
    assert {round(accuracy, 4) for accuracy in accuracies.tolist()} == {0.95, 0.9}


def test_the_experiment_learns_digits_from_sums_of_synthetic_numbers(tmp_path, fake_mnist):
    cfg = compose_train(
        tmp_path, "experiment=mnist_addition", "data.num_digits=2", "data.batch_size=32", "trainer=cpu",
        "trainer.max_epochs=4", "model.backbone.width=4", "model.optimizer.lr=0.01", "data.augment=null",
        "callbacks.ema=null",  # an average over 1,000 steps would still be the random weights after 76
        "callbacks.restart_if_stuck=null",  # 3 epochs of 19 steps are not enough to have learnt
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["test/digit_acc"] >= 0.6  # chance: 0.1; no digit label was read
    assert "val/sum_acc" not in metrics  # the protocol's: no validation, the last epoch is tested
    events = EventAccumulator(str(tmp_path)).Reload()
    assert {"carry_signal/positions_1", "carry_signal/positions_2"} <= set(events.Tags()["scalars"])
    checkpoint = next((tmp_path / "checkpoints").glob("epoch*.ckpt"))
    assert isinstance(load_module(str(checkpoint)), MNISTAdditionModule)
    metrics = evaluate(compose_eval(tmp_path / "eval", f"ckpt_path={checkpoint}"))  # its data, from the file
    assert metrics["test/samples"] == 200 // 4 and metrics["test/digit_acc"] >= 0.6
    # Its test images paired afresh 100 times: their mean is within the sums that any pairing can score.
    assert 0 <= metrics["test/repaired_sum_acc"] <= 1 and metrics["test/repaired_sum_acc_std"] >= 0
    assert metrics["test/digit_acc_to_2n"] == pytest.approx(metrics["test/digit_acc"] ** 4)  # N = 2 here
    # The same net on sums of 1-digit numbers: the same images, twice the sums.
    longer = evaluate(compose_eval(tmp_path / "eval1", f"ckpt_path={checkpoint}", "num_digits=1"))
    assert longer["test/samples"] == 200 // 2 and longer["test/digit_acc"] == metrics["test/digit_acc"]
    assert longer["test/digit_acc_to_2n"] == pytest.approx(metrics["test/digit_acc"] ** 2)


def test_a_run_that_has_not_learnt_starts_again_from_new_weights(tmp_path, fake_mnist):
    cfg = compose_train(
        tmp_path, "experiment=mnist_addition", "data.num_digits=2", "data.batch_size=32", "trainer=cpu",
        "trainer.max_epochs=3", "model.backbone.width=4", "callbacks.ema=null", "test=false",
        "callbacks.restart_if_stuck.after_epochs=1", "callbacks.restart_if_stuck.max_loss_per_digit=0",
        "callbacks.restart_if_stuck.max_restarts=1",
    )  # fmt: skip
    metrics = train(cfg)
    assert metrics["restarts"] == 1  # after epoch 1 (no loss is 0), and no more: at most 1
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["callbacks"]["RestartIfStuck"] == {"started_at": 1, "restarts": 1}  # kept for a resume


def test_a_checkpoint_saved_before_test_time_shifts_still_loads():
    module = MNISTAdditionModule(BACKBONE, test_time_shifts=1)
    before = {key.replace("net.net.", "net.", 1): value for key, value in module.state_dict().items()}
    assert "net.layers.0.weight" in before  # the bare backbone's keys, as older checkpoints hold them
    again = MNISTAdditionModule(BACKBONE, test_time_shifts=1)
    again.load_state_dict(before)
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in module.state_dict().items())


def test_the_final_table_evaluates_the_checkpoint_alone_and_offers_no_image_and_number_predict(tmp_path):
    cfg = compose_train(tmp_path, "experiment=mnist_addition")
    commands = dict(next_steps(cfg, str(tmp_path / "epoch00.ckpt"), MNISTAdditionModule(BACKBONE)))
    assert commands["evaluate"].endswith("epoch00.ckpt") and "predict" not in commands


def test_carry_signal_finds_the_truth_only_at_the_leading_position_when_the_net_knows_nothing():
    class Recorder:
        def log_metrics(self, metrics, step):
            logged.update(metrics, step=step)

    logged = {}
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randint(10, (2, 300, 30), generator=generator)
    trainer = SimpleNamespace(global_step=11, loggers=[Recorder()])
    uniform = {"log_probs": torch.full((300, 60, 10), 0.1).log()}
    CarrySignal(every_n_steps=10, bands=[1, 2, 5]).on_train_batch_end(
        trainer, None, uniform, (None, torch.cat([a, b], dim=1), add(a, b)), 0
    )
    assert logged["step"] == 10 and set(logged) == {
        "step", "carry_signal/positions_1", "carry_signal/positions_2", "carry_signal/positions_3-5",
        "carry_signal/positions_6-30",
    }  # fmt: skip
    assert logged["carry_signal/positions_1"] > 0.05  # measured: 0.093, from 0.1 to 0.19 on the true digit
    assert abs(logged["carry_signal/positions_2"]) < 0.005  # measured: 0.0008
    assert abs(logged["carry_signal/positions_6-30"]) < 1e-4
