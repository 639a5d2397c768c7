"""The figures: training curves from a run's TensorBoard events, and a model's answers on test pairs."""

import pytest

import mnist_adder.data.datamodule
from mnist_adder.plots import main, read_curves
from mnist_adder.train import train
from tests.conftest import compose_train, synthetic_mnist


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 3-epoch run on synthetic data (the fake_mnist fixture, for a whole module)."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(mnist_adder.data.datamodule, "fetch_mnist", lambda data_dir: None)
    fake = lambda data_dir, train: synthetic_mnist(600 if train else 200, seed=10 + int(train))  # noqa: E731
    monkeypatch.setattr(mnist_adder.data.datamodule, "load_mnist", fake)
    folder = tmp_path_factory.mktemp("run")
    train(
        compose_train(
            folder, "trainer=cpu", "trainer.max_epochs=3", "data.batch_size=64", "data.val_size=100"
        )
    )
    yield folder
    monkeypatch.undo()


def test_curves_are_read_per_epoch_and_drawn(run_dir, tmp_path):
    curves = read_curves(run_dir)
    assert [len(curves[tag]) for tag in ("val/digit_acc", "val/sum_acc")] == [3, 3]
    main(["curves", str(run_dir), "--out", str(tmp_path / "curves.png")])
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_samples_show_a_models_answers(run_dir, tmp_path, fake_mnist):
    main(["samples", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "samples.png")])
    assert (tmp_path / "samples.png").stat().st_size > 10_000


def test_a_folder_without_events_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["curves", str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} has no TensorBoard events")
    assert not (tmp_path / "x.png").exists()


def test_calibration_draws_the_reliability_and_writes_risk_and_coverage(run_dir, tmp_path, fake_mnist):
    main(["calibration", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "cal.png")])
    assert (tmp_path / "cal.png").stat().st_size > 10_000
    report = (tmp_path / "cal.md").read_text()
    assert "| validation, 100 |" in report and "| test, 200 |" in report
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| 0.")]
    assert len(rows) == 9
    coverage = [float(row[1].rstrip(" %")) for row in rows]
    assert coverage == sorted(coverage, reverse=True)  # a higher threshold is sure of fewer answers
