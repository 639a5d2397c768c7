"""A model out of the project: exported to ONNX and torch.export (`mnist_adder.models.exporting`), answered
with onnxruntime alone (`mnist_adder.models.exported`), also where torch is not installed, and the model
card (`mnist_adder.models.card`)."""

import json
import os
import subprocess
import venv

import numpy as np
import pytest
import torch

from mnist_adder import DATA_DIR, PROJECT_ROOT, UserError, recipe
from mnist_adder.data.mnist import fetch_mnist, load_mnist, normalise
from mnist_adder.models.checkpoints import load_net
from mnist_adder.models.exported import ExportedModel
from mnist_adder.models.exporting import export, load_torch_export
from mnist_adder.models.nets import AveragedNets, adder_net
from tests.conftest import REFERENCE_CHECKPOINT, SHIPPED_MODEL

# Every shipped variant and sum head: (model recipe, changes to it).
VARIANTS = {
    "dual": ("model/dual", {}),
    "adder": ("model/adder", {}),
    "reference_dual": ("model/reference_dual", {}),
    "reference_adder": ("model/reference_adder", {}),  # 20 sum logits
    "exact, test-time shifts": ("model/dual", {**recipe("model/sum_head/exact"), "test_time_shifts": 1}),
    "shift": ("model/dual", recipe("model/sum_head/shift")),
    "tiny": ("model/dual", recipe("model/backbone/tiny")),
    "fast": ("model/dual", recipe("model/backbone/fast")),
}


def inputs(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, 28, 28, generator=generator)
    return image, torch.randint(0, 10, (batch,), generator=generator)


def net_of(variant: str):
    option, changes = VARIANTS[variant]
    torch.manual_seed(0)
    net = adder_net(**{**recipe(option), **changes}).eval()
    net.temperature = 1.7
    return net


def expected(net, image, number) -> list[np.ndarray]:
    with torch.no_grad():
        digit_logits, sum_logits = net(image, number)
        probs = net.answer_log_probs(digit_logits, sum_logits, number).exp()
    return [tensor.numpy() for tensor in (digit_logits, sum_logits, probs)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_exports_to_onnx_and_answers_any_batch_size_as_torch_does(variant, tmp_path):
    net = net_of(variant)
    model = ExportedModel(export(net, "onnx", tmp_path / "model.onnx"))
    assert model.metadata["temperature"] == 1.7 and model.normalisation == {"mean": 0.1307, "std": 0.3081}
    for batch in (1, 7):  # exported with 2
        image, number = inputs(batch)
        answers = model.run(image.numpy(), number.numpy())
        for name, want in zip(answers, expected(net, image, number), strict=True):
            np.testing.assert_allclose(answers[name], want, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("variant", ["dual", "reference_adder", "exact, test-time shifts"])
def test_torch_export_answers_any_batch_size_and_keeps_its_metadata(variant, tmp_path):
    net = net_of(variant)
    module, metadata = load_torch_export(export(net, "torch_export", tmp_path / "model.pt2"))
    assert metadata["not_sure_below"] > 0.5 and metadata["inputs"]["number"].startswith("(B,) int64")
    for batch in (1, 5):
        image, number = inputs(batch, seed=1)
        with torch.no_grad():
            answers = [tensor.numpy() for tensor in module(image, number)]
        for got, want in zip(answers, expected(net, image, number), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_an_export_never_overwrites_and_bad_input_is_one_line(tmp_path):
    net = net_of("dual")
    (tmp_path / "model.onnx").write_text("mine")
    with pytest.raises(UserError, match="exists"):
        export(net, "onnx", tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").read_text() == "mine"
    with pytest.raises(UserError, match="format must be onnx or torch_export, got 'tflite'"):
        export(net, "tflite", tmp_path / "model.tflite")
    with pytest.raises(UserError, match="is not a model that python -m mnist_adder.export wrote"):
        ExportedModel(tmp_path / "model.onnx")
    model = ExportedModel(export(net, "onnx", tmp_path / "other.onnx"))
    with pytest.raises(UserError, match=r"numbers must be integers in 0..9, got \[3, 12\]"):
        model.run(np.zeros((2, 1, 28, 28), np.float32), np.array([3, 12]))


def test_the_export_command_writes_a_model_that_the_printed_command_answers_with(tmp_path):
    command = ["python", "-m", "mnist_adder.export", f"ckpt_path={REFERENCE_CHECKPOINT}", "card=false",
               f"hydra.run.dir={tmp_path}"]  # fmt: skip
    printed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[0] == f"wrote {tmp_path / 'model.onnx'}"
    (answer,) = [line.split(": ", 1)[1] for line in printed.stdout.splitlines() if "answer with" in line]
    result = subprocess.run(answer.split(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notebooks/seven.png + 3: digit 7, sum 10 (")


def test_nets_averaged_export_as_one_model_that_answers_as_they_do_each_image_read_twice(tmp_path):
    averaged = AveragedNets([net_of("dual"), net_of("fast")], views=("as given", "thinned"))
    image, number = inputs(5)
    got = ExportedModel(export(averaged, "onnx", tmp_path / "model.onnx")).run(image.numpy(), number.numpy())
    for name, a, b in zip(got, list(got.values()), expected(averaged, image, number), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


def test_the_shipped_averaged_model_exports_and_the_printed_command_answers_with_it(tmp_path):
    command = ["python", "-m", "mnist_adder.export", f"ckpt_path={SHIPPED_MODEL}", "card=false",
               f"hydra.run.dir={tmp_path}"]  # fmt: skip
    printed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    (answer,) = [line.split(": ", 1)[1] for line in printed.stdout.splitlines() if "answer with" in line]
    result = subprocess.run(answer.split(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notebooks/seven.png + 3: digit 7, sum 10 (")


@pytest.fixture(scope="module")
def test_set():
    fetch_mnist(DATA_DIR)
    images, digits = load_mnist(DATA_DIR, train=False)
    numbers = torch.randint(0, 10, (len(digits),), generator=torch.Generator().manual_seed(0))
    return normalise(images), numbers


@pytest.mark.mnist
@pytest.mark.parametrize("format", ["onnx", "torch_export"])
def test_the_shipped_model_exported_agrees_with_its_checkpoint_on_the_test_set(format, test_set, tmp_path):
    images, numbers = test_set
    net = load_net(REFERENCE_CHECKPOINT)
    want = expected(net, images, numbers)
    path = export(net, format, tmp_path / f"model.{format}")
    if format == "onnx":
        got = list(ExportedModel(path).run(images.numpy(), numbers.numpy()).values())
    else:
        with torch.no_grad():
            got = [tensor.numpy() for tensor in load_torch_export(path)[0](images, numbers)]
    for name, a, b in zip(("digit logits", "sum logits", "answer probs"), got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=name)
        assert (a.argmax(axis=1) == b.argmax(axis=1)).all(), name


# Run in a virtual environment with the package, onnxruntime, numpy and Pillow, and no torch.
NO_TORCH_CHECK = """
import sys, json, numpy as np
from mnist_adder.models.exported import ExportedModel
try:
    import torch
    sys.exit("torch is installed")
except ImportError:
    pass
images = np.load("images.npy")
model = ExportedModel("model.onnx")
probs = model.run((images / 255 - 0.1307) / 0.3081, np.load("numbers.npy"))["answer_probs"]
json.dump({"answers": probs.argmax(axis=1).tolist(), "modules": sorted(sys.modules)}, open("out.json", "w"))
"""


@pytest.mark.mnist
def test_an_exported_model_answers_with_onnxruntime_alone_where_torch_is_not_installed(test_set, tmp_path):
    # As docs/use-a-model.md says: the package without its dependencies, then onnxruntime, numpy and Pillow.
    venv.create(tmp_path / "env", with_pip=True)
    python = str(tmp_path / "env" / "bin" / "python")
    lock = str(PROJECT_ROOT / "requirements-lock.txt")
    for command in (["--no-deps", str(PROJECT_ROOT)], ["-c", lock, "onnxruntime", "numpy", "pillow"]):
        subprocess.run([python, "-m", "pip", "install", "--quiet", *command], check=True, timeout=600)
    images, numbers = test_set
    net = load_net(REFERENCE_CHECKPOINT)
    export(net, "onnx", tmp_path / "model.onnx")
    np.save(tmp_path / "images.npy", load_mnist(DATA_DIR, train=False)[0].numpy()[:, None].astype(np.float32))
    np.save(tmp_path / "numbers.npy", numbers.numpy())
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([python, "-c", NO_TORCH_CHECK], cwd=tmp_path, check=True, timeout=300, env=environment)
    out = json.loads((tmp_path / "out.json").read_text())
    assert not any(name.split(".")[0] in ("torch", "lightning", "hydra") for name in out["modules"])
    want = expected(net, images, numbers)[2].argmax(axis=1)
    assert np.array_equal(np.array(out["answers"]), want)  # all 10,000 test digits
    printed = subprocess.run(
        [str(tmp_path / "env" / "bin" / "mnist-adder-predict"), "--model", "model.onnx",
         str(PROJECT_ROOT / "notebooks" / "seven.png"), "3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=environment,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert "+ 3: digit 7, sum 10 (" in printed.stdout


@pytest.mark.mnist
def test_the_model_card_in_docs_has_the_figures_the_shipped_model_gets_now():
    from mnist_adder.models.card import model_card

    shipped = (PROJECT_ROOT / "docs" / "model-card.md").read_text()
    command = next(line for line in shipped.splitlines() if line.startswith("Written by `"))
    command = command.removeprefix("Written by `").split("`")[0]
    assert command.split()[-4:] == ["--checkpoint", "lightning_logs/reference/averaged.ckpt", "--out",
                                    "docs/model-card.md"]  # fmt: skip
    fresh = model_card(SHIPPED_MODEL, command, "")

    def figures(card: str) -> list[str]:
        return [line for line in card.splitlines() if not line.startswith("Written by")]

    assert figures(fresh) == figures(shipped)
