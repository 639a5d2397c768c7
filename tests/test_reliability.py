"""Resume, determinism, DDP, data integrity, numerical safety and never overwriting a run.

The tests marked `mnist` run `python -m mnist_adder.train` in a subprocess on real MNIST, as a user would.
"""

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
import torch

from mnist_adder import PROJECT_ROOT, UserError
from mnist_adder.data import mnist
from mnist_adder.data.datamodule import DigitPlusNumberDataModule
from mnist_adder.runs.folders import run_name
from mnist_adder.train import train
from tests.conftest import compose_train

SHORT = ["debug=limit", "trainer=cpu", "trainer.deterministic=true", "callbacks.error_pictures=null"]


def final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in metrics.items() if not name.endswith("_seconds")}


def test_the_same_config_and_seed_give_identical_metrics(tmp_path, fake_mnist):
    overrides = ["trainer.max_epochs=2", "data.batch_size=64", "data.val_size=100", *SHORT[1:]]
    first = train(compose_train(tmp_path / "first", *overrides))
    second = train(compose_train(tmp_path / "second", *overrides))
    assert final_metrics(first) == final_metrics(second)


def test_training_order_and_pairs_do_not_depend_on_the_number_of_workers(fake_mnist):
    def epochs(num_workers: int) -> list[torch.Tensor]:
        datamodule = DigitPlusNumberDataModule(batch_size=50, val_size=100, num_workers=num_workers, seed=4)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        seen = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)  # as Lightning does
            seen.append(torch.cat([torch.cat(batch[1:3]) for batch in loader]))
        return seen

    single, several = epochs(0), epochs(2)
    assert all(torch.equal(a, b) for a, b in zip(single, several, strict=True))
    assert not torch.equal(single[0], single[1])  # a new order and new pairs every epoch


@pytest.mark.filterwarnings("ignore:Encountered `nan` values")  # torchmetrics, of the poisoned loss: expected
def test_a_nan_loss_stops_training_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path, fake_mnist):
    poison = ["+callbacks.poison._target_=tests.callbacks.PoisonWeights", "+callbacks.poison.epoch=1"]
    cfg = compose_train(
        tmp_path, "trainer.max_epochs=3", "data.batch_size=64", "data.val_size=100", *poison,
        "+callbacks.poison.batch=3",
    )  # fmt: skip
    with pytest.raises(UserError, match=r"^the training loss is nan at epoch 1, step 11: training stopped"):
        train(cfg)
    checkpoints = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["epoch00.ckpt", "last.ckpt"]
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(value).all() for value in last["state_dict"].values())


def test_a_damaged_raw_file_is_fetched_again_and_a_failed_fetch_names_it(tmp_path, monkeypatch):
    contents = {name: name.encode() * 100 for name in mnist.MNIST_SHA256}  # stand-ins for the four files
    checksums = {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}
    monkeypatch.setattr(mnist, "MNIST_SHA256", checksums)
    fetched = []

    def fetch(data_dir):
        fetched.append(True)
        for name, content in contents.items():
            (mnist.raw_dir(data_dir) / name).write_bytes(content)

    monkeypatch.setattr(mnist, "FETCHERS", [fetch])
    raw = mnist.fetch_mnist(tmp_path)
    for damage in ("truncate", "alter", "delete"):
        path = raw / "train-labels-idx1-ubyte"
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[:10])
        elif damage == "alter":
            path.write_bytes(path.read_bytes().replace(b"t", b"T", 1))
        else:
            path.unlink()
        fetched.clear()
        mnist.fetch_mnist(tmp_path)
        assert fetched and path.read_bytes() == contents[path.name]

    (raw / "t10k-images-idx3-ubyte").write_bytes(b"damaged")
    monkeypatch.setattr(mnist, "FETCHERS", [lambda data_dir: None])  # every route fails
    with pytest.raises(UserError, match=r"^could not fetch MNIST t10k-images-idx3-ubyte \(missing or"):
        mnist.fetch_mnist(tmp_path)


def train_cli(log_dir, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_adder.train", f"paths.log_dir={log_dir}", *overrides],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def run_folders(log_dir):
    return sorted(path.parent for path in log_dir.glob("*/*/.hydra"))


@pytest.mark.mnist
def test_an_interrupted_run_resumes_in_its_folder_and_ends_exactly_like_an_uninterrupted_one(tmp_path):
    args = [*SHORT, "trainer.max_epochs=3"]
    reference = train_cli(tmp_path / "reference", *args)
    assert reference.returncode == 0, reference.stderr
    (reference_dir,) = run_folders(tmp_path / "reference")
    expected = final_metrics(json.loads((reference_dir / "metrics.json").read_text()))

    for signal_name, exit_code in (("SIGTERM", 143), ("SIGKILL", -9)):
        log_dir = tmp_path / signal_name
        interrupt = [
            "+callbacks.interrupt._target_=tests.callbacks.Interrupt", "+callbacks.interrupt.epoch=1",
            "+callbacks.interrupt.batch=10", f"+callbacks.interrupt.signal_name={signal_name}",
        ]  # fmt: skip
        interrupted = train_cli(log_dir, *args, *interrupt)
        assert interrupted.returncode == exit_code, interrupted.stderr
        (folder,) = run_folders(log_dir)
        assert not (folder / "metrics.json").exists()

        resumed = train_cli(log_dir, *args, f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}")  # unquoted
        assert resumed.returncode == 0, resumed.stderr
        assert run_folders(log_dir) == [folder]  # the same folder, no new one
        assert final_metrics(json.loads((folder / "metrics.json").read_text())) == expected


@pytest.mark.mnist
def test_ddp_on_two_cpu_processes_counts_every_test_sample_once_like_one_process(tmp_path):
    result = train_cli(tmp_path, "trainer=ddp_sim", "debug=limit", "trainer.max_epochs=1",
                       "trainer.limit_test_batches=null", "callbacks.error_pictures=null")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.rglob(".hydra"))) == 1  # the second process wrote no config of its own
    (folder,) = run_folders(tmp_path)
    ddp = json.loads((folder / "metrics.json").read_text())
    assert ddp["test/samples"] == 10_000

    (checkpoint,) = (folder / "checkpoints").glob("epoch*.ckpt")
    single = subprocess.run(
        [sys.executable, "-m", "mnist_adder.eval", f"ckpt_path={checkpoint}",
         f"paths.log_dir={tmp_path}"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    (eval_metrics,) = [json.loads(path.read_text()) for path in (tmp_path / "eval").glob("*/metrics.json")]
    for name in ("test/samples", "test/digit_acc", "test/sum_acc"):
        assert ddp[name] == eval_metrics[name]
    assert ddp["test/loss"] == pytest.approx(eval_metrics["test/loss"], rel=1e-5)


@pytest.mark.mnist
def test_two_processes_fetching_mnist_at_once_both_get_verified_files(tmp_path):
    code = f"from mnist_adder.data.mnist import fetch_mnist; fetch_mnist({str(tmp_path)!r})"
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT_ROOT) for _ in range(2)]
    assert [process.wait(timeout=600) for process in processes] == [0, 0]
    assert mnist.discard_bad_files(mnist.raw_dir(tmp_path)) == []
    assert sorted(path.name for path in mnist.raw_dir(tmp_path).iterdir()) == sorted(mnist.MNIST_SHA256)


@pytest.mark.mnist
def test_a_run_started_when_its_folder_exists_gets_a_new_one_and_leaves_the_old_alone(tmp_path):
    overrides = [*SHORT, "trainer.max_epochs=1"]
    runs = tmp_path / run_name("__".join(o.replace("=", "-", 1) for o in sorted(overrides)))  # as Hydra does
    now = datetime.now()
    for second in range(60):  # the folders of every start time in the next minute are taken
        taken = runs / (now + timedelta(seconds=second)).strftime("%Y-%m-%d_%H-%M-%S")
        taken.mkdir(parents=True)
        (taken / "earlier_run.txt").write_text("keep me")
    result = train_cli(tmp_path, *overrides)
    assert result.returncode == 0, result.stderr
    (new,) = [folder for folder in runs.iterdir() if (folder / "metrics.json").exists()]
    assert new.name.endswith("_1") and not (new / "earlier_run.txt").exists()
    earlier = [folder for folder in runs.iterdir() if folder != new]
    assert len(earlier) == 60
    assert all((folder / "earlier_run.txt").read_text() == "keep me" for folder in earlier)
