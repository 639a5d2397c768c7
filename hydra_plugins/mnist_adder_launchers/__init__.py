"""SLURM sweeps through hydra-submitit-launcher, whose requeued jobs resume where they stopped.

    python -m mnist_adder.cli.train -m hydra/launcher=slurm hydra.launcher.partition=gpu trainer=ddp \
        trainer.devices=4 trainer.num_nodes=2 seed=1,2,3
    python -m mnist_adder.cli.train -m hydra/launcher=slurm_local seed=1,2    # the same code path, no cluster

On pre-emption (or a timeout, up to `hydra.launcher.max_num_timeout` times) submitit signals the job,
calls the launcher's `checkpoint` and requeues what it returns. Here that is the same job with
`ckpt_path=last`: it resumes from its last.ckpt in its own folder, or reports its metrics if it had
finished. Needs the extra: pip install -e ".[cluster]". Hydra takes launchers from the `hydra_plugins`
namespace only, hence this package's place.
"""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # without the extra; Hydra imports every plugin package, so this one stays quiet
    submitit_launcher = None


def resuming(sweep_overrides: list[str]) -> list[str]:
    """A job's overrides, set to resume from its own last.ckpt."""
    kept = [override for override in sweep_overrides if not override.startswith("ckpt_path=")]
    return [*kept, "ckpt_path=last"]


if submitit_launcher is not None:

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        """hydra-submitit-launcher's SLURM launcher; a requeued job resumes (`ckpt_path=last`)."""

        def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
            return super().checkpoint(resuming(sweep_overrides), *args, **kwargs)

    class LocalLauncher(submitit_launcher.LocalLauncher):
        """hydra-submitit-launcher's local launcher (jobs as processes here); a requeued job resumes."""

        def checkpoint(self, sweep_overrides: list[str], *args: Any, **kwargs: Any) -> Any:
            return super().checkpoint(resuming(sweep_overrides), *args, **kwargs)
