"""Export a checkpoint's net for use outside the project: ONNX, or torch.export, with its model card.

    python -m mnist_adder.export ckpt_path=lightning_logs/.../checkpoints/epoch14.ckpt    # model.onnx
    python -m mnist_adder.export ckpt_path=... format=torch_export                         # model.pt2

Both answer images and numbers in batches of any size (`mnist_adder.models.exporting` says what goes in
and out), and hold in their metadata how to prepare an image. An .onnx answers with onnxruntime alone:
`mnist-adder-predict --model model.onnx digit.png 3`. Each export goes into a new folder under
lightning_logs/export/, with model-card.md beside the model (`card=false` leaves it out).
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mnist_adder import PROJECT_ROOT, UserError, hydra_version_base
from mnist_adder.models.checkpoints import load_net
from mnist_adder.models.exporting import FORMATS, check_format, export
from mnist_adder.runs import app

SAMPLE_DIGIT = PROJECT_ROOT / "notebooks" / "seven.png"


def here(path: Path) -> str:
    """`path` relative to where the user is, if it lies below it, quoted for a shell if need be."""
    path, cwd = path.resolve(), Path.cwd().resolve()
    return shlex.quote(str(path.relative_to(cwd) if path.is_relative_to(cwd) else path))


def check_folder(arguments: list[str]) -> None:
    """Refuse a `hydra.run.dir` that holds an exported model already, before Hydra writes its files there."""
    for argument in arguments:
        if argument.startswith("hydra.run.dir="):
            folder = Path(argument.split("=", 1)[1])
            if any((folder / f"model{suffix}").exists() for suffix in FORMATS.values()):
                raise UserError(f"{folder} holds an exported model: export into a new folder "
                                "(hydra.run.dir=...)")  # fmt: skip


def export_checkpoint(cfg: DictConfig) -> Path:
    """Write the model of `cfg.ckpt_path` as `cfg.format` (and its card) into the run folder; returns it."""
    check_format(cfg.format)
    net = load_net(cfg.ckpt_path)
    path = Path(cfg.paths.output_dir) / f"model{FORMATS[cfg.format]}"
    export(net, cfg.format, path, source=Path(cfg.ckpt_path).name)
    print(f"wrote {here(path)}")
    if cfg.card:
        from mnist_adder.models.card import model_card
        from mnist_adder.runs.provenance import commit, hardware

        command = f"python -m mnist_adder.export ckpt_path={cfg.ckpt_path}"
        card = path.with_name("model-card.md")
        card.write_text(model_card(cfg.ckpt_path, command, f"{hardware()}, commit {commit() or 'unknown'}"))
        print(f"wrote {here(card)}")
    if cfg.format == "onnx":
        print(f"answer with: mnist-adder-predict --model {here(path)} {here(SAMPLE_DIGIT)} 3")
    else:
        print(f"load it with: mnist_adder.models.exporting.load_torch_export({str(path)!r})")
    return path


@hydra.main(config_path="../conf", config_name="export", **hydra_version_base())
def run(cfg: DictConfig) -> None:
    with app.user_errors():
        export_checkpoint(cfg)


def main() -> None:
    app.setup()
    with app.user_errors():
        check_folder(sys.argv[1:])
    for name in ("onnxscript", "onnx_ir"):  # the ONNX exporter's passes log each step at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    run()


if __name__ == "__main__":
    main()
