"""A drawing demo in the browser: draw a digit, pick a number, and the model reads the digit and adds.

    python -m mnist_adder.demo                       # the newest trained, or else the shipped model
    python -m mnist_adder.demo --checkpoint PATH     # a .ckpt file written by mnist_adder.train

Then open http://127.0.0.1:7860. The drawing is prepared by the same code as `mnist-adder-predict`
(inverted, cropped to its ink, scaled to 20x20 and centred by mass in 28x28). Needs the extra:
pip install -e ".[demo]".
"""

from __future__ import annotations

import argparse
import sys

import torch
from PIL import Image

from mnist_adder import UserError
from mnist_adder.data.mnist import DIGIT_CLASSES
from mnist_adder.data.photos import ink_on_dark, to_mnist
from mnist_adder.models.checkpoints import default_model, load_net
from mnist_adder.models.nets import NOT_SURE_BELOW, AdderNet

try:
    import gradio as gr
except ImportError:  # the demo extra is missing: main() says so
    gr = None

Answer = tuple[dict[str, float], dict[str, float], str]


def answer(net: AdderNet, drawing: dict | None, number: float) -> Answer:
    """The answer's digit and sum probabilities, and one line of answer, for a Sketchpad drawing and a
    number: the sum shown is always the digit shown + the number; below `NOT_SURE_BELOW`, "not sure" and
    the two likeliest readings."""
    composite = (drawing or {}).get("composite")
    if composite is None:
        return {}, {}, "Draw a digit."
    try:
        image = torch.from_numpy(to_mnist(ink_on_dark(Image.fromarray(composite)), name="the drawing"))
    except UserError:
        return {}, {}, "Draw a digit."
    numbers = torch.tensor([int(number)])
    digit_probs, sum_probs = (probs[0] for probs in net.probabilities(image[None], numbers))
    top = digit_probs.topk(2)  # the answer and the next likeliest; each sum is digit + number
    first, second = (f"{int(digit)} + {int(number)} = {int(digit) + int(number)}" for digit in top.indices)
    if top.values[0] >= NOT_SURE_BELOW:
        text = f"digit {int(top.indices[0])}, {first}"
    else:
        text = f"not sure: {first} ({top.values[0]:.0%}) or {second} ({top.values[1]:.0%})"
    return (
        {str(d): float(p) for d, p in enumerate(digit_probs)},
        {str(s): float(p) for s, p in enumerate(sum_probs)},
        text,
    )


def build(net: AdderNet) -> gr.Blocks:
    """The page: a sketchpad and a number in; the answer and both probability bars out, live."""
    with gr.Blocks(title="mnist-adder") as page:
        gr.Markdown("## mnist-adder\nDraw a digit, pick a number: the net reads the digit and adds.")
        with gr.Row():
            with gr.Column():
                drawing = gr.Sketchpad(
                    label="your digit", elem_id="drawing", canvas_size=(280, 280), fixed_canvas=True,
                    brush=gr.Brush(default_size=18, colors=["#000000"], color_mode="fixed"), layers=False,
                )  # fmt: skip
                number = gr.Slider(0, DIGIT_CLASSES - 1, value=5, step=1, label="n", elem_id="number")
            with gr.Column():
                text = gr.Textbox(label="answer", elem_id="answer", interactive=False)
                digit = gr.Label(num_top_classes=3, label="digit probabilities", elem_id="digit")
                total = gr.Label(num_top_classes=3, label="sum probabilities", elem_id="sum")

        def respond(drawing: dict | None, number: float) -> Answer:
            return answer(net, drawing, number)

        for event in (drawing.change, number.change):
            event(respond, inputs=[drawing, number], outputs=[digit, total, text])
    return page


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m mnist_adder.demo", description=__doc__,
                                     formatter_class=formatter)  # fmt: skip
    parser.add_argument(
        "--checkpoint",
        help="a .ckpt file; default: the newest best one trained under lightning_logs/, or else the "
        "shipped model",
    )
    parser.add_argument("--port", type=int, default=7860, help="the port to serve on (default 7860)")
    args = parser.parse_args(argv)
    if gr is None:
        sys.exit('error: the demo needs Gradio: pip install -e ".[demo]"')
    try:
        net = load_net(args.checkpoint or default_model())
    except UserError as error:
        sys.exit(f"error: {error}")
    build(net).launch(server_name="127.0.0.1", server_port=args.port)


if __name__ == "__main__":
    main()
