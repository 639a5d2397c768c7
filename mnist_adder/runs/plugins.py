"""Hydra plugins that add what the installed ones lack; `app.setup()` registers those whose extra is here.

- `SlurmLauncher`, `LocalLauncher` (the `cluster` extra): hydra-submitit-launcher's, whose requeued jobs
  resume. On pre-emption (or a timeout, up to `hydra.launcher.max_num_timeout` times) submitit signals
  the job, calls the launcher's `checkpoint` and requeues what it returns: here the same job with
  `ckpt_path=last`, which resumes from its last.ckpt in its own folder, or reports its metrics if it had
  finished.
- `OptunaSweeper` (the `sweeps` extra): hydra-optuna-sweeper's, with an Optuna pruner, and a study that a
  sweep resumed on the same storage continues: `n_trials` counts the study's finished trials, so it runs
  only the trials still owed.

Hydra 1.4 finds plugins through entry points, or in the `hydra_plugins` namespace; these subclass
plugins of optional extras, so an entry point would fail to load (and warn in every command) where the
extra is missing. `register()` registers them explicitly instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import MISSING, OmegaConf

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # without the cluster extra
    submitit_launcher = None
try:
    import optuna
    from hydra_plugins.hydra_optuna_sweeper import _impl, optuna_sweeper
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
except ImportError:  # without the sweeps extra
    optuna_sweeper = None

log = logging.getLogger(__name__)

TRIAL_KEY = "optuna_trial"  # the config key that tells a job which trial of the study it is
PRUNED_AT = "pruned_at_epoch"  # the user attribute a job sets on its trial when the pruner stops it


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


if optuna_sweeper is not None:

    class OptunaSweeper(optuna_sweeper.OptunaSweeper):
        """hydra-optuna-sweeper's sweeper with a `pruner` (any `optuna.pruners` class), for one objective."""

        def __init__(self, sampler: Any, pruner: Any, **settings: Any) -> None:
            from hydra.utils import instantiate

            self.sweeper = StudySweep(
                sampler=instantiate(sampler, _execution_whitelist_="optuna.samplers.*"),
                pruner=instantiate(pruner, _execution_whitelist_="optuna.pruners.*"),
                **settings,
            )

    class StudySweep(_impl.OptunaSweeperImpl):
        """The sweep loop: ask the study for `n_jobs` trials, launch them as jobs (each told its trial number
        in `optuna_trial`), and tell the study how each ended, until it holds `n_trials` finished trials.
        Upstream's loop, which tells every job complete or failed and asks for `n_trials` more on every
        start, is replaced whole; a failed job stops the sweep with its error (`max_failure_rate` 0)."""

        def __init__(self, pruner: Any, **settings: Any) -> None:
            super().__init__(**settings)
            self.pruner = pruner

        def sweep(self, arguments: list[str]) -> None:
            self._process_searchspace_config()
            space, fixed, fixed_overrides = _impl.create_params_from_overrides(
                [*self._parse_sweeper_params_config(), *arguments]
            )
            space = {name: distribution for name, distribution in space.items() if name not in fixed}
            # The name as the jobs read it. Hydra resolved this sweeper's settings in a copy of the config,
            # so a `${now:}` in them (the default name is the sweep folder's) can be a second older than
            # the sweep's own, which the launcher and every job share.
            self.study_name = self.config.hydra.sweeper.study_name
            study = optuna.create_study(
                study_name=self.study_name, storage=self.storage, sampler=self.sampler, pruner=self.pruner,
                direction=self._get_directions()[0], load_if_exists=True,
            )  # fmt: skip
            done = finished(study)
            log.info("Study %s in %s: %d of %d trials finished", study.study_name, self.storage, done,
                     self.n_trials)  # fmt: skip
            while (owed := self.n_trials - finished(study)) > 0:
                trials = [study.ask() for _ in range(min(owed, self.n_jobs))]
                overrides = list(self._configure_trials(trials, space, fixed, fixed_overrides))
                for index, trial in enumerate(trials):
                    overrides[index] = (*overrides[index], f"{TRIAL_KEY}={trial.number}")
                returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
                self.job_idx += len(returns)
                for trial, job in zip(trials, returns, strict=True):
                    tell(study, trial, job, self.storage)
            complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
            if not complete:
                log.warning("no trial completed (all were pruned or failed): no best settings to report")
                return
            best = {"name": "optuna", "best_params": study.best_trial.params, "best_value": study.best_value}
            log.info("Best of %d complete trials: %s, from %s", len(complete), best["best_value"],
                     best["best_params"])  # fmt: skip
            OmegaConf.save(OmegaConf.create(best), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")

    def finished(study: optuna.Study) -> int:
        """How many of the study's trials completed or were pruned (failed ones do not count)."""
        states = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
        return len(study.get_trials(deepcopy=False, states=states))

    def tell(study: optuna.Study, trial: optuna.Trial, job: JobReturn, storage: str | None) -> None:
        """Tell the study how a trial's job ended: pruned (its job set `pruned_at_epoch` in the storage),
        complete with the value it returned, or failed, when the sweep stops with the job's error."""
        if job.status == JobStatus.FAILED:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            job.return_value  # noqa: B018  raises the job's own error
        # Read afresh: this process's study caches the trials it asked for, and the job wrote elsewhere.
        written = optuna.load_study(study_name=study.study_name, storage=storage) if storage else study
        pruned_at = written.trials[trial.number].user_attrs.get(PRUNED_AT)
        if pruned_at is not None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # its value: the last one it reported
            log.info("trial %d pruned after epoch %d", trial.number, pruned_at)
        else:
            study.tell(trial, float(job.return_value))

    @dataclass
    class StudySweeperConf(OptunaSweeperConf):
        """hydra-optuna-sweeper's settings, plus the pruner."""

        _target_: str = f"{__name__}.OptunaSweeper"
        defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
        pruner: Any = MISSING  # conf/hydra/sweeper/pruner/


def register() -> None:
    """Register with Hydra the plugins above whose extra is installed (`hydra/sweeper: optuna_study` is
    the sweeper's config group entry)."""
    if submitit_launcher is not None:
        Plugins.instance().register(SlurmLauncher)
        Plugins.instance().register(LocalLauncher)
    if optuna_sweeper is not None:
        Plugins.instance().register(OptunaSweeper)
        ConfigStore.instance().store(group="hydra/sweeper", name="optuna_study", node=StudySweeperConf,
                                     provider="mnist_adder", replace=True)  # fmt: skip
