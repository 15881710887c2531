"""Hydra's basic sweeper, without its second composition of every job before launch.

`critmin sweep` checks the jobs itself before it launches them (critmin/sweep.py:
the first job and every value of every axis), and the launcher composes each job
once more when it runs it. Hydra's basic sweeper would compose every job a third
time only to check it; with critmin's large world config that was a third of a
small job's overhead (benchmarks/bench.py). It also hands the launcher a config loader
that composes jobs differing only in plain values once per choice of config files
(critmin/config/fastcompose.py). Everything else is BasicSweeper: the
same expansion of axes, `params` from a sweep file, batches.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence  # noqa: UP035 (Hydra's structured configs)

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class CritminSweeper(BasicSweeper):
    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        # jobs that differ only in plain values are composed once per choice of config files
        # in each launcher process (critmin/config/fastcompose.py)
        from critmin.config.fastcompose import CachingConfigLoader

        context = HydraContext(config_loader=CachingConfigLoader(hydra_context.config_loader),
                               callbacks=hydra_context.callbacks)
        super().setup(hydra_context=context, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        return None


@dataclass
class CritminSweeperConf:
    _target_: str = "hydra_plugins.critmin_sweeper.critmin_sweeper.CritminSweeper"
    max_batch_size: Optional[int] = None  # noqa: UP045
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(group="hydra/sweeper", name="critmin", node=CritminSweeperConf,
                             provider="critmin")
