import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_adder import UserError
from mnist_adder.eval import evaluate
from mnist_adder.models.checkpoints import load_module
from mnist_adder.train import train
from tests.conftest import REFERENCE_CHECKPOINT, compose_eval, compose_train


def test_an_adder_checkpoint_evaluates_with_no_model_override(tmp_path, fake_mnist):
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    cfg = compose_train(run_dir, "model=adder", "trainer.max_epochs=1", "data.val_size=100", "test=false")
    train(cfg)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    metrics = evaluate(compose_eval(eval_dir, f"ckpt_path={ckpt}"))  # data settings: the checkpoint's
    assert 0 <= metrics["test/digit_acc"] <= 1 and 0 <= metrics["test/sum_acc"] <= 1
    assert "test/digit_loss" not in metrics  # evaluated as the adder it is
    assert (eval_dir / "metrics.json").is_file()


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(UserError, match="is not a checkpoint that mnist_adder.train wrote"):
        load_module(str(text))
    with pytest.raises(UserError, match="is not a file"):
        load_module(str(tmp_path / "missing.ckpt"))


def test_eval_cli_reports_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_adder.eval",
            f"ckpt_path={tmp_path}/none.ckpt",
            f"paths.log_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: ckpt_path {tmp_path}/none.ckpt is not a file")


def test_eval_scores_validation_with_test_time_shifts_when_told(tmp_path, fake_mnist, caplog):
    run_dir = tmp_path / "run"
    train(compose_train(run_dir, "trainer.max_epochs=1", "data.val_size=100", "test=false"))
    ckpt = f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    caplog.set_level(logging.INFO, logger="mnist_adder.runs.app")
    caplog.clear()
    plain = evaluate(compose_eval(tmp_path / "plain", ckpt, "split=val"))
    assert "val sum acc" in caplog.text and "test sum acc" not in caplog.text  # the table names its split
    shifted = evaluate(
        compose_eval(tmp_path / "shifted", ckpt, "split=val", "test_time_shifts=2")
    )
    assert plain["val/samples"] == shifted["val/samples"] == 100 and "test/sum_acc" not in plain
    assert plain["val/sum_loss"] != shifted["val/sum_loss"]  # another model: five views averaged
    with pytest.raises(UserError, match="split must be test or val"):
        evaluate(compose_eval(tmp_path / "bad", ckpt, "split=train"))


@pytest.mark.mnist
def test_eval_of_the_shipped_model_gives_its_recorded_test_accuracy(tmp_path):
    # The README's eval command, on a fresh clone: the checkpoint names its data, no override needed.
    metrics = evaluate(compose_eval(tmp_path, f"ckpt_path={REFERENCE_CHECKPOINT}"))
    recorded = json.loads((Path(REFERENCE_CHECKPOINT).parents[1] / "metrics.json").read_text())
    assert metrics["test/samples"] == 10_000
    # The same weights and test pairs; another CPU's kernels may move a borderline image or two.
    assert abs(metrics["test/digit_acc"] - recorded["test/digit_acc"]) <= 2e-4
    assert abs(metrics["test/sum_acc"] - recorded["test/sum_acc"]) <= 2e-4
