"""The held-out-pairs split (data.holdout_pairs), its seen/unseen metrics and the study script."""

import pytest
import torch

from mnist_adder import UserError, holdout
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.pairing import holdout_mask, pair_numbers
from mnist_adder.models.module import DigitPlusNumberModule
from mnist_adder.train import train
from tests.conftest import compose_train

NET = {
    "backbone": {"_target_": "mnist_adder.models.nets.CompactCNN", "width": 8},
    "sum_head": {"_target_": "mnist_adder.models.nets.ExactSumHead"},
}


def test_presets_and_lists_of_pairs():
    assert not holdout_mask("none").any() and not holdout_mask(None).any()
    assert torch.equal(holdout_mask("diagonal"), torch.eye(10, dtype=torch.bool))
    random20 = holdout_mask("random20")
    assert random20.sum() == 20 and torch.equal(random20, holdout_mask("random20"))
    assert holdout_mask([[3, 4], [9, 0]]).nonzero().tolist() == [[3, 4], [9, 0]]


@pytest.mark.parametrize(
    "pairs",
    ["diag", [[10, 1]], [[1, -1]], [[1]], [[1, 2, 3]], [[1.5, 2]], [["1", "2"]], [[7, n] for n in range(10)]],
)
def test_a_bad_holdout_spec_is_a_user_error(pairs):
    with pytest.raises(UserError, match="data.holdout_pairs"):
        DigitPlusNumberDataModule(holdout_pairs=pairs)


@pytest.mark.parametrize("preset", ["diagonal", "random20"])
def test_training_pairs_avoid_held_out_pairs_and_stay_uniform_over_the_rest(preset):
    held_out = holdout_mask(preset)
    digits = torch.arange(10).repeat(100_000)
    for epoch in (0, 1):
        numbers = pair_numbers(seed=1, epoch=epoch, digits=digits, held_out=held_out)
        counts = torch.zeros(10, 10).index_put_((digits, numbers), torch.ones(len(digits)), accumulate=True)
        assert not counts[held_out].any()
        expected = 100_000 / (~held_out).sum(dim=1, keepdim=True)  # per digit, over its allowed numbers
        deviation = (counts / expected - 1)[~held_out]
        assert deviation.abs().max() < 0.05  # 5 standard deviations of a count of 10,000


def test_only_training_holds_pairs_out(fake_mnist):
    datamodule = DigitPlusNumberDataModule(val_size=100, holdout_pairs="diagonal")
    datamodule.setup()
    _, numbers, digits, _ = datamodule.train_set.__getitems__(range(len(datamodule.train_set)))
    assert not (numbers == digits).any()
    _, numbers, digits, _ = datamodule.test_set.__getitems__(range(len(datamodule.test_set)))
    assert (numbers == digits).any()  # evaluation pairs every digit with all ten numbers


def test_seen_and_unseen_accuracies_count_the_right_samples(monkeypatch):
    module = DigitPlusNumberModule(**NET, holdout_pairs="diagonal")
    digit = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    number = torch.tensor([0, 1, 2, 3, 9, 9, 9, 9])  # the first four pairs are held out (number == digit)
    predicted = torch.tensor([0, 1, 9, 9, 4, 5, 6, 9])  # right: 2 of 4 unseen, 3 of 4 seen
    digit_logits = torch.nn.functional.one_hot(predicted, 10).float()
    sum_logits = torch.nn.functional.one_hot(predicted + number, 19).float()
    monkeypatch.setattr(module, "forward", lambda image, number: (digit_logits, sum_logits))
    module.model_step((torch.zeros(8, 1, 28, 28), number, digit, digit + number), "val")
    accuracies = {name: float(metric.compute()) for name, metric in module.val_metrics.items()}
    for head in ("digit", "sum"):
        assert accuracies[f"{head}_acc"] == 5 / 8
        assert accuracies[f"{head}_acc_seen"] == 3 / 4 and accuracies[f"{head}_acc_unseen"] == 2 / 4
    assert not any("seen" in name for name in module.train_metrics)  # training sees no held-out pair
    assert not any("seen" in name for name in DigitPlusNumberModule(**NET).test_metrics)  # nothing held out


def test_holdout_run_reports_seen_and_unseen_and_the_study_writes_table_and_figure(tmp_path, fake_mnist):
    run_dir = tmp_path / "runs" / "seed1"
    cfg = compose_train(
        run_dir,
        "experiment=holdout",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.batch_size=64",
        "data.val_size=100",
    )
    metrics = train(cfg)
    for name in ("test/sum_acc_seen", "test/sum_acc_unseen", "test/digit_acc_unseen", "val/sum_acc_seen"):
        assert 0 <= metrics[name] <= 1
    holdout.main([str(tmp_path / "runs"), "--out", str(tmp_path / "study")])
    table = (tmp_path / "study" / "holdout.md").read_text().splitlines()
    assert table[2].startswith("| diagonal | LearnedSumHead (logits) | 1 | ")
    assert (tmp_path / "study" / "holdout.png").stat().st_size > 10_000
