import subprocess
import sys
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from mnist_adder import PROJECT_ROOT
from mnist_adder.data.datamodule import MNISTDataModule
from mnist_adder.models.checkpoints import load_module
from mnist_adder.models.module import DigitPlusNumberModule, TaskModule
from mnist_adder.train import train
from tests.conftest import compose_train

MODELS = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "model").glob("*.yaml"))
TRAINERS = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "trainer").glob("*.yaml"))
EXPERIMENTS = sorted(path.stem for path in (PROJECT_ROOT / "conf" / "experiment").glob("*.yaml"))
NEEDS_GPU = {"gpu", "ddp", "mps"}  # composed and instantiated up to the Trainer here


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_trainer_composes_and_instantiates(tmp_path, model, trainer):
    data = ["data=mnist_addition"] if model == "mnist_addition" else []  # the data it reads, see check_data
    cfg = compose_train(tmp_path, f"model={model}", f"trainer={trainer}", *data)
    module = hydra.utils.instantiate(cfg.model)
    assert isinstance(module, TaskModule) and module.datamodule_target == cfg.data._target_
    assert isinstance(hydra.utils.instantiate(cfg.data), MNISTDataModule)
    callbacks = [hydra.utils.instantiate(callback) for callback in cfg.callbacks.values()]
    logger = hydra.utils.instantiate(cfg.logger)
    if trainer in NEEDS_GPU and not torch.cuda.is_available():
        pytest.skip(f"trainer={trainer} needs a GPU")  # (mps: an Apple-silicon one)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
    assert isinstance(trainer, L.Trainer)


def test_adder_config_trains_on_sums_alone(tmp_path):
    assert compose_train(tmp_path, "model=adder").model.digit_loss_weight == 0


def test_a_sum_head_swaps_in_from_the_command_line(tmp_path):
    cfg = compose_train(tmp_path, "model=adder", "model/sum_head=exact")
    assert cfg.model.sum_head == {"_target_": "mnist_adder.models.nets.ExactSumHead"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(tmp_path, experiment):
    cfg = compose_train(tmp_path, f"experiment={experiment}")
    module = hydra.utils.instantiate(cfg.model)
    assert isinstance(module, TaskModule) and module.datamodule_target == cfg.data._target_


def test_the_records_recipes_keep_their_budgets(tmp_path):
    best = hydra.utils.instantiate(compose_train(tmp_path, "experiment=best").model)
    assert sum(p.numel() for p in best.parameters()) <= 100_000  # the record's parameter budget
    assert best.hparams.test_time_shifts == 1  # what was chosen on validation is what is tested
    speedrun = compose_train(tmp_path, "experiment=speedrun")
    assert speedrun.trainer.max_epochs == 1 and speedrun.data.augment is None
    tiny_cfg = compose_train(tmp_path, "experiment=tiny")
    tiny = hydra.utils.instantiate(tiny_cfg.model)
    trainable = sum(p.numel() for p in tiny.parameters() if p.requires_grad)  # the sum head included
    assert trainable <= 8_000 and tiny_cfg.trainer.max_epochs <= 15  # the course's budget
    for experiment, budget in (("distilled", 100_000), ("distilled_tiny", 8_000)):  # the student's alone
        student = hydra.utils.instantiate(compose_train(tmp_path, f"experiment={experiment}").model)
        assert sum(p.numel() for p in student.parameters()) <= budget and student.hparams.distillation


def test_a_model_given_data_it_cannot_read_is_one_clear_error(tmp_path):
    result = run_cli("model=mnist_addition", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "MNISTAdditionModule reads the data of data=mnist_addition" in result.stderr
    assert not any(tmp_path.iterdir())  # the refused run left no folder


def test_train_runs_end_to_end_on_synthetic_data(tmp_path, fake_mnist):
    cfg = compose_train(
        tmp_path, "trainer=cpu", "trainer.max_epochs=2", "data.batch_size=64", "data.val_size=100"
    )
    metrics = train(cfg)
    for name in ("val/sum_acc_best", "test/digit_acc", "test/sum_acc", "train/loss", "fit_seconds"):
        assert name in metrics
    assert 0 <= metrics["test/sum_acc"] <= 1
    assert metrics["parameters"] == sum(p.numel() for p in hydra.utils.instantiate(cfg.model).parameters())
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert list(tmp_path.glob("events.out.tfevents.*"))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_adder.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_prints_no_warning_from_hydra_or_omegaconf(tmp_path):
    result = run_cli("debug=fdr", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "Warning" in line]
    assert not [line for line in warnings if "hydra" in line or "omegaconf" in line], warnings


def test_unknown_model_gets_hydras_error(tmp_path):
    result = run_cli("model=nope", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_mistyped_key_gets_hydras_error(tmp_path):
    result = run_cli("trainer.max_epoch=3", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode != 0
    assert "max_epoch" in result.stderr and "Traceback" not in result.stderr


def test_missing_checkpoint_is_one_line_before_training(tmp_path):
    result = run_cli("ckpt_path=/no/such.ckpt", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: ckpt_path /no/such.ckpt is not a file: give a .ckpt file, 'last' or null"
    )
    assert not list(tmp_path.rglob("*.ckpt"))


def test_unwritable_data_dir_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_cli(f"paths.data_dir={blocker}", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: data.data_dir {blocker} is not a writable folder")
    )
    assert "Traceback" not in result.stderr


def test_fast_dev_run_writes_no_checkpoints_or_events(tmp_path, fake_mnist):
    cfg = compose_train(tmp_path, "debug=fdr", "data.val_size=100")
    assert cfg.paths.log_dir != compose_train(tmp_path).paths.log_dir  # lightning_logs/ is left alone
    metrics = train(cfg)
    assert "test/sum_acc" in metrics
    assert not list(tmp_path.rglob("*.ckpt"))
    assert not list(tmp_path.rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("debug", ["overfit", "limit"])
def test_debug_configs_compose(tmp_path, debug):
    cfg = compose_train(tmp_path, f"debug={debug}")
    assert cfg.trainer.max_epochs >= 2


def test_a_weight_averaged_run_is_tested_with_the_weights_it_was_validated_with(tmp_path, fake_mnist):
    ema = "+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging"
    cfg = compose_train(tmp_path, "trainer=cpu", "trainer.max_epochs=3", "data.val_size=100", ema)
    metrics = train(cfg)
    best = load_module(next((tmp_path / "checkpoints").glob("epoch*.ckpt"))).eval()
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    image, number, digit, total = datamodule.test_set.__getitems__(range(len(datamodule.test_set)))
    with torch.no_grad():
        digit_pred, sum_pred = best.net.head_answers(*best(image, number), number)
    assert metrics["test/sum_acc"] == pytest.approx((sum_pred == total).float().mean().item())
    assert metrics["test/digit_acc"] == pytest.approx((digit_pred == digit).float().mean().item())


def test_last_checkpoint_is_the_latest_epoch_and_the_best_is_kept_apart(tmp_path, fake_mnist):
    train(compose_train(tmp_path, "trainer=cpu", "trainer.max_epochs=3", "data.val_size=100", "test=false"))
    checkpoints = tmp_path / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 2
    assert len(list(checkpoints.glob("epoch*.ckpt"))) == 1


def test_the_profiler_writes_its_report_into_the_run_folder(tmp_path, fake_mnist):
    train(compose_train(tmp_path, "debug=profiler", "trainer=cpu", "data.batch_size=64", "data.val_size=100"))
    assert "Profiler Report" in (tmp_path / "fit-profile.txt").read_text()


def test_early_stopping_switches_on_beside_the_default_callbacks(tmp_path):
    cfg = compose_train(tmp_path, "callbacks=early_stopping", "callbacks.early_stopping.patience=2")
    callbacks = {name: hydra.utils.instantiate(spec) for name, spec in cfg.callbacks.items()}
    assert isinstance(callbacks["early_stopping"], L.pytorch.callbacks.EarlyStopping)
    assert callbacks["early_stopping"].patience == 2 and "model_checkpoint" in callbacks


def test_a_compiled_net_trains_and_its_checkpoint_loads_uncompiled(tmp_path, fake_mnist):
    overrides = ["model.compile=true", "trainer=cpu", "trainer.max_epochs=1", "data.batch_size=64",
                 "data.val_size=100", "callbacks.error_pictures=null"]  # fmt: skip
    metrics = train(compose_train(tmp_path, *overrides))
    assert 0 <= metrics["test/sum_acc"] <= 1
    loaded = DigitPlusNumberModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert loaded.hparams.compile and not loaded.compiled  # compiled again only when fitting or testing


@pytest.mark.mnist
def test_an_mlflow_run_is_read_back_with_mlflows_own_client(tmp_path):
    tracking = pytest.importorskip("mlflow.tracking", reason="needs the mlflow extra")
    elsewhere = tmp_path / "elsewhere"  # where the command runs: nothing may appear there
    elsewhere.mkdir()
    logs = tmp_path / "logs"
    result = run_cli("logger=mlflow", "debug=limit", "trainer.max_epochs=1", f"paths.log_dir={logs}",
                     cwd=elsewhere)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = tracking.MlflowClient(tracking_uri=f"sqlite:///{logs}/mlflow.db")
    experiment = client.get_experiment_by_name("mnist_adder")
    assert experiment.artifact_location.endswith(f"{logs}/mlartifacts")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "debug-limit__logger-mlflow__trainer.max_epochs-1"
    assert {"val/sum_acc", "test/sum_acc", "time/fit_seconds"} <= set(run.data.metrics)
    assert list(logs.glob("*/*/metrics.json"))  # the run folder keeps its metrics.json as always
    assert not list(elsewhere.iterdir())  # no mlruns/ or mlartifacts/ where the command ran


@pytest.mark.mnist
def test_logger_many_writes_tensorboard_and_an_offline_wandb_run_into_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="needs the wandb extra")
    monkeypatch.setenv("WANDB_MODE", "offline")  # as the config says; no account, no network
    elsewhere, logs = tmp_path / "elsewhere", tmp_path / "logs"
    elsewhere.mkdir()
    overrides = ["logger=many", "debug=limit", "trainer.max_epochs=1", f"paths.log_dir={logs}"]
    result = run_cli(*overrides, cwd=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = logs.glob("*/*/")
    assert list(run.glob("events.out.tfevents.*"))  # TensorBoard, as ever
    (record,) = run.glob("wandb/offline-run-*/run-*.wandb")  # what `wandb sync` uploads
    written = record.read_bytes()
    assert b"debug-limit__logger-many__trainer.max_epochs-1" in written and b"mnist_adder" in written
    assert b"val/sum_acc" in written and b"test/sum_acc" in written
    assert not list(elsewhere.iterdir())  # no wandb/ where the command ran
