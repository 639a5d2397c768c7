"""The bad-input table: train, eval, export and predict, each refused with a clear message and nothing
touched.

Every case asserts: a non-zero exit code, a first stderr line naming the problem (our own errors are that
one line alone; Hydra's composition errors go on to list what is allowed), no traceback, and no file
written or deleted. Train and eval run as real subprocesses, since Hydra makes the run folder before any
of our code runs.
"""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from mnist_adder.models.module import DigitPlusNumberModule
from mnist_adder.predict import main as predict_main
from tests.test_predict import stroke_page


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder of things a user might pass by mistake, and a good image."""
    folder = tmp_path_factory.mktemp("files")
    Image.fromarray(stroke_page().numpy()).save(folder / "digit.png")
    Image.new("L", (40, 40), 255).save(folder / "blank.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not a checkpoint, not an image")
    (folder / "folder").mkdir()
    (folder / "exported").mkdir()
    (folder / "exported" / "model.onnx").write_text("an earlier export")
    # A real checkpoint, of a narrower net than the default model=dual.
    narrow = DigitPlusNumberModule(
        backbone={"_target_": "mnist_adder.models.nets.CompactCNN", "width": 8},
        sum_head={"_target_": "mnist_adder.models.nets.ExactSumHead"},
    )
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    labels = torch.zeros(4, dtype=torch.long)
    batch = (torch.zeros(4, 1, 28, 28), labels, labels, labels)
    trainer.fit(narrow, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    trainer.save_checkpoint(folder / "narrow.ckpt")
    whole = (folder / "narrow.ckpt").read_bytes()
    (folder / "cut.ckpt").write_bytes(whole[: len(whole) // 3])  # as a kill during a plain save leaves it
    return folder


TRAIN = {  # case: (overrides, the start of the first stderr line)
    "unknown model": (["model=nope"], "In 'train': Could not find 'model/nope'"),
    "unknown trainer": (["trainer=tpu"], "In 'train': Could not find 'trainer/tpu'"),
    "mistyped key": (["trainer.max_epoch=3"], "Could not override 'trainer.max_epoch'"),
    "negative batch size": (["data.batch_size=-5"], "error: data.batch_size must be a positive integer"),
    "negative epochs": (["trainer.max_epochs=-3"], "error: `max_epochs` must be a non-negative integer"),
    "negative workers": (["data.num_workers=-1"], "error: data.num_workers must be 0 or more, got -1"),
    "negative seed": (["seed=-1"], "error: seed must be an integer in 0..4294967295, got -1"),
    "unknown holdout preset": (["data.holdout_pairs=diag"], "error: data.holdout_pairs must be one of"),
    "holdout pair out of range": (["data.holdout_pairs=[[10,1]]"], "error: data.holdout_pairs must be"),
    "data_dir is a file": (["paths.data_dir={files}/notes.txt"], "error: data.data_dir {files}/notes.txt is"),
    "log_dir inside a file": (["paths.log_dir={files}/notes.txt/logs"], "error: paths.log_dir {files}/notes"),
    "missing checkpoint": (["ckpt_path=/no/such.ckpt"], "error: ckpt_path /no/such.ckpt is not a file"),
    "checkpoint is a folder": (["ckpt_path={files}/folder"], "error: ckpt_path {files}/folder is not a file"),
    "checkpoint is a text file": (["ckpt_path={files}/notes.txt"], "error: ckpt_path {files}/notes.txt"),
    "checkpoint of another net": (["ckpt_path={files}/narrow.ckpt"], "error: ckpt_path {files}/narrow"),
    "nothing to resume": (["ckpt_path=last"], "error: ckpt_path=last: no run under"),
    "test-time shifts too far": (["model.test_time_shifts=20"], "error: test_time_shifts must be 0 (none)"),
    "unknown digit input": (["model.sum_head.digit_input=pixels"], "error: model.sum_head.digit_input must"),
    "distillation without teachers": (["experiment=distilled_tiny"], "error: model.distillation.teachers"),
    "teacher not found": (
        ["experiment=distilled_tiny", "model.distillation.teachers=[/no/such.ckpt]"],
        "error: model.distillation.teachers: no checkpoint at /no/such.ckpt",
    ),
    "teacher is a text file": (
        ["experiment=distilled_tiny", "model.distillation.teachers=[{files}/notes.txt]"],
        "error: model.distillation.teachers: ckpt_path {files}/notes.txt",
    ),
    "a search without -m": (  # the command it offers is the guide's, composed by test_readme.py
        ["hparams_search=optuna"],
        "error: hparams_search=optuna is a sweep: add -m, as in python -m mnist_adder.train -m "
        "hparams_search=optuna",
    ),
}
EVAL = {
    "no checkpoint given": ([], "error: Missing mandatory value: ckpt_path"),
    "missing checkpoint": (["ckpt_path=/no/such.ckpt"], "error: ckpt_path /no/such.ckpt is not a file"),
    "checkpoint is a folder": (["ckpt_path={files}/folder"], "error: ckpt_path {files}/folder is not a file"),
    "checkpoint is a text file": (["ckpt_path={files}/notes.txt"], "error: ckpt_path {files}/notes.txt is"),
    "damaged checkpoint": (["ckpt_path={files}/cut.ckpt"], "error: ckpt_path {files}/cut.ckpt is damaged"),
    "unknown split": (["ckpt_path={files}/narrow.ckpt", "split=train"], "error: split must be test or val"),
    "test-time shifts negative": (
        ["ckpt_path={files}/narrow.ckpt", "test_time_shifts=-2"],
        "error: test_time_",
    ),
    "number length not a positive integer": (
        ["ckpt_path={files}/narrow.ckpt", "num_digits=0"],
        "error: num_digits must be a positive integer, got 0",
    ),
    "number length for an image + number net": (
        ["ckpt_path={files}/narrow.ckpt", "num_digits=15"],
        "error: num_digits is for MNIST-addition checkpoints",
    ),
}
EXPORT = {
    "no checkpoint given": ([], "error: Missing mandatory value: ckpt_path"),
    "missing checkpoint": (["ckpt_path=/no/such.ckpt"], "error: ckpt_path /no/such.ckpt is not a file"),
    "checkpoint is a text file": (["ckpt_path={files}/notes.txt"], "error: ckpt_path {files}/notes.txt is"),
    "damaged checkpoint": (["ckpt_path={files}/cut.ckpt"], "error: ckpt_path {files}/cut.ckpt is damaged"),
    "folder holds a model": (
        ["ckpt_path={files}/narrow.ckpt", "hydra.run.dir={files}/exported"],
        "error: {files}/exported holds an exported model: export into a new folder",
    ),
    "unknown format": (
        ["ckpt_path={files}/narrow.ckpt", "format=tflite"],
        "error: format must be onnx or torch_export, got 'tflite'",
    ),
}
PREDICT = {
    "missing image": (["missing.png", "3"], "error: image missing.png is not a file"),
    "image is a folder": (["folder", "3"], "error: image folder is not a file"),
    "empty image file": (["empty.png", "3"], "error: image empty.png is empty"),
    "not an image": (["notes.txt", "3"], "error: image notes.txt is not a readable image"),
    "blank image": (["blank.png", "3"], "error: image blank.png has no ink"),
    "number 10": (["digit.png", "10"], "error: number '10' is not an integer in 0..9"),
    "number -1": (["digit.png", "-1"], "error: number '-1' is not an integer in 0..9"),
    "number 7.5": (["digit.png", "7.5"], "error: number '7.5' is not an integer in 0..9"),
    "number seven": (["digit.png", "seven"], "error: number 'seven' is not an integer in 0..9"),
    "odd count": (["digit.png", "3", "digit.png"], "error: got 3 arguments: give pairs of IMAGE NUMBER"),
    "missing checkpoint": (["digit.png", "3", "--checkpoint", "none.ckpt"], "error: ckpt_path none.ckpt is"),
    "text as checkpoint": (["digit.png", "3", "--checkpoint", "notes.txt"], "error: ckpt_path notes.txt"),
    "damaged checkpoint": (["digit.png", "3", "--checkpoint", "cut.ckpt"], "error: ckpt_path cut.ckpt is"),
    "missing model": (["digit.png", "3", "--model", "none.onnx"], "error: model none.onnx is not a file"),
    "checkpoint as model": (["digit.png", "3", "--model", "narrow.ckpt"], "error: model narrow.ckpt is"),
    "model and checkpoint": (
        ["digit.png", "3", "--model", "m.onnx", "--checkpoint", "narrow.ckpt"],
        "error: give --checkpoint (a .ckpt) or --model (an exported .onnx), not both",
    ),
}


def tree(*folders: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under the folders, with (size, mtime) for files: equal trees mean nothing was touched."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
        for folder in folders
        for path in folder.rglob("*")
    }


def check_refusal(returncode: int, stderr: str, expected: str, own_error: bool) -> None:
    assert returncode != 0
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[0].startswith(expected), stderr
    if own_error:
        assert len(lines) == 1, stderr


CLI_CASES = [("train", case) for case in TRAIN] + [("eval", case) for case in EVAL]
CLI_CASES += [("export", case) for case in EXPORT]


@pytest.mark.parametrize(("entry", "case"), CLI_CASES)
def test_train_and_eval_refuse_bad_input(files, tmp_path, entry, case):
    overrides, expected = {"train": TRAIN, "eval": EVAL, "export": EXPORT}[entry][case]
    logs = tmp_path / "lightning_logs"
    logs.mkdir()
    before = tree(files, tmp_path)
    result = subprocess.run(
        # debug=limit keeps a case that wrongly passes short; a later override of a key wins.
        [sys.executable, "-m", f"mnist_adder.{entry}", f"paths.log_dir={logs}"]
        + (["debug=limit"] if entry == "train" else [])
        + [override.format(files=files) for override in overrides],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    own_error = expected.startswith("error:")
    check_refusal(result.returncode, result.stderr, expected.format(files=files), own_error)
    assert tree(files, tmp_path) == before


@pytest.mark.parametrize("case", list(PREDICT))
def test_predict_refuses_bad_input(files, monkeypatch, capsys, case):
    argv, expected = PREDICT[case]
    monkeypatch.chdir(files)
    before = tree(files)
    with pytest.raises(SystemExit) as exit_:
        predict_main(argv)
    check_refusal(exit_.value.code, capsys.readouterr().err, expected, own_error=True)
    assert tree(files) == before
