"""Checkpoints: read one safely, find the newest, and load the model it holds, for people or for Lightning.

    from mnist_adder.models.checkpoints import default_model, load_net, newest_checkpoint
    net = load_net(newest_checkpoint())          # an AdderNet in eval mode; no Lightning, no Hydra
    digit, total = net.predict(images, numbers)   # (B, 1, 28, 28) normalised, (B,) int64 -> (B,), (B,)
    net = load_net(default_model())              # what predict and the demo answer with by default

Checkpoints are written whole or not at all (`mnist_adder.written_whole`, which training's
`mnist_adder.runs.callbacks.AtomicCheckpointIO` uses too); a file cut short some other way is called
damaged, and the intact checkpoints beside it are named.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mnist_adder import PROJECT_ROOT, UserError, written_whole
from mnist_adder.models import current_name
from mnist_adder.models.nets import AdderNet, AveragedNets, adder_net

DEFAULT_MODULE = "mnist_adder.models.module.DigitPlusNumberModule"  # of a checkpoint that names no class
AVERAGED = "mnist_adder.models.nets.AveragedNets"  # of a file of several nets, `write_averaged`'s
LOG_DIR = PROJECT_ROOT / "lightning_logs"
ZIP_MAGIC = b"PK\x03\x04"  # how every file that torch.save writes begins


def newest_checkpoint(log_dir: Path = LOG_DIR, outside: Path | None = None) -> Path:
    """The newest best checkpoint (not a `last.ckpt`) under log_dir, and not under `outside`, of a model
    that reads an image and a number, what the reports read: newer MNIST-addition checkpoints are passed
    over. A file that does not read as a checkpoint is returned as it is, for its loading to say what is
    wrong."""
    candidates = [
        path for path in log_dir.rglob("checkpoints/*.ckpt")
        if not path.name.startswith("last") and not (outside and path.is_relative_to(outside))
    ]  # fmt: skip
    if not candidates:
        raise UserError(
            f"no checkpoint under {log_dir}: train one with `python -m mnist_adder.train`, "
            "or give --checkpoint PATH"
        )
    for path in sorted(candidates, key=lambda path: path.stat().st_mtime, reverse=True):
        try:
            if module_class(read_checkpoint(path)) == DEFAULT_MODULE:
                return path
        except UserError:
            return path
    raise UserError(
        f"no checkpoint of an image + number model under {log_dir}, only of MNIST addition (two images): "
        "train one with `python -m mnist_adder.train`, or give --checkpoint PATH"
    )


def default_model(log_dir: Path = LOG_DIR) -> Path:
    """What predict and the demo answer with when given no checkpoint: the newest best checkpoint of a run
    trained under log_dir; before any, the shipped model, reference/averaged.ckpt (the reference run's
    net and five more, averaged: results/README.md, "Several nets averaged")."""
    shipped = log_dir / "reference" / "averaged.ckpt"
    if not shipped.is_file():
        return newest_checkpoint(log_dir)
    try:
        return newest_checkpoint(log_dir, outside=log_dir / "reference")
    except UserError:  # nothing trained yet
        return shipped


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """The contents of a checkpoint file, read safely (tensors and plain values only).

    Raises `UserError` if the file is missing, damaged (it begins as a checkpoint but cannot be read: the
    error names the intact checkpoints beside it) or not a Lightning checkpoint.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"ckpt_path {path} is not a file: give a .ckpt file from mnist_adder.train")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a zip or pickle, a zip cut short, or one holding more than plain values
        with open(path, "rb") as file:
            if file.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
                raise UserError(
                    f"ckpt_path {path} is damaged ({first_line(error)}); {intact_beside(path)}"
                ) from None
        checkpoint = None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(
            f"ckpt_path {path} is not a checkpoint that mnist_adder.train wrote (torch.load finds no "
            "state_dict in it)"
        )
    return checkpoint


def first_line(error: BaseException) -> str:
    return (str(error) or type(error).__name__).strip().splitlines()[0]


def intact_beside(path: Path) -> str:
    """Names the checkpoints in `path`'s folder that read whole, for an error about `path`."""
    intact = []
    for other in sorted(path.parent.glob("*.ckpt")):
        if other != path:
            try:
                torch.load(other, map_location="cpu", weights_only=True)
                intact.append(str(other))
            except Exception:  # damaged too
                continue
    return f"intact beside it: {', '.join(intact)}" if intact else "no intact checkpoint beside it"


@contextmanager
def built_from(ckpt_path: str | Path) -> Iterator[None]:
    """Any failure to build a model from a checkpoint's contents (a constructor or load_state_dict given a
    foreign file fails in many ways) as one `UserError`."""
    try:
        yield
    except UserError:
        raise
    except Exception as error:
        raise UserError(
            f"ckpt_path {ckpt_path} is not an mnist-adder checkpoint ({first_line(error)})"
        ) from None


def module_class(checkpoint: dict[str, Any]) -> str:
    """The dotted path of the LightningModule class a checkpoint's contents were saved from, as it is now."""
    return current_name(str(checkpoint.get("module_class", DEFAULT_MODULE)))


def check_described(checkpoint: dict[str, Any], ckpt_path: str | Path, name: str) -> None:
    """Fail in one line if a net was passed to the module built: the checkpoint holds its weights only.
    (Only a file that mnist_adder wrote names its `module_class`; a foreign one fails later, as such.)"""
    parts = ("backbone",) if name.endswith("MNISTAdditionModule") else ("backbone", "sum_head")
    missing = [part for part in parts if part not in checkpoint.get("hyper_parameters", {})]
    if missing and "module_class" in checkpoint:
        cls, nets = name.rsplit(".", 1)[-1], ", ".join(f"{part}=<the same net>" for part in missing)
        raise UserError(
            f"ckpt_path {ckpt_path} was trained with a built {' and '.join(missing)} that it does not "
            f"describe: load it in Python with {cls}.load_from_checkpoint(path, {nets})"
        )


def load_module(ckpt_path: str | Path) -> Any:
    """The LightningModule of any checkpoint that mnist_adder.train wrote, of its own class (the
    checkpoint names it), with its weights; `UserError` for any other file. Reads the file once."""
    checkpoint = read_checkpoint(ckpt_path)
    name = module_class(checkpoint)
    if not name.startswith("mnist_adder."):  # import nothing a foreign file names
        raise UserError(f"ckpt_path {ckpt_path} is not an mnist-adder checkpoint (it names the class {name})")
    if name == AVERAGED:
        raise UserError(
            f"ckpt_path {ckpt_path} holds several nets averaged (python -m mnist_adder.average): predict, "
            "the demo, robustness, export and the card read it; give eval or train one net's checkpoint"
        )
    check_described(checkpoint, ckpt_path, name)
    with built_from(ckpt_path):
        module, _, cls = name.rpartition(".")
        model = getattr(importlib.import_module(module), cls)(**checkpoint.get("hyper_parameters", {}))
        model.load_state_dict(checkpoint["state_dict"])
    model.on_load_checkpoint(checkpoint)
    return model


def load_net(ckpt_path: str | Path) -> AdderNet:
    """The `AdderNet` of an image + number checkpoint, in eval mode, built from its hyper-parameters with
    no Lightning, torchmetrics or Hydra import: what predict, the demo and a plain shell need."""
    return net_of(read_checkpoint(ckpt_path), ckpt_path)


def load_nets(ckpt_paths: list[str | Path]) -> AdderNet:
    """The net of one checkpoint, or the nets of several read as one model (`AveragedNets`)."""
    nets = [load_net(ckpt_path) for ckpt_path in ckpt_paths]
    return nets[0] if len(nets) == 1 else AveragedNets(nets)


def net_of(checkpoint: dict[str, Any], ckpt_path: str | Path) -> AdderNet:
    """`load_net` of a checkpoint's contents, read already from `ckpt_path` (named in errors)."""
    if (name := module_class(checkpoint)) == AVERAGED:
        return load_averaged(checkpoint, ckpt_path)
    if name != DEFAULT_MODULE:
        raise UserError(
            f"ckpt_path {ckpt_path} holds a {name.rsplit('.', 1)[-1]}, which reads two "
            "images: predict and the demo read an image and a number (a DigitPlusNumberModule checkpoint)"
        )
    check_described(checkpoint, ckpt_path, name)
    with built_from(ckpt_path):
        net = adder_net(**checkpoint.get("hyper_parameters", {}))
        prefix = "net."
        net.load_state_dict(
            {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
        )
        net.temperature = float(checkpoint.get("temperature", 1.0))  # fit on validation; 1 if never fit
    return net.eval()


def the_run(ckpt_path: Path) -> dict[str, Any]:
    """run.json of the run folder that holds checkpoints/<ckpt>, or {} for a checkpoint on its own."""
    run = ckpt_path.parent.parent / "run.json"
    return json.loads(run.read_text()) if run.is_file() else {}


def trainings(checkpoint: dict[str, Any], ckpt_path: str | Path) -> list[dict[str, Any]]:
    """How each net of a checkpoint's contents (read from `ckpt_path`), or of a file of nets averaged, was
    trained: its module's settings ("model"), its data module's ("data") and its run's run.json ("run", {}
    if none)."""
    if module_class(checkpoint) != AVERAGED:
        model, data = (
            checkpoint.get("hyper_parameters", {}),
            checkpoint.get("datamodule_hyper_parameters", {}),
        )
        return [{"model": model, "data": data, "run": the_run(Path(ckpt_path))}]
    each = zip(checkpoint["hyper_parameters"]["nets"], checkpoint["datamodule_hyper_parameters"],
               checkpoint["runs"], strict=True)  # fmt: skip
    return [{"model": model, "data": data, "run": run} for model, data, run in each]


def load_averaged(checkpoint: dict[str, Any], ckpt_path: str | Path) -> AveragedNets:
    """The `AveragedNets` of a file that `write_averaged` wrote, in eval mode."""
    with built_from(ckpt_path):
        nets = [adder_net(**settings) for settings in checkpoint["hyper_parameters"]["nets"]]
        for net, temperature in zip(nets, checkpoint["temperatures"], strict=True):
            net.temperature = float(temperature)
        averaged = AveragedNets(nets, checkpoint.get("views", ("as given",)))  # none before views existed
        averaged.load_state_dict(checkpoint["state_dict"])
        averaged.temperature = float(checkpoint.get("temperature", averaged.temperature))
    return averaged.eval()


def write_averaged(
    ckpt_paths: list[str | Path],
    path: str | Path,
    temperature: Callable[[AveragedNets], float] | None = None,
    views: tuple[str, ...] = ("as given",),
) -> AveragedNets:
    """Write the nets of image + number checkpoints as one file that `load_net` reads as their
    `AveragedNets`, each reading every image in each of `views`: each net's weights, hyper-parameters and
    temperature, nothing of training; and the average's temperature, `temperature(averaged)` if given,
    else the mean of the nets'. Written whole or not at all; `UserError` if `path` exists. Returns the nets
    averaged."""
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} exists: give a new file for the averaged nets (--out)")
    checkpoints = [read_checkpoint(ckpt_path) for ckpt_path in ckpt_paths]
    for ckpt_path, checkpoint in zip(ckpt_paths, checkpoints, strict=True):
        if module_class(checkpoint) != DEFAULT_MODULE:
            raise UserError(f"ckpt_path {ckpt_path} is not one net's checkpoint of an image + number model")
    averaged = AveragedNets(
        [net_of(c, ckpt_path) for c, ckpt_path in zip(checkpoints, ckpt_paths, strict=True)], views
    )
    if temperature is not None:
        averaged.temperature = temperature(averaged)
    contents = {
        "module_class": AVERAGED,
        "hyper_parameters": {"nets": [checkpoint["hyper_parameters"] for checkpoint in checkpoints]},
        "temperatures": [net.temperature for net in averaged.nets],
        "temperature": averaged.temperature,
        "views": list(averaged.views),
        "sources": [Path(ckpt_path).as_posix() for ckpt_path in ckpt_paths],
        "datamodule_hyper_parameters": [
            checkpoint.get("datamodule_hyper_parameters", {}) for checkpoint in checkpoints
        ],
        "runs": [the_run(Path(ckpt_path)) for ckpt_path in ckpt_paths],
        "state_dict": averaged.state_dict(),
    }
    with written_whole(path) as partial:
        torch.save(contents, partial)
    return averaged
