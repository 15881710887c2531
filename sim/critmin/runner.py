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
from .series import SHIPMENT_SERIES

if TYPE_CHECKING:
    from .config.uncertain import UncertainParam


def batches(replications: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, replications)))
            for i in range(0, replications, batch_size)]


def records_shipments(spec: RunSpec) -> bool:
    """Whether the run writes a series made from the monthly shipments per route."""
    return bool(spec.series & SHIPMENT_SERIES)


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
                         levers=levers, record_shipments=records_shipments(spec)).run()
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
        groups = [list(range(len(reps)))] if batchable(built) else [[i] for i in range(len(reps))]
        for group in groups:
            def progress(frac: float, _done: int = reps[group[0]], _n: int = len(group)) -> None:
                if on_progress is not None:
                    on_progress(_done + frac * _n)

            part = [built[i] for i in group]
            res = simulate_built(part, spec.calendar, [reps[i] for i in group], spec.seed, progress,
                                 record_shipments=records_shipments(spec))
            yield res, part[0][0], part[0][1]


def batchable(built: list[tuple[World, Levers]]) -> bool:
    """Whether these (world, levers) can run as one batch: they differ only in what the
    engine reads per replication (`engine.not_per_replication`)."""
    w0, lv0 = built[0]
    return not any(not_per_replication(w0, lv0, w, lv) for w, lv in built[1:])


def simulate_built(built: list[tuple[World, Levers]], calendar: Any, replications: list[int],
                   seed: int, progress: Callable[[float], None] | None = None,
                   record_shipments: bool = True) -> BatchResult:
    """One batch in which replication i runs in world and levers `built[i]` (`batchable`);
    if all are one pair, the plain shared-world batch."""
    world, levers = built[0]
    if all(b[0] is world and b[1] is levers for b in built):
        return Simulation(world, calendar, replications, seed, progress=progress,
                          levers=levers, record_shipments=record_shipments).run()
    return Simulation(world, calendar, replications, seed, progress=progress, levers=levers,
                      worlds=[w for w, _ in built], levers_each=[lv for _, lv in built],
                      record_shipments=record_shipments).run()
