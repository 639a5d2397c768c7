"""The library as a way in without Hydra, and the checkpoints written before the commands moved to the
package top (when the classes were `mnist_adder.module.*`, `mnist_adder.nets.*` and
`mnist_adder.addition_module.*`).

tests/checkpoints/ holds the reference run of that time (`model=dual`, trimmed as results/README.md says)
and two short runs of that code (commit f87f90a), `model=sum_only model/backbone=tiny
model/sum_head=exact` and `model=mnist_addition data=mnist_addition model/backbone=tiny`, each
`debug=limit trainer.max_epochs=1 trainer.limit_train_batches=3`; their callbacks' and loops' state,
which holds the absolute folder they were written to and which loading never reads, was removed.
"""

import re
import subprocess
import sys

import lightning as L
import pytest
import torch
from hydra import compose, initialize
from omegaconf import OmegaConf

from mnist_adder import PROJECT_ROOT, UserError, hydra_version_base
from mnist_adder.data.addition import MNISTAdditionDataModule
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.eval import evaluate
from mnist_adder.models.addition import MNISTAdditionModule
from mnist_adder.models.checkpoints import load_module, load_net
from mnist_adder.models.module import DigitPlusNumberModule
from mnist_adder.models.nets import AdderNet, ExactSumHead, TinyCNN
from tests.conftest import DUAL_BEFORE, compose_eval, compose_train

BEFORE_THE_MOVE = PROJECT_ROOT / "tests" / "checkpoints"
ADDER_BEFORE = str(BEFORE_THE_MOVE / "adder-before-the-move.ckpt")
ADDITION_BEFORE = str(BEFORE_THE_MOVE / "mnist-addition-before-the-move.ckpt")


def arguments(node) -> dict:
    """A composed `model` or `data` node as the constructor's arguments: resolved, without Hydra's keys."""
    return {key: value for key, value in OmegaConf.to_container(node, resolve=True).items() if key[0] != "_"}


@pytest.mark.parametrize(
    ("overrides", "model_class", "data_class"),
    [
        ([], DigitPlusNumberModule, DigitPlusNumberDataModule),
        (["model=mnist_addition", "data=mnist_addition"], MNISTAdditionModule, MNISTAdditionDataModule),
    ],
    ids=["dual", "mnist_addition"],
)
def test_the_classes_left_alone_are_the_composed_recipes(tmp_path, overrides, model_class, data_class):
    cfg = compose_train(tmp_path, "trainer=cpu", *overrides)  # on a CPU, as the defaults are
    assert dict(model_class().hparams) == arguments(cfg.model)
    assert dict(data_class().hparams) == arguments(cfg.data)  # data_dir: the project's data/ too


def test_a_change_to_the_yaml_is_a_change_to_the_python(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    for path in (PROJECT_ROOT / "conf" / "model").rglob("*.yaml"):
        (conf / path.relative_to(PROJECT_ROOT / "conf")).parent.mkdir(parents=True, exist_ok=True)
        (conf / path.relative_to(PROJECT_ROOT / "conf")).write_text(path.read_text())
    dual = conf / "model" / "dual.yaml"
    dual.write_text(dual.read_text().replace("test_time_shifts: 0", "test_time_shifts: 2"))
    monkeypatch.setattr("mnist_adder.PROJECT_ROOT", tmp_path)
    assert DigitPlusNumberModule().hparams.test_time_shifts == 2


def test_the_recipe_is_read_inside_a_hydra_app_and_leaves_it_as_it_was():
    with initialize(config_path="../conf", **hydra_version_base()):
        model = DigitPlusNumberModule(digit_loss_weight=0.0)  # model=adder
        assert compose("train", overrides=["model=adder"]).model.digit_loss_weight == 0.0
    assert model.hparams.digit_loss_weight == 0.0 and model.hparams.optimizer["lr"] == 3e-3


def test_a_plain_script_prints_no_warning():
    script = (
        "from mnist_adder.models.module import DigitPlusNumberModule\n"
        "from mnist_adder.data.datamodule import DigitPlusNumberDataModule\n"
        "model = DigitPlusNumberModule(); DigitPlusNumberDataModule()\n"
        "model.trainer = type('T', (), {'estimated_stepping_batches': 10})()\n"  # what fit would give
        "model.configure_optimizers()\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_built_net_trains_and_its_checkpoint_loads_with_the_same_net(tmp_path, fake_mnist):
    model = DigitPlusNumberModule(backbone=TinyCNN(), sum_head=ExactSumHead())
    assert "backbone" not in model.hparams and isinstance(model.net.backbone.net, TinyCNN)
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, DigitPlusNumberDataModule(val_size=100, batch_size=32))
    path = tmp_path / "built.ckpt"
    trainer.save_checkpoint(path)
    again = DigitPlusNumberModule.load_from_checkpoint(path, backbone=TinyCNN(), sum_head=ExactSumHead())
    for (name, kept), loaded in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(kept, loaded), name
    expected = r"built backbone and sum_head .*load_from_checkpoint\(path, backbone=<the same net>, sum_head="
    for load in (load_net, load_module):
        with pytest.raises(UserError, match=expected):
            load(path)


@pytest.mark.parametrize("path", [DUAL_BEFORE, ADDER_BEFORE], ids=["dual", "adder"])
def test_a_checkpoint_from_before_the_move_loads_for_people_and_for_lightning(path):
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert saved["module_class"] == "mnist_adder.module.DigitPlusNumberModule"
    assert saved["hyper_parameters"]["backbone"]["_target_"].startswith("mnist_adder.nets.")
    images, numbers = torch.zeros(4, 1, 28, 28), torch.arange(4)
    net = load_net(path)
    plain = DigitPlusNumberModule.load_from_checkpoint(path).eval()
    module = load_module(path).eval()
    assert isinstance(net, AdderNet) and isinstance(module, DigitPlusNumberModule)
    with torch.no_grad():
        expected = net(images, numbers)
        for other in (plain, module):
            for mine, theirs in zip(expected, other(images, numbers), strict=True):
                assert torch.equal(mine, theirs)


def test_a_mnist_addition_checkpoint_from_before_the_move_loads():
    saved = torch.load(ADDITION_BEFORE, map_location="cpu", weights_only=True)
    assert saved["module_class"] == "mnist_adder.addition_module.MNISTAdditionModule"
    assert isinstance(load_module(ADDITION_BEFORE), MNISTAdditionModule)
    assert isinstance(MNISTAdditionModule.load_from_checkpoint(ADDITION_BEFORE), MNISTAdditionModule)
    with pytest.raises(UserError, match="reads two images"):
        load_net(ADDITION_BEFORE)


@pytest.mark.parametrize("path", [ADDER_BEFORE, ADDITION_BEFORE], ids=["adder", "mnist_addition"])
def test_eval_tests_a_checkpoint_from_before_the_move(tmp_path, fake_mnist, path):
    metrics = evaluate(compose_eval(tmp_path, f"ckpt_path={path}"))
    assert metrics["test/samples"] > 0 and 0 <= metrics["test/sum_acc"] <= 1


def test_predict_and_the_demo_answer_with_a_checkpoint_from_before_the_move():
    predicted = subprocess.run(
        [sys.executable, "-m", "mnist_adder.predict", "--checkpoint", ADDER_BEFORE, "notebooks/seven.png",
         "3"], capture_output=True, text=True, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert predicted.returncode == 0 and "digit" in predicted.stdout, predicted.stderr
    from mnist_adder.demo import answer  # gradio is imported only to build the page

    page = torch.zeros(280, 280, 4, dtype=torch.uint8)
    page[40:240, 120:160, 3] = 255  # a stroke of opaque ink, as the sketchpad gives
    digits, sums, text = answer(load_net(ADDER_BEFORE), {"composite": page.numpy()}, 3)
    assert len(digits) == 10 and len(sums) == 19 and text.startswith(("digit ", "not sure: "))
    readings = re.findall(r"(\d) \+ 3 = (\d+)", text)  # a model trained 3 batches is rarely sure
    assert readings and all(int(total) == int(digit) + 3 for digit, total in readings)
