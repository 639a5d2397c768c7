import json

import pytest

from benchmarks import run, scale_out


def test_benchmark_script_runs_and_writes_its_report(fake_mnist, tmp_path):
    results = run.main(["--quick", "--out", str(tmp_path)])
    assert set(results["nets"]) == {"dual", "adder", "speedrun", "seed_dual", "seed_adder"}
    assert results["nets"]["seed_dual"]["parameters"] == 6_384_925
    assert results["overhead"]["ratio"] > 0
    assert json.loads((tmp_path / "results.json").read_text())["machine"]["cores"] >= 1
    report = (tmp_path / "results.md").read_text()
    assert "Framework overhead" in report and "| `speedrun` |" in report


@pytest.mark.mnist
def test_scale_out_benchmark_runs_and_writes_its_report(tmp_path):
    results = scale_out.main(["--quick", "--out", str(tmp_path)])
    assert results["sweep"]["ratio"] > 0
    assert set(results["precision"]) >= {"32-true", "bf16-mixed"}
    report = (tmp_path / "scale_out.md").read_text()
    assert "serial / parallel" in report and "| `bf16-mixed` |" in report
