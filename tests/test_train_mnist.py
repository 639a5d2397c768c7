"""The tests on real MNIST (marked `mnist`): fetched once into data/, then cached."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from mnist_adder import PROJECT_ROOT
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD
from mnist_adder.models.checkpoints import load_module
from mnist_adder.predict import predict_files
from mnist_adder.train import train
from tests.conftest import compose_train

pytestmark = pytest.mark.mnist


@pytest.fixture(scope="module")
def dual_run(tmp_path_factory):
    """A 2-epoch dual run on real MNIST: its metrics and its folder."""
    run_dir = tmp_path_factory.mktemp("dual")
    return train(compose_train(run_dir, "model=dual", "trainer=cpu", "trainer.max_epochs=2")), run_dir


def test_a_short_dual_run_reaches_a_test_accuracy_floor(dual_run):
    metrics, run_dir = dual_run
    assert metrics["test/sum_acc"] >= 0.98
    assert metrics["test/digit_acc"] >= 0.98
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_a_short_adder_run_reaches_a_test_accuracy_floor(tmp_path):
    metrics = train(compose_train(tmp_path, "model=adder", "trainer=cpu", "trainer.max_epochs=2"))
    assert metrics["test/sum_acc"] >= 0.97
    assert metrics["test/digit_acc"] >= 0.97


def test_mnist_addition_learns_digits_from_sums_of_two_images(tmp_path):
    cfg = compose_train(  # without the EMA: an average over 1,000 steps is mostly the random start after 234
        tmp_path, "experiment=mnist_addition", "trainer=cpu", "trainer.max_epochs=1", "callbacks.ema=null"
    )
    metrics = train(cfg)  # one epoch: 30,000 sums, no digit label read
    assert metrics["test/digit_acc"] >= 0.97
    assert metrics["test/sum_acc"] >= 0.94


def save(pixels: torch.Tensor, path, mode: str = "L") -> str:
    """(H, W) uint8 -> an image file."""
    Image.fromarray(pixels.numpy()).convert(mode).save(path)
    return str(path)


VARIANTS = {
    "as is": lambda digit: digit,
    "dark ink on white": lambda digit: 255 - digit,
    "200x200 RGB": lambda digit: digit,  # resized when saved
    "off-centre on a large page": lambda digit: torch.nn.functional.pad(digit, (5, 47, 30, 10)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_predict_reads_saved_test_digits_like_the_tensors_they_came_from(dual_run, tmp_path, variant):
    ckpt = next((dual_run[1] / "checkpoints").glob("epoch*.ckpt"))
    model = load_module(str(ckpt)).eval()
    dm = DigitPlusNumberDataModule(data_dir=str(PROJECT_ROOT / "data"))
    dm.setup("test")
    images, numbers, _, _ = dm.test_set.__getitems__(range(100))
    expected_digit, expected_sum = model.net.predict(images, numbers)

    pairs = []
    for i, (image, number) in enumerate(zip(images, numbers, strict=True)):
        pixels = (image[0] * MNIST_STD + MNIST_MEAN).mul(255).round().clamp(0, 255).to(torch.uint8)
        path = save(VARIANTS[variant](pixels), tmp_path / f"{i}.png")
        if variant == "200x200 RGB":
            Image.open(path).resize((200, 200), Image.BICUBIC).convert("RGB").save(path)
        pairs += [path, str(int(number))]
    results = predict_files(pairs, str(ckpt))

    digits = torch.tensor([r["digit"] for r in results])
    sums = torch.tensor([r["sum"] for r in results])
    assert (digits == expected_digit).float().mean() >= 0.95
    assert (sums == expected_sum).float().mean() >= 0.95


def test_an_optuna_search_runs_two_tiny_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the sweeps extra")
    result = subprocess.run(
        [
            sys.executable, "-m", "mnist_adder.train", "-m", "hparams_search=optuna",
            f"paths.log_dir={tmp_path}",
            "hydra.sweeper.n_trials=2", "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
            "+trainer.limit_val_batches=2", "test=false",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Best of 2 complete trials:" in result.stderr + result.stdout
    [results] = tmp_path.glob("multirun/*/optimization_results.yaml")
    assert "model.optimizer.lr" in results.read_text()
    assert len(list(tmp_path.glob("multirun/*/*/metrics.json"))) == 2
