"""Run all replications of one configuration, batch by batch.

Replications are simulated in batches of `run.batch_size` (one SimPy
environment, arrays with a replication axis). Every replication draws from
its own named streams, so its results do not depend on which batch it is in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .config.build import RunSpec
from .core.engine import BatchResult, Simulation
from .core.levers import Levers
from .core.world import World


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
