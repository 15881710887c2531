"""Invariants checked on every run; a violation stops the run loudly.

- stocks never go negative (checked every tick);
- mass balance per product over the run:
  initial stocks + produced = used + final stocks (incl. in transit) + lost.
"""

from __future__ import annotations

import numpy as np

from .world import World

NEGATIVE_TOL_T = 1e-6  # tonnes: below this a stock counts as negative


class InvariantError(RuntimeError):
    """A physical invariant of the model was violated (a bug, not bad input)."""


def check_non_negative(tick: int, in_stock: np.ndarray, out_stock: np.ndarray, world: World) -> None:
    # runs every tick: one plain reduction per stock; the loop below finds and names a culprit
    lowest = min(np.minimum.reduce(in_stock, axis=None), np.minimum.reduce(out_stock, axis=None))
    if lowest >= -NEGATIVE_TOL_T:
        return
    for name, arr in (("input stock", in_stock), ("sell-side stock", out_stock)):
        if arr.min() < -NEGATIVE_TOL_T:
            r, n, k = np.unravel_index(int(arr.argmin()), arr.shape)
            raise InvariantError(
                f"negative {name} at tick {tick}: region {world.regions[n]}, product "
                f"{world.products[k]}, replication index {r}: {arr[r, n, k]:.6g} t"
            )


def check_mass_balance(
    world: World,
    initial: np.ndarray,
    produced: np.ndarray,
    used: np.ndarray,
    final: np.ndarray,
    lost: np.ndarray | None = None,
    rel_tol: float = 1e-9,
) -> np.ndarray:
    """Raise unless initial + produced == used + final + lost per replication and product."""
    lost = np.zeros_like(initial) if lost is None else lost
    residual = initial + produced - used - final - lost
    scale = np.maximum(1.0, initial + produced)
    bad = np.abs(residual) > rel_tol * scale
    if bad.any():
        r, k = np.argwhere(bad)[0]
        raise InvariantError(
            f"mass balance violated for product {world.products[k]} (replication index {r}): "
            f"initial {initial[r, k]:.6g} + produced {produced[r, k]:.6g} != used "
            f"{used[r, k]:.6g} + final stocks and transit {final[r, k]:.6g} + lost "
            f"{lost[r, k]:.6g} (residual {residual[r, k]:.3g} t)"
        )
    return residual
