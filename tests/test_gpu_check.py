"""The GPU check, tested where there is no GPU: its staging, its reporting, and every step in quick mode
with the CPU standing in for the GPU, so that GPU minutes go to measuring, not debugging."""

import json
import sys
import zipfile

import pytest

from benchmarks import gpu, gpu_stage


def test_a_step_that_fails_or_runs_out_of_time_is_reported_and_the_next_one_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "STEPS", [
        ("broken", "exits with 3", [sys.executable, "-c", "raise SystemExit(3)"], 30),
        ("slow", "sleeps past its limit", [sys.executable, "-c", "import time; time.sleep(30)"], 1),
        ("fine", "prints", [sys.executable, "-c", "print('done')"], 30),
        ("long", "is cut to the budget's rest", [sys.executable, "-c", "import time; time.sleep(30)"], 30),
        ("late", "comes after the budget", [sys.executable, "-c", "print('late')"], 30),
    ])  # fmt: skip
    monkeypatch.setattr(gpu, "install", lambda stage: [])
    report = gpu.main(["--out", str(tmp_path), "--budget", "8"])
    statuses = {name: step["status"] for name, step in report["steps"].items()}
    assert statuses["broken"] == "failed (exit 3)" and statuses["slow"] == "out of time (1 s)"
    assert statuses["fine"] == "ok" and statuses["long"].startswith("out of time (")
    assert statuses["long"] != "out of time (30 s)"  # cut to what was left of the 8 s
    assert statuses["late"] == "not run: the budget was spent"
    assert json.loads((tmp_path / "gpu.json").read_text())["steps"]["fine"]["tail"] == ["done"]
    assert "| `slow` | sleeps past its limit | out of time (1 s) |" in (tmp_path / "gpu.md").read_text()


@pytest.mark.mnist
def test_the_staged_folder_holds_the_wheels_and_mnist_and_fits(tmp_path):
    staged = gpu_stage.main(["--out", str(tmp_path)])
    assert {name.split("-")[0] for name in staged["wheels"]} == {"hydra_core", "omegaconf"}
    assert all(zipfile.is_zipfile(tmp_path / "wheels" / name) for name in staged["wheels"])
    assert len(list((tmp_path / "mnist").glob("*.gz"))) == 4
    assert staged["staged_mib"] + staged["tree_mib"] < 64


@pytest.mark.mnist
def test_every_step_runs_in_quick_mode_on_the_cpu(tmp_path):
    report = gpu.main(["--quick", "--cpu", "--out", str(tmp_path), "--budget", "600"])
    assert [name for name, *_ in gpu.STEPS] == list(report["steps"])
    failed = {name: step["tail"] for name, step in report["steps"].items() if step["status"] != "ok"}
    assert not failed
    assert report["steps"]["dual"]["metrics"]["test/digit_acc"] > 0
    assert "| `reference_dual` |" in (tmp_path / "gpu.md").read_text()
