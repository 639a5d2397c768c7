"""Checkpoints: loaded for people without Lightning, written whole, and a damaged one named as such."""

import lightning as L
import pytest
import torch

from mnist_adder import UserError
from mnist_adder.models.checkpoints import load_module, load_net, read_checkpoint, write_averaged
from mnist_adder.models.module import DigitPlusNumberModule
from mnist_adder.models.nets import AveragedNets
from mnist_adder.runs.callbacks import AtomicCheckpointIO
from tests.test_module import NET, batch


def saved(tmp_path, name="epoch00.ckpt", **settings) -> DigitPlusNumberModule:
    module = DigitPlusNumberModule(**NET, **settings)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        plugins=[AtomicCheckpointIO()])  # fmt: skip
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch()], batch_size=None))
    trainer.save_checkpoint(tmp_path / name)
    return module.eval()


@pytest.mark.parametrize("settings", [{}, {"digit_loss_weight": 0.0, "test_time_shifts": 1}])
def test_the_net_for_people_answers_as_the_lightning_module_does(tmp_path, settings):
    module = saved(tmp_path, **settings)
    net = load_net(tmp_path / "epoch00.ckpt")
    assert not net.training and net.digit_from_sum == (settings.get("digit_loss_weight") == 0.0)
    images, numbers, _, _ = batch()
    for ours, theirs in zip(net.probabilities(images, numbers), module.net.probabilities(images, numbers),
                            strict=True):  # fmt: skip
        assert torch.equal(ours, theirs)
    loaded = load_module(tmp_path / "epoch00.ckpt").eval()
    assert torch.equal(loaded(images, numbers)[1], module(images, numbers)[1])


def test_a_checkpoint_cut_short_is_called_damaged_and_its_intact_neighbours_named(tmp_path):
    saved(tmp_path, "epoch00.ckpt")
    saved(tmp_path, "last.ckpt")
    last = tmp_path / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])  # as a kill mid-save would leave it
    with pytest.raises(UserError, match=rf"{last} is damaged \(.*\); intact beside it: .*epoch00.ckpt$"):
        read_checkpoint(last)
    with pytest.raises(UserError, match="is damaged"):
        load_net(last)


def test_a_save_that_fails_midway_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    saved(tmp_path, "last.ckpt")
    before = (tmp_path / "last.ckpt").read_bytes()

    def killed(checkpoint, path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(before[:100])  # the first bytes are out when the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", killed)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
    assert (tmp_path / "last.ckpt").read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left either


def test_nets_written_as_one_file_load_as_their_average_and_nothing_is_overwritten(tmp_path):
    saved(tmp_path, "a.ckpt")
    torch.manual_seed(1)
    saved(tmp_path, "b.ckpt", digit_loss_weight=0.5)
    paths = [tmp_path / "a.ckpt", tmp_path / "b.ckpt"]
    written = write_averaged(paths, tmp_path / "both.ckpt")
    loaded = load_net(tmp_path / "both.ckpt")
    assert not loaded.training and len(loaded.nets) == 2 and loaded.temperature == written.temperature
    images, numbers, _, _ = batch()
    expected = AveragedNets([load_net(path) for path in paths]).probabilities(images, numbers)
    for ours, theirs in zip(loaded.probabilities(images, numbers), expected, strict=True):
        assert torch.equal(ours, theirs)
    before = (tmp_path / "both.ckpt").read_bytes()
    with pytest.raises(UserError, match="exists"):
        write_averaged(paths, tmp_path / "both.ckpt")
    assert (tmp_path / "both.ckpt").read_bytes() == before
    with pytest.raises(UserError, match="is not one net's checkpoint"):
        write_averaged([tmp_path / "both.ckpt"], tmp_path / "again.ckpt")
    with pytest.raises(UserError, match="holds several nets averaged"):
        load_module(tmp_path / "both.ckpt")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.ckpt", "b.ckpt", "both.ckpt"]
