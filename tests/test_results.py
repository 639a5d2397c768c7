import json

import pytest
import yaml

from mnist_adder import results


def fake_run(folder, overrides, digit_acc, sum_acc):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {
        "test/digit_acc": digit_acc,
        "test/sum_acc": sum_acc,
        "fit_seconds": 120.0,
        "parameters": 80589,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_runs_that_differ_only_in_seed_share_a_row_with_mean_and_std(tmp_path, capsys):
    fake_run(tmp_path / "a", ["model=dual", "seed=1"], 0.995, 0.994)
    fake_run(tmp_path / "b", ["model=dual", "seed=2"], 0.997, 0.996)
    fake_run(tmp_path / "c", ["model=adder", "seed=1"], 0.990, 0.990)
    results.main([str(tmp_path)])
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 6 and rows[-1].startswith("No run.json beside these runs")
    assert rows[2].startswith("| `model=dual` | 2 | 99.60 ± 0.14 | 99.50 ± 0.14 | - | 120 ± 0 | 80,589 |")
    assert rows[3].startswith("| `model=adder` | 1 | 99.00 | 99.00 |")


def test_the_most_likely_and_repaired_sums_have_a_column_only_where_a_run_scored_them(tmp_path, capsys):
    fake_run(tmp_path / "a", ["experiment=mnist_addition", "seed=1"], 0.995, 0.40)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    scored = {"test/most_likely_sum_acc": 0.42, "test/repaired_sum_acc": 0.4321, "test/digit_acc_to_2n": 0.41}
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(metrics | scored))
    results.main([str(tmp_path)])
    header, _, row = capsys.readouterr().out.splitlines()[:3]
    columns = [
        "test sum acc %",
        "test most likely sum acc %",
        "test sum acc, 100 re-pairings %",
        "test digit acc^(2N) %",
    ]
    assert f"| {' | '.join(columns)} |" in header
    assert "| 40.00 | 42.00 | 43.21 | 41.00 |" in row
    fake_run(tmp_path / "b", ["experiment=mnist_addition", "seed=2"], 0.995, 0.40)  # scored before them
    results.main([str(tmp_path)])
    row = capsys.readouterr().out.splitlines()[2]
    assert "| 40.00 ± 0.00 | 42.00 (1 of 2 runs) | 43.21 (1 of 2 runs) | 41.00 (1 of 2 runs) |" in row


def test_a_folder_without_runs_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no metrics.json"):
        results.main([str(tmp_path)])


def test_the_table_ends_with_when_where_and_at_which_commit(tmp_path, capsys):
    for name, date in (("a", "2026-11-26T10:00:00"), ("b", "2026-11-27T09:00:00")):
        fake_run(tmp_path / name, ["model=dual", f"seed={name}"], 0.99, 0.99)
        run = {"date": date, "hardware": "AMD EPYC, 2 cores, no GPU", "commit": "abc1234", "overrides": []}
        (tmp_path / name / "run.json").write_text(json.dumps(run))
    results.main([str(tmp_path)])
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "2 runs, 2026-11-26 to 2026-11-27, on AMD EPYC, 2 cores, no GPU, at commit abc1234."


def test_curves_give_each_bins_mean_over_seeds_from_tensorboard(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    for seed, offset in ((1, 0.0), (2, 0.2)):
        fake_run(tmp_path / f"s{seed}", ["experiment=mnist_addition", f"seed={seed}"], 0.99, 0.5)
        with SummaryWriter(tmp_path / f"s{seed}") as writer:
            for step in range(0, 100, 10):
                writer.add_scalar("carry_signal/positions_1", step / 100 + offset, step)
    results.main([str(tmp_path), "--curve", "carry_signal/positions_1", "--rows", "3", "--until", "40"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "`experiment=mnist_addition`, 2 runs:"
    assert lines[4:7] == [  # bins of steps: each run's mean over the bin, then mean ± std over the runs
        "| 0 | 0.1000 ± 0.1414 |",
        "| 10–20 | 0.2500 ± 0.1414 |",
        "| 30–40 | 0.4500 ± 0.1414 |",
    ]
    with pytest.raises(SystemExit, match="none of the runs logged train/nothing"):
        results.main([str(tmp_path), "--curve", "train/nothing"])
