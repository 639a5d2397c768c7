from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_adder.train import train
from tests.conftest import compose_train


def test_a_run_leaves_scalars_pictures_and_hparams_in_tensorboard(tmp_path, fake_mnist):
    train(compose_train(tmp_path, "trainer=cpu", "trainer.max_epochs=2", "data.val_size=100"))
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    for scalar in ("train/loss", "val/sum_acc", "val/sum_acc_best", "test/digit_acc", "test/sum_acc",
                   "time/fit_seconds", "hparams/test/sum_acc"):  # fmt: skip
        assert scalar in tags["scalars"], scalar
    for stage in ("val", "test"):
        for picture in ("confusion_digit", "confusion_sum", "worst_mistakes"):
            assert f"{stage}/{picture}" in tags["images"]
    assert len(events.Images("val/confusion_digit")) == 2  # one per epoch, none from the sanity check
    plugins = events.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    assert b"model/optimizer/lr" in plugins["_hparams_/session_start_info"]
