"""Run folders: names a user can paste, never reused, found again to resume, and one for all ranks."""

import os
import time

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from mnist_adder import UserError
from mnist_adder.runs.folders import finished_metrics, run_dir, run_name


@pytest.mark.parametrize(
    ("override_dirname", "name"),
    [
        ("model-dual__seed-3", "model-dual__seed-3"),
        ("", "defaults"),
        ("model/sum_head-exact", "model.sum_head-exact"),
        ("data.holdout_pairs-[[3,4],[9,0]]__seed-1", "data.holdout_pairs-3.4.9.0__seed-1"),
        ("model.optimizer.lr--1e-3", "model.optimizer.lr--1e-3"),
        ("name-'a b=c'", "name-a.b.c"),
    ],
)
def test_a_run_name_keeps_only_characters_that_hydra_reads_unquoted(override_dirname, name):
    assert run_name(override_dirname) == name
    path = f"/logs/multirun/2026-11-22_10-00-00/{name}/checkpoints/epoch03.ckpt"
    (override,) = OverridesParser.create().parse_overrides([f"ckpt_path={path}"])
    assert override.value() == path  # a path pasted unquoted reads back as itself


def test_a_run_name_too_long_for_a_file_is_cut_and_hashed():
    name = run_name("__".join(f"key{i}-{i}" for i in range(100)))
    assert len(name.encode()) < 255
    assert name != run_name("__".join(f"key{i}-{i}" for i in range(101)))


def test_a_run_folder_is_never_reused_and_resuming_finds_the_run(tmp_path):
    runs = tmp_path / "model-dual"
    assert run_dir(None, str(runs), "stamp") == str(runs / "stamp")
    (runs / "stamp").mkdir(parents=True)
    (runs / "stamp_1").mkdir()
    assert run_dir(None, str(runs), "stamp") == str(runs / "stamp_2")

    for name in ("old", "new"):  # the newest run with a last.ckpt is the one to resume
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / ".hydra").mkdir()
        (runs / name / "checkpoints" / "last.ckpt").write_bytes(b"")
        time.sleep(0.01)
    assert run_dir("last", str(runs), "stamp") == str(runs / "new")
    assert run_dir(str(runs / "old" / "checkpoints" / "last.ckpt"), str(runs), "stamp") == str(runs / "old")
    assert run_dir("last", str(tmp_path / "other"), "stamp") == str(tmp_path / "other" / "stamp")


def test_a_folder_that_holds_a_run_is_finished_with_ckpt_path_last_and_never_overwritten(tmp_path):
    assert finished_metrics(tmp_path, None) is None  # an empty folder: a new run starts there
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(UserError, match="already holds a run: add ckpt_path=last to finish it"):
        finished_metrics(tmp_path, None)
    assert finished_metrics(tmp_path, "last") is None  # stopped: resume it
    (tmp_path / "metrics.json").write_text('{"test/sum_acc": 0.99}')
    assert finished_metrics(tmp_path, "last") == {"test/sum_acc": 0.99}  # finished: report it


def test_only_the_first_process_refuses_a_folder_that_holds_a_run(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    monkeypatch.setitem(os.environ, "LOCAL_RANK", "1")  # a DDP process Lightning started in rank 0's folder
    assert finished_metrics(tmp_path, None) is None
