"""Where a run's files go: folder names a user can paste, one folder for all processes of a run, and
finishing what was cut short.

    lightning_logs/model-dual__seed-3/2026-11-22_10-00-00/              model=dual seed=3
    lightning_logs/multirun/2026-11-22_10-00-00/model-adder__seed-1/  a job of -m model=adder seed=1

A folder name holds only letters, digits and `_ . - +`, so every path a run prints can be given back to
any entry point (`ckpt_path=...`, `hydra.sweep.dir=...`) unquoted. `ckpt_path=last` finishes what a run or
a sweep left: a finished job is reported, not retrained; a stopped one resumes from its `last.ckpt` in
its own folder; a sweep job that never began starts there (`resume_from` says what a ckpt_path means).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from mnist_adder import UserError
from mnist_adder.runs.launching import agree_on, is_main_process

# Unquoted in Hydra's override grammar, and plain in a shell, a URL or TensorBoard's run filter.
UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")
MAX_NAME_BYTES = 200  # a file name has at most 255 bytes


def run_name(override_dirname: str) -> str:
    """A folder name for a run's overrides, as Hydra joins them (`model-dual__seed-3`, see train.yaml).

    Anything but letters, digits and `_ . + -` becomes a `.` (`[[3,4]]` -> `3.4`, `model/sum_head` ->
    `model.sum_head`); no overrides is `defaults`; a name too long for a file is cut and ends in a hash.
    """
    name = "__".join(
        "-".join(UNSAFE.sub(".", part).strip(".") for part in item.split("-", 1))
        for item in override_dirname.split("__")
    ).strip("_")
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:180]}...{digest}"
    return name or "defaults"


def resume_from(ckpt_path: str | None, folder: str | Path) -> Path | None:
    """The checkpoint that `ckpt_path` asks the run in `folder` to resume from, or None to start afresh:
    "last" is the folder's checkpoints/last.ckpt if it has one; a path is itself; None is None."""
    if ckpt_path == "last":
        last = Path(folder) / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None
    return Path(ckpt_path) if ckpt_path is not None else None


def run_dir(ckpt_path: str | None, runs: str, stamp: str) -> str:
    """The folder of a single run: the run folder it resumes from, else a new one, runs/stamp (or
    stamp_1, ...). All processes of a run started apart (torchrun, one command per node) get the one that
    global rank 0 chose.

    `runs` holds the runs with this run's overrides. ckpt_path "last" resumes the newest of them with a
    checkpoints/last.ckpt; a checkpoint inside a run folder resumes that run.
    """
    return agree_on(lambda: str(_choose_run_dir(ckpt_path, Path(runs), stamp)))


def _choose_run_dir(ckpt_path: str | None, runs: Path, stamp: str) -> Path:
    if ckpt_path == "last":
        lasts = [last for folder in runs.glob("*") if (last := resume_from("last", folder))]
        if lasts:
            return max(lasts, key=lambda last: last.stat().st_mtime).parents[1]
    elif ckpt_path and Path(ckpt_path).parent.name == "checkpoints":
        folder = Path(ckpt_path).resolve().parents[1]
        if (folder / ".hydra").is_dir():
            return folder
    folder, version = runs / stamp, 0
    while folder.exists():  # another run with the same overrides started in the same second
        version += 1
        folder = runs / f"{stamp}_{version}"
    return folder


def checkpoint_to_resume(ckpt_path: str | None, output_dir: str, sweep: bool = False) -> str | None:
    """The checkpoint file a run in `output_dir` resumes from (see `resume_from`). Raises UserError if
    ckpt_path names none, unless this is a `sweep` job that never began (it starts afresh)."""
    checkpoint = resume_from(ckpt_path, output_dir)
    if ckpt_path == "last" and checkpoint is None and not sweep:
        raise UserError(
            f"ckpt_path=last: no run under {Path(output_dir).parent} has a checkpoints/last.ckpt; "
            "give a .ckpt file, or train with the same overrides first"
        )
    if checkpoint is not None and not checkpoint.is_file():
        raise UserError(f"ckpt_path {ckpt_path} is not a file: give a .ckpt file, 'last' or null")
    return str(checkpoint) if checkpoint else None


def finished_metrics(output_dir: str | Path, ckpt_path: str | None) -> dict[str, float] | None:
    """The metrics of a run that already finished in `output_dir`, if ckpt_path asks to finish it: "last",
    or a checkpoint of its own.

    Raises `UserError` if `output_dir` already holds a run and ckpt_path does not say to continue it: a
    sweep rerun into its own folder (`hydra.sweep.dir=...`) never overwrites a job.
    """
    folder = Path(output_dir)
    metrics = folder / "metrics.json"
    checkpoint = resume_from(ckpt_path, folder)
    own = checkpoint is not None and checkpoint.resolve().parent == (folder / "checkpoints").resolve()
    if ckpt_path == "last" or own:
        return json.loads(metrics.read_text()) if metrics.is_file() else None
    if ckpt_path is None and is_main_process() and (metrics.is_file() or (folder / "checkpoints").is_dir()):
        raise UserError(
            f"{folder} already holds a run: add ckpt_path=last to finish it there, or give another "
            "hydra.sweep.dir"
        )
    return None
