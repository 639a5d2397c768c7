"""A model card (Hugging Face's format: YAML metadata, then Markdown) for a checkpoint, every figure in it
measured when it is written, so that none can go stale.

    from mnist_adder.models.card import model_card
    text = model_card("lightning_logs/.../epoch14.ckpt", "python -m mnist_adder.card ...", "AMD EPYC, ...")

It measures the checkpoint on MNIST's 10,000 test digits, on handwriting from other writers (scikit-learn's
digits, with the robustness extra) and on pictures that hold no digit: 27 s for one net on a 2-core AMD
EPYC, and twelve times the arithmetic for the shipped file of six nets averaged, each reading every image
twice, whose card lists each net's training. `python -m mnist_adder.card` writes it; `python -m
mnist_adder.export` writes one beside every model.
"""

from __future__ import annotations

import importlib.util
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from mnist_adder import DATA_DIR, PROJECT_ROOT
from mnist_adder.data.damage import DAMAGE, NEAREST, resized
from mnist_adder.data.mnist import fetch_mnist, load_mnist, normalise
from mnist_adder.models.checkpoints import net_of, read_checkpoint, trainings
from mnist_adder.models.nets import NOT_SURE_BELOW, AveragedNets
from mnist_adder.models.scoring import Scores, other_handwriting, percent, prepared, score, sure_share


def letters() -> list[Image.Image]:
    """The capital letters A..Z in Pillow's built-in bitmap font, dark on white, enlarged 8 times."""
    font, pictures = ImageFont.load_default_imagefont(), []
    for letter in map(chr, range(ord("A"), ord("Z") + 1)):
        page = Image.new("L", (12, 15), 255)
        ImageDraw.Draw(page).text((3, 2), letter, fill=0, font=font)
        pictures.append(page.resize((96, 120), NEAREST))
    return pictures


def noise(count: int = 200) -> list[Image.Image]:
    """Pictures of grey noise, 56 px, seed 0."""
    pixels = np.random.default_rng(0).integers(0, 256, (count, 56, 56), dtype=np.uint8)
    return [Image.fromarray(page) for page in pixels]


def side_by_side(images: Tensor, count: int = 1000) -> list[Image.Image]:
    """Two of MNIST's (N, 28, 28) test digits next to each other (a number of two digits), `count` of them."""
    pairs = torch.cat([images[:count], images[count : 2 * count]], dim=2)
    return [resized(Image.fromarray(255 - pair.numpy()), 56, NEAREST) for pair in pairs]


def row(name: str, figures: Scores) -> str:
    return (f"| {name} | {figures.images:,} | {percent(figures.answer_acc)} | {percent(figures.ece_after)} | "
            f"{percent(figures.sure)} | {percent(figures.wrong_among_sure)} | "
            f"{figures.confident_mistakes} of {figures.mistakes} |")  # fmt: skip


def described(spec: dict[str, Any] | None) -> str:
    """A net's or a setting's spec as a call: `CompactCNN(width=16)`, `(degrees=10, scale=0.1)`, or none."""
    if not spec:
        return "none"
    arguments = ", ".join(f"{key}={value}" for key, value in spec.items() if not key.startswith("_"))
    return f"{spec.get('_target_', '').rsplit('.', 1)[-1]}({arguments})"


def when(run: dict[str, Any]) -> str:
    """A run's date and hardware from its run.json, in brackets after a space; nothing without one."""
    return f" ({run['date'][:10]}, {run['hardware']})" if run else ""


def data_settings(data: dict[str, Any]) -> str:
    return f"augmentation `{described(data.get('augment'))}`, damage `{described(data.get('degrade'))}`"


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def model_card(ckpt_path: str | Path, command: str, measured_on: str) -> str:
    """The card of `ckpt_path`, as Markdown; `command` wrote it, on `measured_on` (hardware, commit, date)."""
    ckpt_path = Path(ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    net, trained = net_of(checkpoint, ckpt_path), trainings(checkpoint, ckpt_path)
    parameters = sum(p.numel() for p in net.parameters())
    fetch_mnist(DATA_DIR)
    images, digits = load_mnist(DATA_DIR, train=False)
    mnist = score(net, normalise(images), digits)
    table = [
        "| images | count | answer acc | ECE | shown as sure | wrong among sure | mistakes > 90 % sure |",
        "|---|---|---|---|---|---|---|",
        row("MNIST test, as tensors", mnist),
    ]
    others = {}
    if importlib.util.find_spec("sklearn") is not None:
        others = {name.capitalize(): score(net, prepared(pictures)[0], target)
                  for name, (pictures, target) in other_handwriting().items()}  # fmt: skip
        table += [row(name, figures) for name, figures in others.items()]
        errors = np.mean([1 - figures.answer_acc for figures in others.values()]) / (1 - mnist.answer_acc)
        how_often = f"it is wrong {errors:.0f} times as often as on MNIST's test digits"
        confident = sum(figures.confident_mistakes for figures in others.values())
        mistakes = sum(figures.mistakes for figures in others.values())
        how_sure = (f",\n  and {confident} of its {mistakes} mistakes there are made with more than 90 % "
                    "confidence.")  # fmt: skip
    else:
        table.append('| Other handwriting | not measured: pip install -e ".[robustness]" | | | | | |')
        how_often = 'it errs more often than on MNIST (not measured: pip install -e ".[robustness]")'
        how_sure = "."
    not_digits = {
        "the capital letters A..Z (Pillow's bitmap font, enlarged 8 times)": letters(),
        "200 pictures of grey noise": noise(),
        "1,000 pairs of MNIST test digits side by side (a two-digit number)": side_by_side(images),
    }
    sure_of_nothing = [f"  - {name}: {percent(sure_share(net, prepared(pictures)[0]))} answered as sure."
                       for name, pictures in not_digits.items()]  # fmt: skip
    first, val_size = trained[0]["model"], trained[0]["data"].get("val_size", 5000)
    title = " + ".join(first[part]["_target_"].rsplit(".", 1)[-1] for part in ("backbone", "sum_head"))
    commands = [
        " ".join(["python -m mnist_adder.train", *each["run"].get("overrides", [])]) for each in trained
    ]
    training = [f"  - `{command}`{when(each['run'])}: {data_settings(each['data'])}."
                for command, each in zip(commands, trained, strict=True)]  # fmt: skip
    if isinstance(net, AveragedNets):
        title = f"{len(net.nets)} × {title}, averaged"
        thinned = (", each net reading every image as given and with its strokes thinned"
                   if "thinned" in net.views else "")  # fmt: skip
        parts = ("backbone", "sum_head")
        nets = sorted(
            {" and ".join(f"`{described(each['model'][part])}`" for part in parts) for each in trained}
        )
        model = (f"- {len(net.nets)} nets, each a convolutional net that reads the digit and a sum head that "
                 f"reads its logits and the number: {', '.join(nets)}.\n  Each head's probabilities are "
                 f"averaged over the nets (`AveragedNets`){thinned}. {parameters:,} parameters in "
                 "all.")  # fmt: skip
        fit = (
            "the mean of the nets' own, each " if math.isclose(net.temperature, net.mean_temperature) else ""
        )
        where = (
            f"- File: `{shown(ckpt_path)}`, the nets' checkpoints joined by `python -m mnist_adder.average`."
        )
        options = [*(["--thinned"] if thinned else []), *([] if fit else ["--temperature", "fit"])]
        commands.append(shlex.join(["python", "-m", "mnist_adder.average", *checkpoint["sources"], *options,
                                    "--out", shown(ckpt_path)]))  # fmt: skip
    else:
        model = (f"- A convolutional net, `{described(first['backbone'])}`, reads the digit; a sum head,\n"
                 f"  `{described(first['sum_head'])}`, reads its logits and the number. {parameters:,} "
                 "parameters.")  # fmt: skip
        fit = ""
        where = f"- Checkpoint: `{shown(ckpt_path)}` (epoch {checkpoint.get('epoch', '?')})."
    metadata = [
        "---",
        "library_name: pytorch",
        "tags: [image-classification, mnist, onnx, pytorch-lightning]",
        "datasets: [mnist]",
        "metrics: [accuracy]",
        "model-index:",
        "- name: mnist-adder",
        "  results:",
        "  - task: {type: image-classification, name: an MNIST digit plus a number in 0..9}",
        "    dataset: {type: mnist, name: MNIST, split: test}",
        "    metrics:",
        f"    - {{type: accuracy, name: answer (digit and sum), value: {100 * mnist.answer_acc:.2f}}}",
        f"    - {{type: accuracy, name: digit head, value: {100 * mnist.digit_head:.2f}}}",
        f"    - {{type: accuracy, name: sum head, value: {100 * mnist.sum_head:.2f}}}",
        "---",
    ]
    body = f"""
# mnist-adder: {title}

Written by `{command}` ({measured_on}); every figure below was measured then, by that command.

## Model
- Reads a picture of one handwritten digit and a number n in 0..9, and answers the digit d and the sum d + n.
  The answer shown always adds up: the digit and sum that are likeliest together.
{model}
- Its confidence is calibrated: temperature {net.temperature:.3f}, {fit}fit on the validation images.
  An answer less likely than {NOT_SURE_BELOW:g} is shown as "not sure", with the next likeliest reading.
{where}
  `python -m mnist_adder.export ckpt_path=PATH` exports it to ONNX, or with `format=torch_export`.

## Intended use
- Reading single handwritten digits, 0 to 9, written the way MNIST's writers wrote them, and adding a number
  to them: a teaching and research example of a model with two consistent answers.
- Not for numbers of several digits, letters, or anything whose mistakes cost more than a wrong sum: on
  handwriting from other sources {how_often} (below).

## Training data and preparation
- MNIST's 60,000 training digits, less {val_size:,} held out for validation, each paired with a
  random number. MNIST's 10,000 test digits were never trained on, nor chosen on.
- Every image is prepared as MNIST's were: ink bright on dark, scaled to fit 20x20, centred by mass in
  28x28, then normalised with MNIST's mean and std (`mnist_adder/data/photos.py`: any PNG, JPEG or BMP).
- Trained with augmentation and damage like a low-resolution scan or another pen
  (`mnist_adder/data/datamodule.py`):
{chr(10).join(training)}

## Metrics
Each image is paired with a random number (seed 0). The answer is right when both its digit and its sum
are. ECE: the expected calibration error (15 bins) at the model's temperature.

{chr(10).join(table)}

Each head alone on MNIST's test digits: digit {percent(mnist.digit_head)}, sum {percent(mnist.sum_head)};
the heads disagree on {percent(mnist.heads_disagree)} (the answer shown never does).

## Limitations
- **Other handwriting.** The rows "other handwriting" above are scikit-learn's 1,797 digits of 8x8 pixels
  from 43 writers who are not MNIST's, enlarged to 128 px: {how_often}{how_sure}
  `python -m mnist_adder.robustness` measures it under {len(DAMAGE) - 1} kinds of damage as well
  (results/robustness.md).
- **Pictures that hold no digit.** It always answers a digit: it has no class for "not a digit".
  A blank page is refused ("has no ink"). Of pictures that hold ink but no single digit:
{chr(10).join(sure_of_nothing)}
- **A number outside 0..9.** Refused: predict and the exported model answer a one-line error, and the
  net itself fails on it (its one-hot has 10 classes).

## How to reproduce
```
pip install -e ".[robustness]"
{chr(10).join(commands)}
{command}
```
"""
    return "\n".join(metadata) + "\n" + body.lstrip("\n")
