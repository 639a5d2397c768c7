import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.data.mnist import MNIST_MEAN, MNIST_STD
from mnist_adder.data.photos import read_image, to_mnist
from mnist_adder.models.checkpoints import default_model, newest_checkpoint
from tests.conftest import DUAL_BEFORE, REFERENCE_CHECKPOINT, SHIPPED_MODEL


def ink(image: np.ndarray) -> torch.Tensor:
    """Normalised (1, 28, 28) -> pixel values in [0, 1]."""
    return torch.from_numpy(image[0]) * MNIST_STD + MNIST_MEAN


def stroke_page(size=(120, 80), dark_on_light=True) -> torch.Tensor:
    """An L-shaped stroke on a page, off-centre, uint8 (H, W)."""
    page = torch.zeros(size, dtype=torch.uint8)
    page[20:70, 10:18] = 255
    page[62:70, 10:40] = 255
    return 255 - page if dark_on_light else page


def test_a_digit_is_scaled_into_20x20_and_centred_by_mass_in_28x28():
    image = to_mnist(stroke_page(dark_on_light=False).float() / 255)
    pixels = ink(image)
    assert image.shape == (1, 28, 28)
    rows, cols = (pixels > 0.5).any(dim=1).nonzero(), (pixels > 0.5).any(dim=0).nonzero()
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == 20
    center_y = (pixels.sum(dim=1) * torch.arange(28)).sum() / pixels.sum()
    center_x = (pixels.sum(dim=0) * torch.arange(28)).sum() / pixels.sum()
    assert abs(center_y - 13.5) < 1 and abs(center_x - 13.5) < 1


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_dark_ink_on_light_paper_reads_like_light_ink_on_dark(tmp_path, mode):
    dark = Image.fromarray(stroke_page(dark_on_light=True).numpy()).convert(mode)
    dark.save(tmp_path / "dark.png")
    light = to_mnist(stroke_page(dark_on_light=False).float() / 255)
    np.testing.assert_allclose(to_mnist(read_image(str(tmp_path / "dark.png"))), light, atol=0.05)


def test_the_console_script_reports_bad_input_without_a_traceback(tmp_path):
    Image.fromarray(stroke_page().numpy()).save(tmp_path / "digit.png")
    result = subprocess.run(
        [sys.executable, "-m", "mnist_adder.predict", "digit.png", "seven"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == "error: number 'seven' is not an integer in 0..9\n"


def test_with_no_checkpoint_under_the_logs_it_says_how_to_train_one(tmp_path):
    with pytest.raises(UserError, match="train one with `python -m mnist_adder.train`"):
        newest_checkpoint(tmp_path)
    older, newer = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    for folder in (older, newer):
        folder.mkdir(parents=True)
        (folder / "epoch03.ckpt").write_text("")
        (folder / "last.ckpt").write_text("")
    os.utime(older / "epoch03.ckpt", (0, 0))
    assert newest_checkpoint(tmp_path) == newer / "epoch03.ckpt"


def test_the_default_checkpoint_passes_over_newer_mnist_addition_ones(tmp_path):
    older, newer = tmp_path / "dual" / "checkpoints", tmp_path / "addition" / "checkpoints"
    for folder, module in ((older, None), (newer, "mnist_adder.models.addition.MNISTAdditionModule")):
        folder.mkdir(parents=True)
        torch.save(
            {"state_dict": {}, **({"module_class": module} if module else {})}, folder / "epoch03.ckpt"
        )
    os.utime(older / "epoch03.ckpt", (0, 0))
    assert newest_checkpoint(tmp_path) == older / "epoch03.ckpt"  # predict reads an image and a number
    (older / "epoch03.ckpt").unlink()
    with pytest.raises(UserError, match="only of MNIST addition .* train one with"):
        newest_checkpoint(tmp_path)


def test_a_fresh_clone_answers_with_the_shipped_model():
    # mnist-adder-predict notebooks/seven.png 3, as the README says, before any training
    shipped = PROJECT_ROOT / "lightning_logs" / "reference"
    assert str(newest_checkpoint(shipped)) == REFERENCE_CHECKPOINT
    result = subprocess.run(
        ["mnist-adder-predict", "--checkpoint", SHIPPED_MODEL, "notebooks/seven.png", "3"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notebooks/seven.png + 3: digit 7, sum 10 (")


def test_the_default_model_is_the_newest_trained_and_before_any_the_shipped_one(tmp_path):
    shipped, reference_run = tmp_path / "reference" / "averaged.ckpt", tmp_path / "reference" / "run"
    (reference_run / "checkpoints").mkdir(parents=True)
    shutil.copy(REFERENCE_CHECKPOINT, reference_run / "checkpoints" / "epoch14.ckpt")
    shutil.copy(SHIPPED_MODEL, shipped)
    assert default_model(tmp_path) == shipped
    trained = tmp_path / "model-dual" / "checkpoints" / "epoch03.ckpt"
    trained.parent.mkdir(parents=True)
    shutil.copy(DUAL_BEFORE, trained)
    os.utime(trained, (0, 0))  # older than the shipped files: trained still comes first
    assert default_model(tmp_path) == trained
    trained.unlink()
    shipped.unlink()  # without the shipped model, the newest checkpoint, the reference run's included
    assert default_model(tmp_path) == reference_run / "checkpoints" / "epoch14.ckpt"


def test_several_checkpoints_answer_as_their_nets_averaged():
    from mnist_adder.models.checkpoints import load_net
    from mnist_adder.models.nets import AveragedNets
    from mnist_adder.predict import predict_files

    pair = ["notebooks/seven.png", "3"]
    (first,) = predict_files(pair, REFERENCE_CHECKPOINT)
    (alone,) = predict_files(pair, [REFERENCE_CHECKPOINT, REFERENCE_CHECKPOINT])
    assert alone["probability"] == pytest.approx(first["probability"], abs=1e-6)
    (both,) = predict_files(pair, [REFERENCE_CHECKPOINT, DUAL_BEFORE])
    image = torch.from_numpy(to_mnist(read_image(pair[0]))[None])
    averaged = AveragedNets([load_net(REFERENCE_CHECKPOINT), load_net(DUAL_BEFORE)])
    probs = averaged.probabilities(image, torch.tensor([3]))[0][0]
    assert both["digit"] == 7 and both["sum"] == 10
    assert both["probability"] == pytest.approx(float(probs[7]), abs=1e-6)
    result = subprocess.run(
        ["mnist-adder-predict", "--checkpoint", REFERENCE_CHECKPOINT, "--checkpoint", DUAL_BEFORE, *pair],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notebooks/seven.png + 3: digit 7, sum 10 (")


def test_the_shipped_run_opens_in_tensorboard_with_its_curves_and_hparams():
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = EventMultiplexer()
    events.AddRunsFromDirectory(str(PROJECT_ROOT / "lightning_logs"))
    events.Reload()
    tags = {tag for run in events.Runs().values() for tag in run.get("scalars", [])}
    assert {"val/digit_acc", "val/sum_acc", "test/sum_acc", "train/loss"} <= tags
    assert any(run.get("images") for run in events.Runs().values())  # the final confusion matrices
    assert events.PluginRunToTagToContent("hparams")  # the HPARAMS tab
