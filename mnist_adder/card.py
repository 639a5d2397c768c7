"""Write a checkpoint's model card (Hugging Face's format), every figure measured as it is written.

    python -m mnist_adder.card                    # the newest best checkpoint, printed
    python -m mnist_adder.card --checkpoint lightning_logs/.../epoch14.ckpt --out model-card.md

docs/model-card.md is the shipped model's, written by the command it names; a test writes it again and
finds the same figures. `python -m mnist_adder.export` writes a card beside every model it exports.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime
from pathlib import Path

from mnist_adder.models.card import model_card
from mnist_adder.models.checkpoints import newest_checkpoint
from mnist_adder.runs import app
from mnist_adder.runs.provenance import commit, hardware


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_adder.card",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", help="a .ckpt file; default: the newest best one under lightning_logs/"
    )
    parser.add_argument("--out", type=Path, help="the Markdown file to write (default: print it)")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "mnist_adder.card", *(sys.argv[1:] if argv is None else argv)])
    with app.user_errors():
        checkpoint = args.checkpoint or str(newest_checkpoint())
        measured_on = f"{hardware()}, commit {commit() or 'unknown'}, {datetime.now():%Y-%m-%d}"
        text = model_card(checkpoint, command, measured_on)
        if args.out is None:
            print(text, end="")
            return
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
