"""Benchmarks: time to 99 %, framework overhead, net cost, data pipeline, inference and scaling.

    python -m benchmarks.run              # writes benchmarks/results.md and results.json
    python -m benchmarks.run --quick      # tiny sizes, seconds: checks that the script runs
    python -m benchmarks.run --time-to-99-only   # the recipes against a bare reference: time_to_99.json

Each figure is the median of `--repeats` runs, printed with the min and max so the noise shows. Timings
are wall clock: run it on an otherwise idle machine. Nets are timed with the weights they start with;
speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import train_command, write_report
from mnist_adder import PROJECT_ROOT, hydra_version_base
from mnist_adder.data.mnist import fetch_mnist, load_mnist, normalise
from mnist_adder.runs import app
from mnist_adder.runs.provenance import machine
from mnist_adder.runs.tables import markdown_table

OUT_DIR = Path(__file__).resolve().parent
NETS = {  # name in the report -> overrides of the train config
    "dual": ["model=dual"],
    "adder": ["model=adder"],
    "speedrun": ["experiment=speedrun"],
    "reference_dual": ["model=reference_dual"],
    "reference_adder": ["model=reference_adder"],
}


def config(*overrides: str) -> DictConfig:
    """The train config with these overrides, writing into a temporary folder."""
    output_dir = tempfile.mkdtemp(prefix="mnist_adder_bench_")
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), **hydra_version_base()):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def datamodule(cfg: DictConfig) -> L.LightningDataModule:
    dm = instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def synchronize() -> None:
    """Wait for the GPU's queued work, if there is a GPU, so that a clock read after it counts it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rss_gb() -> float:
    """Resident memory of this process now, in GB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


class StepTimer(L.Callback):
    """Times training batches `warmup` to the end of each epoch, and each whole epoch, and RSS per epoch."""

    def __init__(self, warmup: int = 0) -> None:
        self.warmup, self.images, self.epoch_seconds, self.epoch_rss = warmup, 0, [], []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            synchronize()
            self.start, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize()
        self.end = time.perf_counter()
        self.images += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_seconds.append(time.perf_counter() - self.epoch_start)
        self.epoch_rss.append(rss_gb())

    def images_per_second(self) -> float:
        return self.images / (self.end - self.start)


def lightning_fit(cfg: DictConfig, timer: StepTimer, **trainer_args) -> None:
    """Fit with the project's module, data, trainer, logger and callbacks (no checkpoints, no validation)."""
    torch.manual_seed(0)
    callbacks = [instantiate(c) for name, c in cfg.callbacks.items() if c and "checkpoint" not in name]
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, timer],
        logger=instantiate(cfg.logger),
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))


def lightning_throughput(cfg: DictConfig, steps: int, warmup: int) -> float:
    timer = StepTimer(warmup)
    lightning_fit(cfg, timer, max_epochs=1, limit_train_batches=warmup + steps)
    return timer.images_per_second()


def bare_throughput(cfg: DictConfig, steps: int, warmup: int) -> float:
    """Training images/s of a plain PyTorch loop: the same net, data, augmentation, losses and optimiser, on
    the same device, with the data where the data module keeps it (a GPU's memory with `data.on_device`)."""
    torch.manual_seed(0)
    dm = datamodule(cfg)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = instantiate(cfg.model).net.to(device)
    optimizer = instantiate(cfg.model.optimizer)(params=net.parameters())
    scheduler = instantiate(cfg.model.scheduler)(optimizer, total_steps=warmup + steps)
    digit_weight, sum_weight = cfg.model.digit_loss_weight, cfg.model.sum_loss_weight
    images = 0
    for i, batch in enumerate(islice(dm.train_dataloader(), warmup + steps)):
        image, number, digit, total = (tensor.to(device) for tensor in batch)  # nothing to do if there
        if dm.augment is not None:
            image = dm.augment(image)
        if i == warmup:
            synchronize()
            start, images = time.perf_counter(), 0
        digit_logits, sum_logits = net(image.contiguous(memory_format=torch.channels_last), number)
        loss = sum_weight * F.cross_entropy(sum_logits, total)
        if digit_weight:
            loss = loss + digit_weight * F.cross_entropy(digit_logits, digit)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        images += len(image)
    synchronize()
    return images / (time.perf_counter() - start)


def repeat(measure: Callable[[], float], repeats: int) -> dict[str, float]:
    return spread([measure() for _ in range(repeats)])


def net_cost(cfg: DictConfig, steps: int, warmup: int, repeats: int) -> dict:
    net = instantiate(cfg.model).net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    return {
        "parameters": sum(p.numel() for p in net.parameters()),
        "mult_adds": counter.get_total_flops() // 2,
        "batch_size": cfg.data.batch_size,
        "train_images_per_s": repeat(lambda: bare_throughput(cfg, steps, warmup), repeats),
    }


def loader_throughput(cfg: DictConfig, augment: bool, batches: int | None) -> float:
    dm = datamodule(cfg)
    start, images = time.perf_counter(), 0
    for image, *_ in islice(dm.train_dataloader(), batches):
        if augment and dm.augment is not None:
            image = dm.augment(image)
        images += len(image)
    return images / (time.perf_counter() - start)


def inference(cfg: DictConfig, calls: int, large_batch: int, repeats: int) -> dict:
    dm, module = datamodule(cfg), instantiate(cfg.model).eval()
    image, number, *_ = dm.val_set.__getitems__(range(large_batch))
    latencies = []
    with torch.inference_mode():
        for i in range(calls + 10):
            j = i % large_batch
            start = time.perf_counter()
            module.net.predict(image[j : j + 1], number[j : j + 1])
            if i >= 10:  # the first calls warm up
                latencies.append(1e3 * (time.perf_counter() - start))

        def batch_throughput() -> float:
            start = time.perf_counter()
            module.net.predict(image, number)
            return large_batch / (time.perf_counter() - start)

        batch_throughput()
        throughput = repeat(batch_throughput, repeats)
    latencies.sort()
    return {
        "batch1_ms": {
            "p50": latencies[len(latencies) // 2],
            "p95": latencies[int(0.95 * (len(latencies) - 1))],
            "min": latencies[0],
            "max": latencies[-1],
        },
        f"batch{large_batch}_images_per_s": throughput,
    }


def scaling(cfg: DictConfig, fractions: list[float], epochs: int) -> dict:
    """Epoch times at fractions of the training set (the first epoch warms up), RSS at each epoch's end."""
    result = {}
    for fraction in fractions:
        timer = StepTimer()
        lightning_fit(cfg, timer, max_epochs=epochs + 1, limit_train_batches=fraction)
        result[str(fraction)] = {
            "epoch_seconds": spread(timer.epoch_seconds[1:]),
            "rss_gb_per_epoch": timer.epoch_rss,
        }
    return result


def reference_net() -> nn.Module:
    """The speed anchor's net (tuomaso/train_mnist_fast, as its README describes it): conv5x5(24)-ReLU-pool,
    conv3x3(32)-ReLU-pool, FC 256, FC 10; no BatchNorm, no padding. 215,194 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(24, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 5 * 5, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def reference_fit(data_dir: str, limit: int | None = None) -> dict:
    """One epoch of the anchor's recipe in a bare PyTorch loop, on this CPU: the 60k training images once
    as a normalised tensor, batch 256, Adam (lr 1e-2, betas 0.7, 0.9) with OneCycle. Returns its training
    seconds (the loop alone) and its test accuracy."""
    torch.manual_seed(0)
    fetch_mnist(data_dir)  # a fresh clone has no MNIST yet
    images, digits = load_mnist(data_dir, train=True)
    test_images, test_digits = load_mnist(data_dir, train=False)
    images, digits = normalise(images[:limit]).contiguous(memory_format=torch.channels_last), digits[:limit]
    net = reference_net().to(memory_format=torch.channels_last)
    batches = len(digits) // 256
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.7, 0.9))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=batches)
    order = torch.randperm(len(digits))
    start = time.perf_counter()
    for batch in order[: batches * 256].view(batches, 256):
        loss = F.cross_entropy(net(images[batch]), digits[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        predicted = net.eval()(normalise(test_images[:limit])).argmax(dim=1)
    return {"train_seconds": seconds, "test_acc": float((predicted == test_digits[:limit]).float().mean())}


def one_run(command: dict) -> dict:
    """A `train_command` result of one run, with that run's metrics as `metrics`."""
    (metrics,) = command.pop("runs")
    return {**command, "metrics": metrics}


STOP_AT_99 = ["callbacks=early_stopping", "+callbacks.early_stopping.stopping_threshold=0.99"]


def time_to_99(args: argparse.Namespace, data_dir: str) -> dict:
    """Wall time from typing the command to a validated 99 %, for the speedrun and the default recipe,
    against one epoch of the bare reference loop timed in the same run.

    The speedrun's one validation comes at its end; its test accuracy is read too. The default recipe is
    stopped by Lightning's EarlyStopping at the first validation with val/sum_acc >= 99 %. A speedrun's
    wall time is broken down into start-up (Python, imports, Hydra; the wall time not spent in train()),
    set-up (data, model, trainer), fit and test.
    """
    tiny = ["+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2"]
    tiny = tiny if args.quick else []
    reference = [reference_fit(data_dir, 1024 if args.quick else None) for _ in range(args.repeats)]
    speedruns = [
        one_run(train_command("experiment=speedrun", f"seed={seed}", *tiny))
        for seed in range(1, args.repeats + 1)
    ]
    default = one_run(
        train_command("model=dual", "seed=1", *STOP_AT_99, *tiny, *(["trainer.max_epochs=1"] if tiny else []))
    )
    return {"reference": reference, "speedrun": speedruns, "default": default}


def overhead(dual: DictConfig, args: argparse.Namespace) -> dict:
    """Training images/s of the project's Lightning pipeline and of a bare loop, and their ratio."""
    lightning, bare = [], []
    for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits both
        lightning.append(lightning_throughput(dual, args.steps, args.warmup))
        bare.append(bare_throughput(dual, args.steps, args.warmup))
    return {
        "lightning_images_per_s": spread(lightning),
        "bare_images_per_s": spread(bare),
        "ratio": statistics.median(lightning) / statistics.median(bare),
    }


def run(args: argparse.Namespace) -> dict:
    tiny = ["data.batch_size=32", "data.val_size=100"] if args.quick else []  # for the smoke test
    dual = config("model=dual", *tiny)
    results: dict = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "out"}}

    # First, while this process is fresh, so that its peak memory is that of a training run.
    fractions = [0.25, 0.5, 1.0]
    results["scaling"] = scaling(dual, fractions, epochs=args.repeats)
    results["scaling"]["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6

    results["time_to_99"] = time_to_99(args, dual.data.data_dir)

    results["overhead"] = overhead(dual, args)

    results["nets"] = {}
    for name, overrides in NETS.items():
        slow = name.startswith("seed")
        steps, warmup = (max(1, args.steps // 10), 1) if slow else (args.steps, args.warmup)
        results["nets"][name] = net_cost(config(*overrides, *tiny), steps, warmup, args.repeats)

    batches = 4 if args.quick else None
    results["data"] = {
        "loader_images_per_s": repeat(lambda: loader_throughput(dual, False, batches), args.repeats),
        "loader_and_augment_images_per_s": repeat(
            lambda: loader_throughput(dual, True, batches), args.repeats
        ),
    }
    results["inference"] = inference(
        dual, calls=20 if args.quick else 500, large_batch=64 if args.quick else 1024, repeats=args.repeats
    )
    return results


def breakdown(run: dict) -> dict[str, float]:
    """A command's wall time in parts: start-up (not in train()), set-up, fit, test, and to the end of fit."""
    m, wall = run["metrics"], run["wall_seconds"]
    startup, setup, fit = wall - m["run_seconds"], m["setup_seconds"], m["fit_seconds"]
    test = m.get("test_seconds", 0.0)
    return {"startup": startup, "setup": setup, "fit": fit, "test": test, "to_fit_end": startup + setup + fit,
            "whole": wall}  # fmt: skip


def time_to_99_markdown(result: dict) -> list[str]:
    reference = spread([run["train_seconds"] for run in result["reference"]])
    speedrun = [breakdown(run) for run in result["speedrun"]]
    whole = spread([parts["whole"] for parts in speedrun])
    header = ["command", "start-up s", "set-up s", "fit s", "test s", "to the end of fit s", "whole s",
              "val sum acc", "test sum acc"]  # fmt: skip
    rows = []
    for run, parts in [
        *zip(result["speedrun"], speedrun, strict=True),
        (result["default"], breakdown(result["default"])),
    ]:
        m = run["metrics"]
        times = [f"{parts[key]:.1f}" for key in ("startup", "setup", "fit", "test", "to_fit_end", "whole")]
        val, test = (100 * m.get(name, float("nan")) for name in ("val/sum_acc_best", "test/sum_acc"))
        command = f"python -m mnist_adder.train {' '.join(run['overrides'])}"
        rows.append([f"`{command}`", *times, f"{val:.2f} %", f"{test:.2f} %"])
    accuracy = statistics.median(run["test_acc"] for run in result["reference"])
    lines = [
        "## Time to 99 %: the whole command, from typing it to its end",
        "",
        markdown_table(header, rows),
        "Reference, a bare PyTorch loop (`reference_fit`: the anchor's net and recipe, one epoch of 60k "
        f"images held as one normalised tensor): training {cell_of(reference, 1)} s, test accuracy "
        f"{100 * accuracy:.2f} %. The speedrun's whole command / the reference's training: "
        f"**{whole['median'] / reference['median']:.2f}** (medians; the goal is at most 0.5).",
        "",
    ]
    return lines


def cell_of(stats: dict[str, float], digits: int = 0) -> str:
    return f"{stats['median']:,.{digits}f} ({stats['min']:,.{digits}f}–{stats['max']:,.{digits}f})"


def markdown(results: dict) -> str:
    cell = cell_of
    m, overhead, data = results["machine"], results["overhead"], results["data"]
    dual_speed = overhead["lightning_images_per_s"]["median"]
    pipelines = [
        ["the project's Lightning module, data, trainer, logger and callbacks",
         cell(overhead["lightning_images_per_s"])],
        ["a bare PyTorch loop over the same net, data and optimiser", cell(overhead["bare_images_per_s"])],
        ["**ratio** (medians)", f"**{overhead['ratio']:.3f}**"],
    ]  # fmt: skip
    nets = [
        [f"`{name}`", f"{net['parameters']:,}", f"{net['mult_adds'] / 1e6:,.2f} M", net["batch_size"],
         cell(net["train_images_per_s"])]
        for name, net in results["nets"].items()
    ]  # fmt: skip
    stages = [
        [stage, cell(data[key]), f"{data[key]['median'] / dual_speed:.1f}"]
        for stage, key in (("loader", "loader_images_per_s"),
                           ("loader + batched augmentation", "loader_and_augment_images_per_s"))
    ]  # fmt: skip
    infer = results["inference"]
    latency = infer["batch1_ms"]
    big = next(key for key in infer if key != "batch1_ms")
    scaling = [
        [f"{float(fraction):.0%}", cell(row["epoch_seconds"], 1),
         ", ".join(f"{value:.2f}" for value in row["rss_gb_per_epoch"])]
        for fraction, row in results["scaling"].items()
        if fraction != "peak_rss_gb"
    ]  # fmt: skip
    lines = [
        f"# Benchmarks, {m['date']}",
        "",
        f"{m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), {m['memory_gb']} GB, "
        f"GPU: {m['gpu'] or 'none'}; {m['platform']}, Python {m['python']}, torch {m['torch']}, "
        f"lightning {m['lightning']}.",
        f"Settings: {results['settings']}. Figures: median (min–max) of the repeats.",
        "",
        *time_to_99_markdown(results["time_to_99"]),
        "## Framework overhead: training images/s of `model=dual`",
        "",
        markdown_table(["pipeline", "images/s"], pipelines),
        "## Net cost (bare training loop, each config's own batch size)",
        "",
        markdown_table(["net", "parameters", "multiply-adds / image", "batch", "training images/s"], nets),
        "## Data pipeline: the training loader alone (`model=dual`)",
        "",
        markdown_table(["stage", "images/s", "× training speed"], stages),
        "## Inference (`model=dual`, eval, `torch.inference_mode()`)",
        "",
        f"- batch 1 latency: p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms "
        f"(min {latency['min']:.2f}, max {latency['max']:.2f})",
        f"- {big.split('_')[0].replace('batch', 'batch ')} throughput: {cell(infer[big])} images/s",
        "",
        "## Scaling: `model=dual` epoch time (no validation) against training-set size",
        "",
        markdown_table(["fraction of the 55k training images", "epoch seconds", "RSS per epoch's end, GB"],
                       scaling),  # fmt: skip
        f"Peak RSS of the process after these runs: {results['scaling']['peak_rss_gb']:.2f} GB.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--steps", type=int, default=100, help="timed training batches per run (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed batches before them (default 10)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for results.md and results.json")
    parser.add_argument("--overhead-only", action="store_true",
                        help="only Lightning vs a bare loop, into overhead.json")  # fmt: skip
    parser.add_argument("--time-to-99-only", action="store_true",
                        help="only the time to 99 %% section, into time_to_99.json and .md")  # fmt: skip
    args = parser.parse_args(argv)
    app.setup()
    if args.quick:
        args.repeats, args.steps, args.warmup = 2, 2, 1
    if args.time_to_99_only:
        results = {"machine": machine(), "time_to_99": time_to_99(args, config().data.data_dir)}
        write_report(args.out, "time_to_99", results, "\n".join(time_to_99_markdown(results["time_to_99"])))
        return results
    if args.overhead_only:
        results = {"machine": machine(), "overhead": overhead(config("model=dual"), args)}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overhead.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results["overhead"], indent=2))
        return results
    results = run(args)
    write_report(args.out, "results", results, markdown(results))
    return results


if __name__ == "__main__":
    main()
