from __future__ import annotations

import os
import socket

import pytest
import torch
from hydra import compose, initialize
from omegaconf import DictConfig

import mnist_adder.data.datamodule
from mnist_adder import PROJECT_ROOT, hydra_version_base
from mnist_adder.runs import app

# The best checkpoint of the reference run that ships in lightning_logs/reference/.
(REFERENCE_CHECKPOINT,) = map(str, (PROJECT_ROOT / "lightning_logs" / "reference").rglob("epoch*.ckpt"))
# The model people get before they train one: that run's net and five more, averaged (`default_model`).
SHIPPED_MODEL = str(PROJECT_ROOT / "lightning_logs" / "reference" / "averaged.ckpt")
# The one shipped before it (model=dual, 2026-11-27, written before the commands moved to the package top).
DUAL_BEFORE = str(PROJECT_ROOT / "tests" / "checkpoints" / "dual-2026-11-27.ckpt")


def pytest_configure(config) -> None:
    app.setup()  # as every command does: the resolvers the configs use, the console's filters
    # Any Hydra deprecation, here or in a command a test runs, is an error (Hydra's own switch).
    os.environ["HYDRA_DEPRECATION_WARNINGS_AS_ERRORS"] = "1"


def compose_train(tmp_path, *overrides: str) -> DictConfig:
    """The real train config, writing into tmp_path."""
    with initialize(config_path="../conf", **hydra_version_base()):
        return compose("train", overrides=[f"paths.output_dir={tmp_path}", *overrides])


def compose_eval(tmp_path, *overrides: str) -> DictConfig:
    """The real eval config, writing into tmp_path."""
    with initialize(config_path="../conf", **hydra_version_base()):
        return compose("eval", overrides=[f"paths.output_dir={tmp_path}", *overrides])


def synthetic_mnist(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (size, 28, 28) uint8 whose brightness encodes the digit, so a net can learn them."""
    generator = torch.Generator().manual_seed(seed)
    digits = torch.randint(0, 10, (size,), generator=generator)
    noise = torch.randint(0, 40, (size, 28, 28), generator=generator)
    images = (noise + 20 * digits[:, None, None]).to(torch.uint8)
    return images, digits


@pytest.fixture
def fake_mnist(monkeypatch) -> None:
    """Replace the MNIST files with small synthetic sets: 600 training and 200 test images.

    Their seeds differ from the pairing seeds (0), so that digits and numbers are not drawn alike.
    """
    monkeypatch.setattr(mnist_adder.data.datamodule, "fetch_mnist", lambda data_dir: None)
    monkeypatch.setattr(
        mnist_adder.data.datamodule,
        "load_mnist",
        lambda data_dir, train: synthetic_mnist(600 if train else 200, seed=10 + int(train)),
    )


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
