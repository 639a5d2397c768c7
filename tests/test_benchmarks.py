import json

import pytest

from benchmarks import run, scale_out, startup


def a_command(seconds: float) -> dict:
    parts = {
        "run_seconds": seconds - 10,
        "setup_seconds": 1.0,
        "fit_seconds": seconds - 13,
        "test_seconds": 1.0,
    }
    return {
        "overrides": ["experiment=speedrun"],
        "wall_seconds": seconds,
        "metrics": {"test/sum_acc": 0.99, **parts},
    }


def test_benchmark_script_runs_and_writes_its_report(fake_mnist, tmp_path, monkeypatch):
    # The time to 99 % runs real commands in fresh processes, on real MNIST: tested on its own below.
    timed = {"reference": [{"train_seconds": 10.0, "test_acc": 0.99}], "speedrun": [a_command(25)]}
    monkeypatch.setattr(run, "time_to_99", lambda args, data_dir: timed | {"default": a_command(200)})
    results = run.main(["--quick", "--out", str(tmp_path)])
    assert set(results["nets"]) == {"dual", "adder", "speedrun", "reference_dual", "reference_adder"}
    assert results["nets"]["reference_dual"]["parameters"] == 6_384_925
    assert results["overhead"]["ratio"] > 0
    assert json.loads((tmp_path / "results.json").read_text())["machine"]["cores"] >= 1
    report = (tmp_path / "results.md").read_text()
    assert "Framework overhead" in report and "| `speedrun` |" in report
    assert "whole command / the reference's training: **2.50**" in report  # 25 s against 10 s


@pytest.mark.mnist
def test_time_to_99_times_the_real_commands_and_a_bare_reference(tmp_path):
    results = run.main(["--time-to-99-only", "--quick", "--out", str(tmp_path)])["time_to_99"]
    assert len(results["speedrun"]) == 2 and results["reference"][0]["train_seconds"] > 0
    parts = run.breakdown(results["speedrun"][0])
    assert parts["startup"] > 0 and parts["fit"] > 0 and parts["test"] > 0
    assert parts["startup"] + parts["setup"] + parts["fit"] + parts["test"] <= parts["whole"]
    assert results["default"]["overrides"][-1] == "trainer.max_epochs=1"
    assert "Time to 99 %" in (tmp_path / "time_to_99.md").read_text()


@pytest.mark.mnist
def test_scale_out_benchmark_runs_and_writes_its_report(tmp_path):
    results = scale_out.main(["--quick", "--out", str(tmp_path)])
    assert results["sweep"]["ratio"] > 0
    assert set(results["precision"]) >= {"32-true", "bf16-mixed"}
    report = (tmp_path / "scale_out.md").read_text()
    assert "serial / parallel" in report and "| `bf16-mixed` |" in report


def test_the_time_to_an_answer_benchmark_writes_its_report(tmp_path):
    results = startup.main(["--quick", "--out", str(tmp_path)])
    assert set(results["median_seconds"]) == {"import torch", "predict", "predict, ONNX", "demo"}
    assert results["ratio_to_import_torch"]["import torch"] == 1.0
    assert "| `mnist-adder-predict notebooks/seven.png 3` |" in (tmp_path / "startup.md").read_text()
