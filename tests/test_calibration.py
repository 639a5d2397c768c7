"""Honest confidence: the answers' temperature, fit on validation and kept in the checkpoint, and the
"not sure" of predict and the demo."""

import json

import torch

from mnist_adder import predict
from mnist_adder.demo import answer
from mnist_adder.models import nets
from mnist_adder.models.checkpoints import load_module, load_net, read_checkpoint
from mnist_adder.models.nets import NOT_SURE_BELOW, fit_temperature
from mnist_adder.train import train
from tests.conftest import REFERENCE_CHECKPOINT, compose_train


def test_the_temperature_fit_is_the_one_the_labels_were_drawn_with():
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(20_000, 10, generator=generator)
    for true_temperature in (0.5, 2.0):
        labels = torch.multinomial((logits / true_temperature).softmax(dim=1), 1, generator=generator)[:, 0]
        fitted = fit_temperature(logits.log_softmax(dim=1), labels)
        assert abs(fitted - true_temperature) < 0.05 * true_temperature


def test_training_fits_the_temperature_on_validation_and_the_checkpoint_keeps_it(tmp_path, fake_mnist):
    metrics = train(compose_train(tmp_path, "trainer=cpu", "trainer.max_epochs=2", "data.val_size=100"))
    assert {"val/ece", "val/ece_calibrated", "test/ece", "test/ece_calibrated"} <= set(metrics)
    errors = [metrics[f"{stage}/{name}"] for stage in ("val", "test") for name in ("ece", "ece_calibrated")]
    assert all(0 <= error <= 1 for error in errors)
    best = next((tmp_path / "checkpoints").glob("epoch*.ckpt"))
    temperature = read_checkpoint(best)["temperature"]
    assert temperature != 1.0 and metrics["test/temperature"] == temperature
    assert load_net(best).temperature == load_module(best).net.temperature == temperature


def test_a_checkpoint_written_before_calibration_loads_at_temperature_one():
    from tests.test_library import ADDER_BEFORE

    assert "temperature" not in read_checkpoint(ADDER_BEFORE)
    assert load_net(ADDER_BEFORE).temperature == 1.0


def test_an_unsure_answer_says_so_and_gives_the_two_likeliest_readings():
    net = load_net(REFERENCE_CHECKPOINT)
    image = torch.from_numpy(predict.to_mnist(predict.read_image("notebooks/seven.png")))[None]
    (sure,) = predict.predict(net, image, torch.tensor([3]))
    assert sure["sure"] and (sure["digit"], sure["sum"]) == (7, 10) and sure["probability"] >= NOT_SURE_BELOW
    net.temperature = 1e3  # as good as a guess: every reading about as likely
    (unsure,) = predict.predict(net, image, torch.tensor([3]))
    assert not unsure["sure"] and unsure["probability"] < NOT_SURE_BELOW
    assert [reading["sum"] - reading["digit"] for reading in unsure["readings"]] == [3, 3]
    assert unsure["readings"][0]["digit"] == 7  # the order of the readings stays

    drawing = {"composite": (255 - 255 * (image[0, 0] > 0).to(torch.uint8)).numpy()}
    assert answer(net, drawing, 3)[2].startswith("not sure: 7 + 3 = 10 (")


def test_predict_prints_not_sure_for_a_guess(monkeypatch, capsys):
    monkeypatch.setattr(nets, "NOT_SURE_BELOW", 1.01)  # nothing is that sure
    predict.main(["--checkpoint", REFERENCE_CHECKPOINT, "notebooks/seven.png", "3"])
    printed = capsys.readouterr().out
    assert printed.startswith("notebooks/seven.png + 3: not sure: digit 7, sum 10 (")
    assert ", or digit " in printed
    predict.main(["--checkpoint", REFERENCE_CHECKPOINT, "notebooks/seven.png", "3", "--json"])
    (result,) = json.loads(capsys.readouterr().out)
    assert result["sure"] is False and len(result["readings"]) == 2
