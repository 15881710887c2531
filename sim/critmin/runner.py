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
from .core.engine import BatchResult, Simulation, not_per_replication
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
    """Replications with their own parameter values (row r of `values`), in batches.

    Each replication's world and levers are built from its values. A batch of
    `run.batch_size` runs together when they differ only in what the engine reads per
    replication (`engine.PER_REPLICATION`: demand, substitution, utilisation, outages,
    expansion leads; `PER_REPLICATION_LEVERS`: export controls' licence delays, approval
    rates and re-imposition chances); otherwise its replications run one at a time.
    Either way replication r meets the same outages and noise (its own named streams)
    and gets the numbers it gets alone, up to rounding (tests/test_uncertain.py).
    """
    import copy

    from .config.model import build_model
    from .config.uncertain import with_values

    work = copy.deepcopy(cfg)  # each replication sets every parameter in it, then builds
    for reps in batches(spec.replications, spec.batch_size):
        built = [build_model(with_values(work, params, values[r], in_place=True))[1:]
                 for r in reps]
        world, levers = built[0]
        together = not any(not_per_replication(world, levers, w, lv) for w, lv in built[1:])
        groups = [reps] if together else [[r] for r in reps]
        for group in groups:
            first = reps.index(group[0])

            def progress(frac: float, _done: int = group[0], _n: int = len(group)) -> None:
                if on_progress is not None:
                    on_progress(_done + frac * _n)

            own = [built[reps.index(r)] for r in group] if together else None
            res = Simulation(built[first][0], spec.calendar, group, spec.seed, progress=progress,
                             levers=built[first][1],
                             worlds=[w for w, _ in own] if own else None,
                             levers_each=[lv for _, lv in own] if own else None).run()
            yield res, built[first][0], built[first][1]
