"""`python -m mnist_adder.average`: several nets written as one file, which the printed command reads."""

import subprocess
import sys

import pytest
import torch

from mnist_adder import PROJECT_ROOT
from mnist_adder.data.mnist import normalise
from mnist_adder.models.checkpoints import load_net
from mnist_adder.models.nets import AveragedNets, fit_temperature
from mnist_adder.models.scoring import score
from tests.test_checkpoints import saved


def test_the_averaged_file_answers_as_the_printed_command_says_and_is_never_overwritten(tmp_path):
    saved(tmp_path, "a.ckpt")
    torch.manual_seed(1)
    saved(tmp_path, "b.ckpt")
    out = tmp_path / "averaged nets.ckpt"  # a space, for the printed command's quoting
    nets = [str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt")]
    command = [sys.executable, "-m", "mnist_adder.average", *nets, "--out", str(out)]
    printed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[0].startswith(
        f"wrote {out}: 2 nets, each image read as given, temperature "
    )
    (answer,) = [line.split(": ", 1)[1] for line in printed.stdout.splitlines() if "answer with" in line]
    result = subprocess.run(answer, shell=True, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("notebooks/seven.png + 3: ")
    before = out.read_bytes()
    again = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "exists" in again.stderr
    assert out.read_bytes() == before
    command[3] = str(tmp_path / "missing.ckpt")
    missing = subprocess.run(command[:-1] + [str(tmp_path / "new.ckpt")], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.startswith("error: ckpt_path ")
    assert missing.stderr.count("\n") == 1 and not (tmp_path / "new.ckpt").exists()


def test_a_temperature_fit_on_validation_digits_is_the_one_the_file_keeps(tmp_path, monkeypatch, capsys):
    import mnist_adder.average as average

    saved(tmp_path, "a.ckpt")
    torch.manual_seed(1)
    saved(tmp_path, "b.ckpt")
    nets = [str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt")]
    images, digits = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8), torch.arange(64) % 10
    monkeypatch.setattr(average, "validation_digits", lambda: (images, digits))
    average.main([*nets, "--out", str(tmp_path / "fit.ckpt"), "--temperature", "fit"])
    assert "temperature" in capsys.readouterr().out
    both = AveragedNets([load_net(path) for path in nets])
    expected = fit_temperature(score(both, normalise(images), digits).log_probs, digits)
    assert load_net(tmp_path / "fit.ckpt").temperature == pytest.approx(expected)
    assert expected != pytest.approx(both.temperature)


def test_a_file_written_with_thinned_views_reads_each_image_so(tmp_path, capsys):
    import mnist_adder.average as average

    saved(tmp_path, "a.ckpt")
    torch.manual_seed(1)
    saved(tmp_path, "b.ckpt")
    nets = [str(tmp_path / "a.ckpt"), str(tmp_path / "b.ckpt")]
    average.main([*nets, "--out", str(tmp_path / "thin.ckpt"), "--thinned"])
    assert "each image read as given and thinned" in capsys.readouterr().out
    written = load_net(tmp_path / "thin.ckpt")
    assert written.views == ("as given", "thinned")
    images, numbers = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    expected = AveragedNets([load_net(path) for path in nets], views=("as given", "thinned"))
    assert torch.allclose(
        written.probabilities(images, numbers)[0], expected.probabilities(images, numbers)[0]
    )
    as_given = AveragedNets([load_net(path) for path in nets])
    assert not torch.allclose(
        written.probabilities(images, numbers)[0], as_given.probabilities(images, numbers)[0]
    )
