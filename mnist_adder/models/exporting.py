"""A trained net written out for use outside the project: ONNX (onnxruntime, any language) or torch.export.

    from mnist_adder.models.checkpoints import load_net
    from mnist_adder.models.exporting import export
    export(load_net("epoch14.ckpt"), "onnx", "model.onnx")   # or "torch_export", "model.pt2"

The file answers (B, 1, 28, 28) float32 images, prepared as `mnist_adder.data.photos.to_mnist` prepares
them, and (B,) int64 numbers in 0..9, for any batch size B, with three outputs: `digit_logits` (B, 10),
`sum_logits` (B, 19; 20 for the published sum-only head) and `answer_probs` (B, 10), the calibrated
probability of each consistent answer "digit d, sum d + number" (`AdderNet.answer_log_probs`, at the
checkpoint's temperature). Its metadata (`METADATA_KEY`, JSON) says how to prepare an image and when an
answer is sure, so that `mnist_adder.models.exported` needs nothing else.

TorchScript (`torch.jit.script`) is not offered: PyTorch deprecates it in favour of torch.export.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mnist_adder import UserError
from mnist_adder.data.mnist import DIGIT_CLASSES, IMAGE_SHAPE, MNIST_MEAN, MNIST_STD
from mnist_adder.models.exported import INPUTS, METADATA_KEY, OUTPUTS
from mnist_adder.models.nets import NOT_SURE_BELOW, AdderNet

FORMATS = {"onnx": ".onnx", "torch_export": ".pt2"}  # format -> file suffix


class Answering(nn.Module):
    """An `AdderNet` as it is exported: (B, 1, 28, 28) float32 images and (B,) int64 numbers -> its digit and
    sum logits, and its answer's probabilities (B, 10) at its temperature."""

    def __init__(self, net: AdderNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor, number: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        digit_logits, sum_logits = self.net(image, number)
        return digit_logits, sum_logits, self.net.answer_log_probs(digit_logits, sum_logits, number).exp()


def metadata(net: AdderNet, source: str) -> dict[str, Any]:
    """What a user of the file needs besides it: the inputs, the outputs, the preparation of an image, the
    temperature and the threshold of a sure answer; `source` names the checkpoint."""
    return {
        "source": source,
        "inputs": {
            "image": "(B, 1, 28, 28) float32: a digit, ink bright on dark, scaled to fit 20x20 and centred "
            "by mass in 28x28 (mnist_adder.data.photos.to_mnist), then (pixel - mean) / std",
            "number": "(B,) int64 in 0..9",
        },
        "outputs": {
            "digit_logits": "(B, 10) the digit head's logits",
            "sum_logits": "(B, 19) the sum head's logits over the sums 0..18 (20 for the published head)",
            "answer_probs": "(B, 10) the probability of the answer 'digit d, sum d + number', calibrated",
        },
        "preparation": {"size": IMAGE_SHAPE[-1], "box": 20, "ink": "bright on dark", "mean": MNIST_MEAN,
                        "std": MNIST_STD},  # fmt: skip
        "temperature": net.temperature,
        "not_sure_below": NOT_SURE_BELOW,
    }


def check_format(format: str) -> None:
    """`UserError` unless `format` is one of `FORMATS` and what it needs is installed."""
    if format not in FORMATS:
        raise UserError(f"format must be {' or '.join(FORMATS)}, got {format!r}")
    if format == "onnx" and not all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript")):
        raise UserError("format=onnx needs the export extra: pip install -e \".[export]\"")


def export(net: AdderNet, format: str, path: str | Path, source: str = "") -> Path:
    """Write `net` (in eval mode) to `path` as `format` ("onnx" or "torch_export"), with a dynamic batch
    dimension and its `metadata`; `source` names the checkpoint. Never overwrites: `UserError` if `path`
    exists. Returns the path written."""
    check_format(format)
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} exists: export into a new folder (hydra.run.dir=...)")
    # Weights in the default memory format: torch.export.save warns about channels_last ones.
    model = Answering(copy.deepcopy(net).to(memory_format=torch.contiguous_format)).eval()
    examples = (torch.zeros(2, *IMAGE_SHAPE), torch.arange(2) % DIGIT_CLASSES)
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        program = torch.export.export(model, examples, dynamic_shapes={name: {0: batch} for name in INPUTS})
    info = json.dumps(metadata(net, source))
    if format == "torch_export":
        torch.export.save(program, path, extra_files={f"{METADATA_KEY}.json": info})
    else:
        onnx = torch.onnx.export(program, dynamo=True, input_names=list(INPUTS), output_names=list(OUTPUTS),
                                 verbose=False)  # fmt: skip
        onnx.model.metadata_props[METADATA_KEY] = info
        onnx.save(str(path))
    return path


def load_torch_export(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A .pt2 file that `export` wrote -> its module (call it with images and numbers) and its metadata."""
    extra = {f"{METADATA_KEY}.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program.module(), json.loads(extra[f"{METADATA_KEY}.json"])
