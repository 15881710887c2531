"""Run all replications of one configuration, batch by batch.

Replications are simulated in batches of `run.batch_size` (one SimPy
environment, arrays with a replication axis). Every replication draws from
its own named streams, so its results do not depend on which batch it is in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .config.build import RunSpec
from .core.engine import BatchResult, Simulation
from .core.levers import Levers
from .core.world import World

if TYPE_CHECKING:
    from .config.uncertain import UncertainParam


def batches(replications: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, replications)))
            for i in range(0, replications, batch_size)]


def simulate(
    world: World,
    spec: RunSpec,
    on_progress: Callable[[float], None] | None = None,
    levers: Levers | None = None,
) -> Iterator[BatchResult]:
    """Yield one `BatchResult` per batch; `on_progress` gets replications done (fractional)."""
    done = 0
    for reps in batches(spec.replications, spec.batch_size):
        def progress(frac: float, _done: int = done, _n: int = len(reps)) -> None:
            if on_progress is not None:
                on_progress(_done + frac * _n)

        yield Simulation(world, spec.calendar, reps, spec.seed, progress=progress,
                         levers=levers).run()
        done += len(reps)


def simulate_uncertain(
    cfg: Any,
    spec: RunSpec,
    params: list[UncertainParam],
    values: np.ndarray,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[tuple[BatchResult, World, Levers]]:
    """One replication at a time, each with its own parameter values (row r of `values`).

    Every replication still draws from its own named streams, so replication r meets the
    same outages and noise whatever its parameter values or the other replications.
    """
    from .config.model import build_model
    from .config.uncertain import with_values

    for r in range(spec.replications):
        _, world, levers = build_model(with_values(cfg, params, values[r]))

        def progress(frac: float, _r: int = r) -> None:
            if on_progress is not None:
                on_progress(_r + frac)

        res = Simulation(world, spec.calendar, [r], spec.seed, progress=progress,
                         levers=levers).run()
        yield res, world, levers
