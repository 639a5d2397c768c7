"""The one group of tests on real MNIST (marked `mnist`): fetched once into data/, then cached."""

import pytest

from mnist_adder.train import train
from tests.conftest import compose_train

pytestmark = pytest.mark.mnist


@pytest.mark.parametrize(
    ("model", "epochs", "floor"),
    [("dual", 2, 0.98), ("adder", 2, 0.97)],
)
def test_a_short_run_on_real_mnist_reaches_a_test_accuracy_floor(tmp_path, model, epochs, floor):
    cfg = compose_train(tmp_path, f"model={model}", "trainer=cpu", f"trainer.max_epochs={epochs}")
    metrics = train(cfg)
    assert metrics["test/sum_acc"] >= floor
    assert metrics["test/digit_acc"] >= floor
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
