"""A model that `python -m mnist_adder.export` wrote to ONNX, answered with onnxruntime and numpy alone: no
torch, no Lightning (the onnx extra, or `pip install onnxruntime numpy pillow` beside the package).

    from mnist_adder.data.photos import read_image, to_mnist
    from mnist_adder.models.exported import ExportedModel
    model = ExportedModel("model.onnx")
    image = to_mnist(read_image("seven.png"), **model.normalisation)          # (1, 28, 28) float32
    probs = model.run(image[None], numpy.array([3]))["answer_probs"]          # (1, 10): digit d, sum d + 3
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mnist_adder import UserError

METADATA_KEY = "mnist_adder"  # the file's metadata: JSON of `mnist_adder.models.exporting.metadata`
INPUTS = ("image", "number")
OUTPUTS = ("digit_logits", "sum_logits", "answer_probs")


class ExportedModel:
    """An exported .onnx file, on onnxruntime's CPU provider, with the metadata the export wrote into it."""

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise UserError("an .onnx model needs onnxruntime: pip install 'mnist-adder[onnx]'") from None
        if not Path(path).is_file():
            raise UserError(f"model {path} is not a file: give an .onnx from python -m mnist_adder.export")
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.metadata: dict[str, Any] = json.loads(
                self.session.get_modelmeta().custom_metadata_map[METADATA_KEY]
            )
        except Exception as error:  # not ONNX, or ONNX that this project did not write
            reason = (str(error) or type(error).__name__).strip().splitlines()[0]
            raise UserError(
                f"model {path} is not a model that python -m mnist_adder.export wrote ({reason})"
            ) from None

    @property
    def normalisation(self) -> dict[str, float]:
        """The `mean` and `std` of `to_mnist` that the model reads images with."""
        return {key: self.metadata["preparation"][key] for key in ("mean", "std")}

    def run(self, images: np.ndarray, numbers: np.ndarray) -> dict[str, np.ndarray]:
        """The outputs, by name, for (B, 1, 28, 28) float32 prepared images and (B,) integer numbers."""
        numbers = np.asarray(numbers, dtype=np.int64)
        if numbers.size and not (numbers.min() >= 0 and numbers.max() <= 9):
            raise UserError(f"numbers must be integers in 0..9, got {numbers.tolist()}")
        feed = {"image": np.asarray(images, dtype=np.float32), "number": numbers}
        return dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), feed), strict=True))
